package index

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/fsys"
	"same/schema"
)

// An index of version 2, made by hand from 001_init.sql and
// 002_filesystems.sql with rows, is migrated to today's version with its
// files, their NOCOW attribute (known or not), sums and extents intact.
func TestMigrateV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := rawDB(t, path)
	for _, name := range []string{"001_init.sql", "002_filesystems.sql"} {
		body, err := schema.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sqlExec(t, db, string(body))
	}
	sqlExec(t, db, "PRAGMA user_version = 2")
	sqlExec(t, db, "INSERT INTO meta(key, value) VALUES('block_size', '4096')")
	sqlExec(t, db, "INSERT INTO devices(dev, fstype, fsblock, fsid) VALUES(42, 2435016766, 4096, '0123456789abcdef0123456789abcdef')")
	sqlExec(t, db, `INSERT INTO files(id, path, dev, ino, size, mtime, ctime, nocow) VALUES
		(1, '/d/a', 42, 100, 8192, 11, 12, 1), (2, '/d/b', 42, 101, 4096, 21, 22, 0), (3, NULL, 42, 102, 4096, 31, 32, NULL)`)
	sqlExec(t, db, "INSERT INTO blocks(file, chunk, hashes) VALUES(1, 0, x'0102030405060708'), (2, 0, x'1112131415161718'), (3, 0, x'2122232425262728')")
	sqlExec(t, db, "INSERT INTO extents(file, logical, physical, length, flags) VALUES(1, 0, 1048576, 8192, 8193), (2, 0, 2097152, 4096, 1)")
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	ix := openT(t, path)
	checkCurrent(t, ix)
	if got, want := ix.Warnings(), []string{fmt.Sprintf("index %s upgraded from format 2 to %d", path, Version())}; !slices.Equal(got, want) {
		t.Errorf("Warnings() = %q; want %q", got, want)
	}
	ctx := context.Background()
	var files []File
	if err := ix.Files(ctx, func(f File) error { files = append(files, f); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(files, func(a, b File) int { return int(a.ID - b.ID) })
	vol := LegacyVolume(42) // named by st_dev until hashfile meets it again
	want := []File{
		{ID: 1, Path: "/d/a", NoCOW: NoCOWSet, UID: UIDUnknown, Identity: fsys.Identity{Vol: vol, Ino: 100, Size: 8192, Mtime: 11, Ctime: 12}},
		{ID: 2, Path: "/d/b", NoCOW: NoCOWUnset, UID: UIDUnknown, Identity: fsys.Identity{Vol: vol, Ino: 101, Size: 4096, Mtime: 21, Ctime: 22}},
		{ID: 3, Path: "", NoCOW: NoCOWUnknown, UID: UIDUnknown, Identity: fsys.Identity{Vol: vol, Ino: 102, Size: 4096, Mtime: 31, Ctime: 32}},
	}
	if !slices.Equal(files, want) {
		t.Errorf("Files() = %+v; want %+v", files, want)
	}
	for id, want := range map[int64]string{1: "0102030405060708", 2: "1112131415161718", 3: "2122232425262728"} {
		sums, err := ix.Sums(ctx, id)
		if err != nil || hex.EncodeToString(sums) != want {
			t.Errorf("Sums(%d) = %x, %v; want %s", id, sums, err, want)
		}
	}
	var n int
	if err := ix.DB().QueryRow("SELECT count(*) FROM extents WHERE (file = 1 AND physical = 1048576 AND length = 8192) OR (file = 2 AND physical = 2097152 AND length = 4096)").Scan(&n); err != nil || n != 2 {
		t.Errorf("extents kept = %d, %v; want 2", n, err)
	}
	var check string
	if err := ix.DB().QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
}

// An index of version 12, whose blocks lay in the b-tree of their key, is
// migrated to a table of its own with the same sums, read in the same
// order, and the upgrade is told with the space the copy left free.
func TestMigrateBlocksRowid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db := dbAtVersion(t, path, 12)
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096)")
	sqlExec(t, db, `INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow, changed) VALUES
		(1, '/a', 1, 100, 1, 1, 1, 0, 1), (2, '/b', 1, 101, 1, 1, 1, 0, 1), (3, '/c', 1, 102, 1, 1, 1, 0, 1)`)
	// Full chunks of random sums, three of file 2: 2.5 MiB in all, and
	// each row spills over onto overflow pages.
	r := rand.New(rand.NewPCG(1, 2))
	want := map[int64][]byte{}
	for _, fc := range []struct{ file, chunks int64 }{{2, 3}, {1, 1}, {3, 1}} {
		for c := range fc.chunks {
			b := randomChunk(r)
			sqlExec(t, db, "INSERT INTO blocks(file, chunk, hashes) VALUES(?, ?, ?)", fc.file, c, b)
			want[fc.file] = append(want[fc.file], b...)
		}
	}
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	ix := openT(t, path)
	checkCurrent(t, ix)
	for id, w := range want {
		if got, err := ix.Sums(context.Background(), id); err != nil || !bytes.Equal(got, w) {
			t.Errorf("Sums(%d) = %d bytes, %v; want the %d bytes written", id, len(got), err, len(w))
		}
	}
	wantScan := []string{
		fmt.Sprintf("[1]@0:%x", want[1][:8]),
		fmt.Sprintf("[2]@0:%x", want[2][:8]),
		fmt.Sprintf("[2]@%d:%x", ChunkBlocks, want[2][ChunkBlocks*blockhash.SumSize:][:8]),
		fmt.Sprintf("[2]@%d:%x", 2*ChunkBlocks, want[2][2*ChunkBlocks*blockhash.SumSize:][:8]),
		fmt.Sprintf("[3]@0:%x", want[3][:8]),
	}
	if got := scanned(t, ix); !slices.Equal(got, wantScan) {
		t.Errorf("ScanSums after migrating: %q, want %q", got, wantScan)
	}
	free := ix.freeBytes()
	if free < 2<<20 {
		t.Errorf("%d bytes of free pages after copying 2.5 MiB of sums; want the old table's", free)
	}
	wantWarn := fmt.Sprintf("index %s upgraded from format 12 to %d; %d MiB of the file is now free pages, which later writes reuse (SQLite's VACUUM gives them back to the filesystem)", path, Version(), free>>20)
	if got := ix.Warnings(); !slices.Equal(got, []string{wantWarn}) {
		t.Errorf("Warnings() = %q; want %q", got, []string{wantWarn})
	}
}

