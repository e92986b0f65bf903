package index

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// sumsOf returns n packed sums, the k-th tag*1000+k+1.
func sumsOf(tag, n int) []byte {
	var b []byte
	for k := range n {
		b = binary.LittleEndian.AppendUint64(b, uint64(tag*1000+k+1))
	}
	return b
}

// inTx runs fn in a transaction of ix and commits it, failing t on any
// error.
func inTx(t *testing.T, ix *Index, fn func(tx *Tx) error) {
	t.Helper()
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// scanned returns what ScanSums gives: for each chunk, the files it names
// and the chunk's sums.
func scanned(t *testing.T, ix *Index) []string {
	t.Helper()
	var out []string
	err := ix.ScanSums(context.Background(), func(files []int64, first int, sums []byte) error {
		out = append(out, fmt.Sprintf("%v@%d:%x", files, first, sums[:8]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Files recorded as copies of another row's (Tx.Copy) share its sums:
// the index holds them once, however many snapshots hold the file, and
// every reader sees them as the file's own. When the row that holds them
// is recorded again or deleted, they pass to the first row that shares
// them; a row that shared them and is recorded again holds its own.
func TestSharedSums(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol, snap := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 256}
	const n = ChunkBlocks + 3 // two chunks
	file := func(v fsys.Volume, ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: v, Ino: ino, Size: n * 4096, Mtime: 1, Ctime: 1}}
	}
	do := func(fn func(tx *Tx) error) { t.Helper(); inTx(t, ix, fn) }
	old, fresh := sumsOf(1, n), sumsOf(2, n)
	var a, b, c, d int64
	do(func(tx *Tx) (err error) { a, err = tx.Put(file(vol, 10, "/a"), old, nil); return err })
	copyOf := func(from int64, ino uint64, path string) (id int64) {
		t.Helper()
		do(func(tx *Tx) error {
			ok, err := tx.Copy(from, seqOf(t, ix, from), file(snap, ino, path), nil)
			if !ok && err == nil {
				err = fmt.Errorf("copy of %d not recorded", from)
			}
			return err
		})
		return mustID(t, ix, snap, ino)
	}
	b = copyOf(a, 10, "/s/a")
	c = copyOf(a, 11, "/s/b")
	d = copyOf(b, 12, "/s/c") // a copy of a copy shares the first row's
	check := func(step string, want map[int64][]byte, scan []string, rows int) {
		t.Helper()
		r, err := ix.SumsReader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for id, w := range want {
			got, err := ix.Sums(ctx, id)
			if err != nil || !bytes.Equal(got, w) {
				t.Errorf("%s: Sums(%d) = %x..., %v; want %x...", step, id, got[:min(8, len(got))], err, w[:8])
			}
			if got, err := r.Sums(id); err != nil || !bytes.Equal(got, w) {
				t.Errorf("%s: SumsReader.Sums(%d) = %x..., %v; want %x...", step, id, got[:min(8, len(got))], err, w[:8])
			}
			second := w[ChunkBlocks*8:]
			if got, err := ix.Chunk(ctx, id, 1); err != nil || !bytes.Equal(got, second) {
				t.Errorf("%s: Chunk(%d, 1) = %x, %v; want %x", step, id, got, err, second)
			}
			if got, err := r.ChunkTo(id, 1, nil); err != nil || !bytes.Equal(got, second) {
				t.Errorf("%s: SumsReader.ChunkTo(%d, 1) = %x, %v; want %x", step, id, got, err, second)
			}
		}
		if got := scanned(t, ix); !slices.Equal(got, scan) {
			t.Errorf("%s: ScanSums gave\n%q\nwant\n%q", step, got, scan)
		}
		var have int
		if err := ix.DB().QueryRow("SELECT count(*) FROM blocks").Scan(&have); err != nil || have != rows {
			t.Errorf("%s: %d chunks stored, %v; want %d", step, have, err, rows)
		}
		shared := int64(len(want)) * n // every file holds n sums
		if got, err := ix.StoredSums(ctx); err != nil || got != shared {
			t.Errorf("%s: StoredSums = %d, %v; want %d", step, got, err, shared)
		}
	}
	o0, o1 := fmt.Sprintf("@0:%x", old[:8]), fmt.Sprintf("@%d:%x", ChunkBlocks, old[ChunkBlocks*8:ChunkBlocks*8+8])
	f0, f1 := fmt.Sprintf("@0:%x", fresh[:8]), fmt.Sprintf("@%d:%x", ChunkBlocks, fresh[ChunkBlocks*8:ChunkBlocks*8+8])
	ids := func(v ...int64) string { return fmt.Sprint(v) }
	check("copied", map[int64][]byte{a: old, b: old, c: old, d: old},
		[]string{ids(a, b, c, d) + o0, ids(a, b, c, d) + o1}, 2)

	// The origin written again: its copies keep the sums it had, now
	// held by the first of them.
	do(func(tx *Tx) (err error) { _, err = tx.Put(file(vol, 10, "/a"), fresh, nil); return err })
	check("origin recorded again", map[int64][]byte{a: fresh, b: old, c: old, d: old},
		[]string{ids(a) + f0, ids(a) + f1, ids(b, c, d) + o0, ids(b, c, d) + o1}, 4)

	// A copy recorded again holds its own; the others keep sharing.
	do(func(tx *Tx) (err error) { _, err = tx.Put(file(snap, 12, "/s/c"), fresh, nil); return err })
	check("copy recorded again", map[int64][]byte{a: fresh, b: old, c: old, d: fresh},
		[]string{ids(a) + f0, ids(a) + f1, ids(b, c) + o0, ids(b, c) + o1, ids(d) + f0, ids(d) + f1}, 6)

	// The row holding shared sums deleted: they pass on; the last one
	// deleted takes them with it.
	do(func(tx *Tx) error { return tx.Delete(b) })
	check("holder deleted", map[int64][]byte{a: fresh, c: old, d: fresh},
		[]string{ids(a) + f0, ids(a) + f1, ids(c) + o0, ids(c) + o1, ids(d) + f0, ids(d) + f1}, 6)
	do(func(tx *Tx) error { return tx.Delete(c) })
	check("last holder deleted", map[int64][]byte{a: fresh, d: fresh},
		[]string{ids(a) + f0, ids(a) + f1, ids(d) + f0, ids(d) + f1}, 4)
}

// A SumsReader reads in one transaction: it sees the index as it was at
// its first read, and a writer meanwhile is not held up.
func TestSumsReader(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	file := func(ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: 5 * 4096, Mtime: 1, Ctime: 1}}
	}
	var a, b int64
	inTx(t, ix, func(tx *Tx) (err error) { a, err = tx.Put(file(10, "/a"), sumsOf(1, 5), nil); return err })
	inTx(t, ix, func(tx *Tx) (err error) { b, err = tx.Put(file(11, "/b"), sumsOf(2, 5), nil); return err })
	r, err := ix.SumsReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Sums(a); err != nil || !bytes.Equal(got, sumsOf(1, 5)) {
		t.Fatalf("Sums(a) = %x, %v; want %x", got, err, sumsOf(1, 5))
	}
	// b written again while the reader is open: the write commits, and
	// the reader still sees b as it was.
	inTx(t, ix, func(tx *Tx) (err error) { _, err = tx.Put(file(11, "/b"), sumsOf(3, 5), nil); return err })
	if got, err := r.Sums(b); err != nil || !bytes.Equal(got, sumsOf(2, 5)) {
		t.Errorf("reader: Sums(b) = %x, %v; want the sums before the write, %x", got, err, sumsOf(2, 5))
	}
	if got, err := r.ChunkTo(b, 0, nil); err != nil || !bytes.Equal(got, sumsOf(2, 5)) {
		t.Errorf("reader: ChunkTo(b, 0) = %x, %v; want the sums before the write, %x", got, err, sumsOf(2, 5))
	}
	if got, err := ix.Sums(ctx, b); err != nil || !bytes.Equal(got, sumsOf(3, 5)) {
		t.Errorf("index: Sums(b) = %x, %v; want the sums written, %x", got, err, sumsOf(3, 5))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// An index of version 10 is migrated with the copies of sums that its
// clones held (clone_of, clone_seq as their origin's changed) removed,
// the clones sharing the sums of the first row up their chain that is no
// clone; a row that is no clone any more keeps its own.
func TestMigrateSharedSums(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := dbAtVersion(t, path, 10)
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096), (2, 'f1', 256, 0, 4096), (3, 'f1', 257, 0, 4096)")
	// 1 the origin; 2 its clone; 3 a clone of 2; 4 was a clone of 1 when
	// 1 had changed 3 (since written again: its own sums now).
	sqlExec(t, db, `INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow, changed, clone_of, clone_seq) VALUES
		(1, '/a', 1, 100, 4096, 1, 1, 0, 5, NULL, NULL), (2, '/s/a', 2, 100, 4096, 1, 1, 0, 6, 1, 5),
		(3, '/t/a', 3, 100, 4096, 1, 1, 0, 7, 2, 6), (4, '/s/b', 2, 101, 4096, 1, 1, 0, 4, 1, 3)`)
	sqlExec(t, db, `INSERT INTO blocks(file, chunk, hashes) VALUES
		(1, 0, x'0100000000000000'), (2, 0, x'0100000000000000'), (3, 0, x'0100000000000000'), (4, 0, x'0200000000000000')`)
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
	if got, want := scanned(t, ix), []string{"[1 2 3]@0:0100000000000000", "[4]@0:0200000000000000"}; !slices.Equal(got, want) {
		t.Errorf("ScanSums after migrating: %q, want %q", got, want)
	}
	for id, want := range map[int64]string{1: "0100000000000000", 2: "0100000000000000", 3: "0100000000000000", 4: "0200000000000000"} {
		if got, err := ix.Sums(context.Background(), id); err != nil || fmt.Sprintf("%x", got) != want {
			t.Errorf("Sums(%d) = %x, %v; want %s", id, got, err, want)
		}
	}
}

// A file recorded with the extents and sums of one recorded before (a file
// of a snapshot hashed on its own, a reflinked copy) shares its sums; with
// the same extents but other sums (they changed under extents that did
// not, or a digest that collides), or with other extents, it holds its
// own. Extents at no known place (inline), or not shared, are not looked
// up.
func TestPutShares(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	const n = ChunkBlocks*2 + 5
	file := func(ino uint64) File {
		return File{Path: fmt.Sprintf("/f%d", ino), NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: n * 4096, Mtime: 1, Ctime: 1}}
	}
	ext := func(at int64, flags uint32) []fiemap.Extent {
		return []fiemap.Extent{{Logical: 0, Physical: at, Length: n * 4096, Flags: flags, DiskStart: at, DiskLen: n * 4096, Gen: 7}}
	}
	// A chunk of zero sums in the middle is not stored.
	sums := sumsOf(1, n)
	clear(sums[ChunkBlocks*8 : 2*ChunkBlocks*8])
	other := slices.Clone(sums)
	other[len(other)-1] ^= 1
	put := func(ino uint64, sums []byte, ext []fiemap.Extent) int64 {
		t.Helper()
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id, err := tx.Put(file(ino), sums, ext)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return id
	}
	holder := func(id int64) int64 {
		t.Helper()
		var of sql.NullInt64
		if err := ix.DB().QueryRow("SELECT blocks_of FROM files WHERE id = ?", id).Scan(&of); err != nil {
			t.Fatal(err)
		}
		return of.Int64
	}
	a := put(1, sums, ext(1<<30, 0))
	for _, c := range []struct {
		name string
		ino  uint64
		sums []byte
		ext  []fiemap.Extent
		want int64
	}{
		{"same extents, same sums", 2, sums, ext(1<<30, fiemap.FlagShared), a},
		{"same extents, other sums", 3, other, ext(1<<30, fiemap.FlagShared), 0},
		{"other extents, same sums", 4, sums, ext(2<<30, fiemap.FlagShared), 0},
		{"inline", 5, sums, ext(1<<30, fiemap.FlagShared|fiemap.FlagDataInline), 0},
		{"not shared", 6, sums, ext(1<<30, 0), 0},
		// A file whose sums hold the first chunk of these alone, then one
		// with the same extents and all of them: the first's do not cover
		// the second's.
		{"first chunk alone", 7, sums[:ChunkBlocks*8], ext(4<<30, fiemap.FlagShared), 0},
		{"same extents, more sums", 8, sums, ext(4<<30, fiemap.FlagShared), 0},
	} {
		id := put(c.ino, c.sums, c.ext)
		if got := holder(id); got != c.want {
			t.Errorf("%s: shares the sums of %d, want %d", c.name, got, c.want)
		}
		if got, err := ix.Sums(ctx, id); err != nil || !bytes.Equal(got, c.sums) {
			t.Errorf("%s: Sums = %x..., %v", c.name, got[:8], err)
		}
	}
}

// A file recorded again holds only what it is recorded with: no chunk of
// sums nor extent of before stays, whether the row holds them (a file
// hashed again) or not (a new row, which has nothing to clear).
func TestPutReplaces(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	const n = 2 * ChunkBlocks
	f := File{Path: "/a", NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: 3, Size: n * 4096, Mtime: 1, Ctime: 1}}
	two := []fiemap.Extent{{Logical: 0, Physical: 1 << 30, Length: ChunkBlocks * 4096}, {Logical: ChunkBlocks * 4096, Physical: 2 << 30, Length: ChunkBlocks * 4096, Flags: fiemap.FlagLast}}
	one := []fiemap.Extent{{Logical: 0, Physical: 3 << 30, Length: 4096, Flags: fiemap.FlagLast}}
	for _, step := range []struct {
		sums []byte
		ext  []fiemap.Extent
	}{{sumsOf(1, n), two}, {sumsOf(2, 1), one}} {
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id, err := tx.Put(f, step.sums, step.ext)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		got, err := ix.Extents(ctx, id)
		if err != nil || len(got) != len(step.ext) || got[0].Physical != step.ext[0].Physical {
			t.Errorf("extents %+v, %v; want %+v", got, err, step.ext)
		}
		if sums, err := ix.Sums(ctx, id); err != nil || !bytes.Equal(sums, step.sums) {
			t.Errorf("sums of %d bytes, %v; want %d", len(sums), err, len(step.sums))
		}
	}
}

