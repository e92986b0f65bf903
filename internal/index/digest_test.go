package index

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// The digest of a file's extents is recorded with them by every write
// that records extents, and kept by those that do not; it leaves out
// what hashfile's comparison of extents leaves out, and nothing else.
func TestItemsDigest(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	file := func(ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: 8192, Mtime: 1, Ctime: 1}}
	}
	ext := func(disk, gen int64) []fiemap.Extent {
		return []fiemap.Extent{{Logical: 0, Physical: disk, Length: 8192, Flags: fiemap.FlagLast, DiskStart: disk, DiskLen: 8192, Gen: gen}}
	}
	a, b, c := ext(1<<20, 7), ext(2<<20, 8), ext(3<<20, 9)
	digest := func(ino uint64) int64 {
		t.Helper()
		f, ok, err := ix.FileByInode(ctx, vol, ino)
		if err != nil || !ok {
			t.Fatalf("inode %d: %v, %v", ino, ok, err)
		}
		return f.Items
	}
	sum := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	var origin int64
	steps := []struct {
		name string
		do   func(tx *Tx) error
		ino  uint64
		want []fiemap.Extent
	}{
		{"put", func(tx *Tx) (err error) { origin, err = tx.Put(file(10, "/a"), sum, a); return err }, 10, a},
		{"extents again", func(tx *Tx) error { return tx.SetExtents(origin, b) }, 10, b},
		{"renamed", func(tx *Tx) error { return tx.Rename(file(10, "/z")) }, 10, b},
		{"copied as a clone", func(tx *Tx) error {
			_, err := tx.Copy(origin, seqOf(t, ix, origin), file(11, "/s/a"), nil)
			return err
		}, 11, b},
		{"copied with its own items", func(tx *Tx) error {
			_, err := tx.Copy(origin, -1, file(12, "/t/a"), c)
			return err
		}, 12, c},
	}
	for _, s := range steps {
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.do(tx); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got, want := digest(s.ino), ItemsDigest(s.want); got != want || got == 0 {
			t.Errorf("%s: digest %x, want %x", s.name, got, want)
		}
		had, err := ix.Extents(ctx, mustID(t, ix, vol, s.ino))
		if err != nil {
			t.Fatal(err)
		}
		if ItemsDigest(had) != digest(s.ino) {
			t.Errorf("%s: digest %x of the extents recorded, %x in the row", s.name, ItemsDigest(had), digest(s.ino))
		}
	}

	shared := ext(1<<20, 7)
	shared[0].Flags = fiemap.FlagShared
	if ItemsDigest(shared) != ItemsDigest(a) {
		t.Error("the digest changes with FlagShared or FlagLast")
	}
	for _, e := range []fiemap.Extent{
		{Logical: 4096}, {Physical: 1}, {Length: 1}, {Flags: fiemap.FlagEncoded}, {DiskStart: 1}, {DiskLen: 1}, {Gen: 1}, {Offset: 4096},
	} {
		x := ext(1<<20, 7)
		x[0].Logical += e.Logical
		x[0].Physical += e.Physical
		x[0].Length += e.Length
		x[0].Flags |= e.Flags
		x[0].DiskStart += e.DiskStart
		x[0].DiskLen += e.DiskLen
		x[0].Gen += e.Gen
		x[0].Offset += e.Offset
		if ItemsDigest(x) == ItemsDigest(a) {
			t.Errorf("the digest does not change with %+v", e)
		}
	}
	if ItemsDigest(nil) == 0 || ItemsDigest(nil) == ItemsDigest(a) {
		t.Errorf("digest of no extents: %x", ItemsDigest(nil))
	}
}