// The upgrade to schema 13 copies every sum. Where the disk cannot hold
// the copy, opening the index fails, with either page cache (Open's
// writes at commit, OpenExisting's as it goes), saying what it needs; the
// index is left as it was, and opens once there is room.
func TestMigrateDiskFull(t *testing.T) {
	mnt := tmpfsT(t, "16m")
	path := filepath.Join(mnt, "index.db")
	db := dbAtVersion(t, path, 12)
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096)")
	sqlExec(t, db, "INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow, changed) VALUES(1, '/a', 1, 100, 1, 1, 1, 0, 1)")
	r := rand.New(rand.NewPCG(3, 4))
	var want []byte
	for c := range 8 { // 4 MiB
		b := randomChunk(r)
		sqlExec(t, db, "INSERT INTO blocks(file, chunk, hashes) VALUES(1, ?, ?)", c, b)
		want = append(want, b...)
	}
	db.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// Leave 2 MiB free.
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	fill := filepath.Join(mnt, "fill")
	if err := os.WriteFile(fill, make([]byte, int64(st.Bavail)*st.Bsize-2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr := "open index " + path + ": migrate to version 13 (013_blocks_rowid.sql): database or disk is full (13): the upgrade copies the index's block sums (4 MiB) and needs about twice that free where the index is; nothing was changed"
	for name, open := range map[string]func(string) (*Index, error){"Open": Open, "OpenExisting": OpenExisting} {
		ix, err := open(path)
		if err == nil {
			ix.Close()
		}
		if err == nil || err.Error() != wantErr {
			t.Errorf("%s on a full disk = %v; want %q", name, err, wantErr)
		}
	}
	raw := rawDB(t, path)
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 12 {
		t.Errorf("user_version after the failed upgrades = %d, %v; want 12", v, err)
	}
	raw.Close()

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
	if got, err := ix.Sums(context.Background(), 1); err != nil || !bytes.Equal(got, want) {
		t.Errorf("Sums(1) after the upgrade = %d bytes, %v; want the %d bytes written", len(got), err, len(want))
	}
}

// randomChunk returns a full chunk of random sums.
func randomChunk(r *rand.Rand) []byte {
	b := make([]byte, ChunkBlocks*blockhash.SumSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