// Copy records a file of a new snapshot as a clone of its origin's row in
// one way when the inode has no row and another when it has one, with the
// same row in the end: its identity, owner, the origin's digest of items,
// sums and extents shared with the origin (files.blocks_of and
// files.extents_of: no rows of its own), and its path taken
// from any inode that held it. It records nothing when the origin's row
// is no longer as given, or has another identity.
func TestCopy(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol, snap := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 256}
	file := func(v fsys.Volume, ino uint64, path string, mtime int64) File {
		return File{Path: path, NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: v, Ino: ino, Size: 3 * 4096, Mtime: mtime, Ctime: 1}}
	}
	ext := []fiemap.Extent{{Logical: 0, Physical: 1 << 20, Length: 3 * 4096, Flags: fiemap.FlagLast, DiskStart: 1 << 20, DiskLen: 3 * 4096, Gen: 7}}
	do := func(fn func(tx *Tx) error) { t.Helper(); inTx(t, ix, fn) }
	var origin, other int64
	do(func(tx *Tx) (err error) {
		if origin, err = tx.Put(file(vol, 10, "/live/a", 1), sumsOf(1, 3), ext); err != nil {
			return err
		}
		other, err = tx.Put(file(snap, 99, "/snap/a", 1), sumsOf(2, 3), nil) // holds the path first
		return err
	})
	// row describes a file's row as Copy leaves it; "" when there is none.
	row := func(v fsys.Volume, ino uint64) string {
		t.Helper()
		var s string
		err := ix.DB().QueryRow(`SELECT printf('%s size=%d mtime=%d ctime=%d uid=%d nocow=%d items=%d blocks_of=%d clone_of=%d clone_seq=%d extents_of=%d extents=%d',
				coalesce(f.path, '-'), f.size, f.mtime, f.ctime, f.uid, f.nocow, f.items = o.items, f.blocks_of, f.clone_of, f.clone_seq = o.changed,
				f.extents_of, (SELECT count(*) FROM extents e WHERE e.file = f.id))
			FROM files f JOIN files o ON o.id = ? WHERE f.vol = (SELECT id FROM volumes WHERE fsid = ? AND subvol = ?) AND f.ino = ?`,
			origin, v.FS, int64(v.Subvol), int64(ino)).Scan(&s)
		if err == sql.ErrNoRows {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := fmt.Sprintf("/snap/a size=12288 mtime=1 ctime=1 uid=1000 nocow=0 items=1 blocks_of=%d clone_of=%d clone_seq=1 extents_of=%d extents=0", origin, origin, origin)
	for _, tt := range []struct {
		name   string
		ino    uint64
		before func(tx *Tx) error
	}{
		{"new inode", 10, nil},
		{"inode recorded before", 11, func(tx *Tx) error {
			_, err := tx.Put(file(snap, 11, "/snap/old", 5), sumsOf(3, 3), nil)
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				do(tt.before)
			}
			do(func(tx *Tx) error {
				ok, err := tx.Copy(origin, seqOf(t, ix, origin), file(snap, tt.ino, "/snap/a", 1), nil)
				if err == nil && !ok {
					err = fmt.Errorf("Copy recorded nothing")
				}
				return err
			})
			if got := row(snap, tt.ino); got != want {
				t.Errorf("row = %q; want %q", got, want)
			}
			if got, err := ix.Sums(ctx, mustID(t, ix, snap, tt.ino)); err != nil || !bytes.Equal(got, sumsOf(1, 3)) {
				t.Errorf("Sums = %x, %v; want the origin's", got, err)
			}
			shared := ext[0]
			shared.Flags |= fiemap.FlagShared
			if got, err := ix.Extents(ctx, mustID(t, ix, snap, tt.ino)); err != nil || !slices.Equal(got, []fiemap.Extent{shared}) {
				t.Errorf("Extents = %+v, %v; want the origin's, shared: %+v", got, err, shared)
			}
			var path sql.NullString
			if err := ix.DB().QueryRow("SELECT path FROM files WHERE id = ?", other).Scan(&path); err != nil || path.Valid {
				t.Errorf("the inode that held the path holds %v (%v); want none", path, err)
			}
		})
	}
	for _, tt := range []struct {
		name       string
		seq, mtime int64
	}{
		{"origin changed since", seqOf(t, ix, origin) - 1, 1},
		{"another identity", seqOf(t, ix, origin), 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			do(func(tx *Tx) error {
				ok, err := tx.Copy(origin, tt.seq, file(snap, 12, "/snap/b", tt.mtime), nil)
				if err == nil && ok {
					err = fmt.Errorf("Copy recorded the file")
				}
				return err
			})
			if got := row(snap, 12); got != "" {
				t.Errorf("row = %q; want none", got)
			}
		})
	}
}