func seqOf(t *testing.T, ix *Index, id int64) int64 {
	t.Helper()
	var seq int64
	if err := ix.DB().QueryRow("SELECT changed FROM files WHERE id = ?", id).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

func mustID(t *testing.T, ix *Index, vol fsys.Volume, ino uint64) int64 {
	t.Helper()
	f, ok, err := ix.FileByInode(context.Background(), vol, ino)
	if err != nil || !ok {
		t.Fatalf("inode %d: %v, %v", ino, ok, err)
	}
	return f.ID
}

// An index of version 8 is migrated with the digest of every file's
// recorded extents filled in, as if its files had been recorded since.
func TestMigrateItems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := dbAtVersion(t, path, 8)
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096)")
	sqlExec(t, db, `INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow) VALUES
		(1, '/a', 1, 100, 12288, 1, 1, 0), (2, '/b', 1, 101, 4096, 1, 1, 0), (3, '/c', 1, 102, 0, 1, 1, 0)`)
	sqlExec(t, db, `INSERT INTO extents(file, logical, physical, length, flags, disk_start, disk_len, gen, ext_off) VALUES
		(1, 0, 1048576, 8192, 0, 1048576, 8192, 7, 0), (1, 8192, 4194304, 4096, 8193, 4194304, 4096, 9, 0),
		(2, 0, 2097152, 4096, 8193, 2093056, 8192, 8, 4096)`)
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	for ino := uint64(100); ino <= 102; ino++ {
		f, ok, err := ix.FileByInode(ctx, vol, ino)
		if err != nil || !ok {
			t.Fatalf("inode %d: %v, %v", ino, ok, err)
		}
		had, err := ix.Extents(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := ItemsDigest(had); f.Items != want {
			t.Errorf("inode %d (%d extents): digest %x after migrating, want %x", ino, len(had), f.Items, want)
		}
	}
}

// A file's SumsChanged follows its Changed through every write but the
// recording of its extents alone (SetExtents) and of a NOCOW attribute as
// it was: those keep the sequence number of the write before, which
// changed what its sums and groups depend on.
func TestSumsChanged(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	file := func(path string, size int64) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: 10, Size: size, Mtime: 1, Ctime: 1}}
	}
	ext := func(disk int64) []fiemap.Extent {
		return []fiemap.Extent{{Logical: 0, Physical: disk, Length: 8192, Flags: fiemap.FlagLast, DiskStart: disk, DiskLen: 8192, Gen: 7}}
	}
	sum := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	var id int64
	steps := []struct {
		name string
		do   func(tx *Tx) error
		kept bool // SumsChanged as before
	}{
		{"put", func(tx *Tx) (err error) { id, err = tx.Put(file("/a", 8192), sum, ext(1<<20)); return err }, false},
		{"extents again", func(tx *Tx) error { return tx.SetExtents(id, ext(2<<20)) }, true},
		{"extents again, NOCOW as it was", func(tx *Tx) error {
			if err := tx.SetExtents(id, ext(3<<20)); err != nil {
				return err
			}
			return tx.SetNoCOW(id, NoCOWUnset)
		}, true},
		{"NOCOW as it was", func(tx *Tx) error { return tx.SetNoCOW(id, NoCOWUnset) }, true},
		{"NOCOW set", func(tx *Tx) error { return tx.SetNoCOW(id, NoCOWSet) }, false},
		{"extents again once more", func(tx *Tx) error { return tx.SetExtents(id, ext(4<<20)) }, true},
		{"owner", func(tx *Tx) error { return tx.SetUID(id, 1000) }, false},
		{"extents again, then renamed", func(tx *Tx) error {
			if err := tx.SetExtents(id, ext(5<<20)); err != nil {
				return err
			}
			return tx.Rename(file("/z", 8192))
		}, false},
		{"extents again, then written", func(tx *Tx) error {
			if err := tx.SetExtents(id, ext(6<<20)); err != nil {
				return err
			}
			_, err := tx.Put(file("/z", 4096), sum, ext(7<<20))
			return err
		}, false},
	}
	var was int64
	for _, s := range steps {
		inTx(t, ix, func(tx *Tx) error { return s.do(tx) })
		var got File
		if err := ix.Files(ctx, func(f File) error { got = f; return nil }); err != nil {
			t.Fatal(err)
		}
		want := got.Changed
		if s.kept {
			want = was
		}
		if got.SumsChanged != want || got.Changed == was {
			t.Errorf("%s: Changed %d, SumsChanged %d; want SumsChanged %d, Changed past %d", s.name, got.Changed, got.SumsChanged, want, was)
		}
		was = got.SumsChanged
	}
}