// An index of version 16 is migrated with the copies of extents that its
// clones held removed, the clones referring to the extents of the first
// row up their chain that is no clone (flagged shared as read through
// it); a row that is no clone any more keeps its own.
func TestMigrateClonedExtents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := dbAtVersion(t, path, 16)
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096), (2, 'f1', 256, 0, 4096), (3, 'f1', 257, 0, 4096)")
	// 1 the origin; 2 its clone; 3 a clone of 2; 4 was a clone of 1 when
	// 1 had changed 3 (since written again: its own extents now).
	sqlExec(t, db, `INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow, changed, clone_of, clone_seq, blocks_of) VALUES
		(1, '/a', 1, 100, 8192, 1, 1, 0, 5, NULL, NULL, NULL), (2, '/s/a', 2, 100, 8192, 1, 1, 0, 6, 1, 5, 1),
		(3, '/t/a', 3, 100, 8192, 1, 1, 0, 7, 2, 6, 1), (4, '/s/b', 2, 101, 8192, 1, 1, 0, 4, 1, 3, NULL)`)
	sqlExec(t, db, `INSERT INTO extents(file, logical, physical, length, flags, disk_start, disk_len, gen, ext_off) VALUES
		(1, 0, 1048576, 8192, 1, 1048576, 8192, 7, 0), (2, 0, 1048576, 8192, 8193, 1048576, 8192, 7, 0),
		(3, 0, 1048576, 8192, 8193, 1048576, 8192, 7, 0), (4, 0, 2097152, 8192, 1, 2097152, 8192, 7, 0)`)
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
	var got []string
	for id := int64(1); id <= 4; id++ {
		var of, own int64
		if err := ix.DB().QueryRow("SELECT coalesce(extents_of, 0), (SELECT count(*) FROM extents WHERE file = ?1) FROM files WHERE id = ?1", id).Scan(&of, &own); err != nil {
			t.Fatal(err)
		}
		e, err := ix.Extents(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d: of %d, %d own, %v", id, of, own, e))
	}
	origin := fiemap.Extent{Logical: 0, Physical: 1 << 20, Length: 8192, Flags: fiemap.FlagLast, DiskStart: 1 << 20, DiskLen: 8192, Gen: 7}
	shared := origin
	shared.Flags |= fiemap.FlagShared
	own := fiemap.Extent{Logical: 0, Physical: 2 << 20, Length: 8192, Flags: fiemap.FlagLast, DiskStart: 2 << 20, DiskLen: 8192, Gen: 7}
	want := []string{
		fmt.Sprintf("1: of 0, 1 own, %v", []fiemap.Extent{origin}),
		fmt.Sprintf("2: of 1, 0 own, %v", []fiemap.Extent{shared}),
		fmt.Sprintf("3: of 1, 0 own, %v", []fiemap.Extent{shared}),
		fmt.Sprintf("4: of 0, 1 own, %v", []fiemap.Extent{own}),
	}
	if !slices.Equal(got, want) {
		t.Errorf("after migrating:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A new row's id may be one a deleted row had (SQLite gives the largest
// id plus one): Put records nothing to clear for it, so the deleted row
// must have left no sums, extents or rows referring to it.
func TestPutReusedID(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	const n = ChunkBlocks + 3
	file := func(ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: n * 4096, Mtime: 1, Ctime: 1}}
	}
	ext := func(phys int64) []fiemap.Extent {
		return []fiemap.Extent{{Logical: 0, Physical: phys, Length: n * 4096, Flags: fiemap.FlagLast | fiemap.FlagShared, DiskStart: phys, DiskLen: n * 4096, Gen: 7}}
	}
	count := func(table string) (k int) {
		t.Helper()
		if err := ix.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	var a, b, c, d int64
	inTx(t, ix, func(tx *Tx) (err error) {
		if a, err = tx.Put(file(10, "/a"), sumsOf(1, n), ext(1<<30)); err != nil {
			return err
		}
		b, err = tx.Put(file(11, "/b"), sumsOf(2, n), ext(2<<30))
		return err
	})
	// Deleted in a transaction of its own, then in the one that puts.
	inTx(t, ix, func(tx *Tx) error { return tx.Delete(b) })
	inTx(t, ix, func(tx *Tx) (err error) { c, err = tx.Put(file(12, "/c"), sumsOf(3, n), ext(3<<30)); return err })
	inTx(t, ix, func(tx *Tx) (err error) {
		if err = tx.Delete(c); err != nil {
			return err
		}
		d, err = tx.Put(file(13, "/d"), sumsOf(4, n), ext(4<<30))
		return err
	})
	if c != b || d != b {
		t.Fatalf("ids %d, %d after %d was deleted; want it again", c, d, b)
	}
	for id, tag := range map[int64]int{a: 1, d: 4} {
		if got, err := ix.Sums(ctx, id); err != nil || !bytes.Equal(got, sumsOf(tag, n)) {
			t.Errorf("Sums(%d) = %x..., %v; want %x...", id, got[:min(8, len(got))], err, sumsOf(tag, n)[:8])
		}
		if got, err := ix.Extents(ctx, id); err != nil || len(got) != 1 || got[0].Physical != int64(tag)<<30 {
			t.Errorf("Extents(%d) = %+v, %v; want one at %d", id, got, err, int64(tag)<<30)
		}
	}
	if got := count("blocks"); got != 4 {
		t.Errorf("%d chunks stored; want 4", got)
	}
	if got := count("extents"); got != 2 {
		t.Errorf("%d extents stored; want 2", got)
	}
}
