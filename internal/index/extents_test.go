package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
)

// TestScanExtents checks that readers read every extent once, a file's
// all in one reader, each reader's in (file, logical) order, across
// ranges of file ids and their gaps; and that an error of fn stops them.
func TestScanExtents(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	db := ix.DB()
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096)")
	// Files of ids 1 to 3 x filesRange, every third left out, with one
	// to three extents each.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[int64]int) // extents by file
	total := 0
	for id := int64(1); id <= 3*filesRange; id++ {
		if id%3 == 0 {
			continue
		}
		if _, err := tx.Exec("INSERT INTO files(id, path, vol, ino, size, mtime, ctime, nocow) VALUES(?, ?, 1, ?, 12288, 1, 1, 0)",
			id, fmt.Sprintf("/f%d", id), id); err != nil {
			t.Fatal(err)
		}
		n := 1 + int(id%3)
		for k := n - 1; k >= 0; k-- { // recorded last to first
			if _, err := tx.Exec("INSERT INTO extents(file, logical, physical, length, flags) VALUES(?, ?, ?, 4096, 0)",
				id, k*4096, id<<20+int64(k)*4096); err != nil {
				t.Fatal(err)
			}
		}
		want[id] = n
		total += n
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, readers := range []int{1, 2, 3} {
		got := make([]map[int64]int, readers)
		last := make([]fiemap.Extent, readers)
		lastFile := make([]int64, readers)
		for r := range got {
			got[r] = make(map[int64]int)
		}
		err := ix.ScanExtents(ctx, readers, func(r int, file int64, e fiemap.Extent) error {
			if file < lastFile[r] || file == lastFile[r] && e.Logical <= last[r].Logical {
				t.Errorf("%d readers: reader %d gave file %d at %d after file %d at %d", readers, r, file, e.Logical, lastFile[r], last[r].Logical)
			}
			if e.Physical != file<<20+e.Logical {
				t.Errorf("%d readers: file %d extent %+v", readers, file, e)
			}
			got[r][file]++
			last[r], lastFile[r] = e, file
			return nil
		})
		if err != nil {
			t.Fatalf("%d readers: %v", readers, err)
		}
		n := 0
		for id, w := range want {
			in := 0
			for r := range got {
				if got[r][id] > 0 {
					in++
					if got[r][id] != w {
						t.Errorf("%d readers: file %d: %d extents from reader %d; want %d", readers, id, got[r][id], r, w)
					}
				}
			}
			if in != 1 {
				t.Errorf("%d readers: file %d read by %d readers; want 1", readers, id, in)
			}
		}
		for r := range got {
			for _, c := range got[r] {
				n += c
			}
			if readers > 1 && len(got[r]) == 0 {
				t.Errorf("%d readers: reader %d read nothing", readers, r)
			}
		}
		if n != total {
			t.Errorf("%d readers: %d extents read; want %d", readers, n, total)
		}
	}

	// An error of fn, in either reader, is returned.
	stop := errors.New("stop")
	for _, at := range []int64{5, filesRange + 5} {
		err := ix.ScanExtents(ctx, 2, func(r int, file int64, e fiemap.Extent) error {
			if file == at {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Errorf("ScanExtents stopped at file %d = %v; want %v", at, err, stop)
		}
	}
}

// TestSharedAlone lists the files with an extent flagged shared that no
// other file refers to: not those sharing one with another file, nor
// those whose lone extents are not flagged, nor extents of no known key.
func TestSharedAlone(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	db := ix.DB()
	sqlExec(t, db, "INSERT INTO volumes(id, fsid, subvol, fstype, fsblock) VALUES(1, 'f1', 5, 0, 4096)")
	const shared = fiemap.FlagShared
	for _, e := range []struct {
		file            int64
		flags           uint32
		diskStart, gen  int64
		logical, extOff int64
	}{
		{1, shared, 100 << 20, 7, 0, 0},       // alone, flagged: listed
		{1, 0, 101 << 20, 7, 4096, 0},         // a second extent of file 1
		{2, shared, 102 << 20, 7, 0, 0},       // shared with 3
		{3, shared, 102 << 20, 7, 0, 0},       //
		{4, 0, 103 << 20, 7, 0, 0},            // alone, not flagged
		{5, shared, 104 << 20, 0, 0, 0},       // no key (FIEMAP)
		{6, shared, 105 << 20, 8, 0, 0},       // twice in one file: listed
		{6, shared, 105 << 20, 8, 4096, 4096}, //
	} {
		sqlExec(t, db, fmt.Sprintf("INSERT OR IGNORE INTO files(id, path, vol, ino, size, mtime, ctime, nocow) VALUES(%d, '/f%d', 1, %d, 8192, 1, 1, 0)", e.file, e.file, e.file))
		sqlExec(t, db, fmt.Sprintf("INSERT INTO extents(file, logical, physical, length, flags, disk_start, disk_len, gen, ext_off) VALUES(%d, %d, %d, 4096, %d, %d, 8192, %d, %d)",
			e.file, e.logical, e.diskStart+e.extOff, e.flags, e.diskStart, e.gen, e.extOff))
	}
	var got []int64
	if err := ix.SharedAlone(context.Background(), func(id int64) error {
		got = append(got, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []int64{1, 6}; !slices.Equal(got, want) {
		t.Errorf("SharedAlone = %v; want %v", got, want)
	}
}

// manyExtents returns n extents of one block each, every field distinct.
func manyExtents(n int) []fiemap.Extent {
	ext := make([]fiemap.Extent, n)
	for i := range ext {
		off := int64(i) * 4096
		ext[i] = fiemap.Extent{Logical: off, Physical: 1<<30 + 3*off, Length: 4096, Flags: uint32(i % 2 * fiemap.FlagShared),
			DiskStart: 1<<30 + 3*off, DiskLen: 4096 + int64(i%3)*4096, Gen: int64(7 + i), Offset: int64(i%3) * 4096}
	}
	ext[n-1].Flags |= fiemap.FlagLast
	return ext
}

// putFile records a file of the extents ext (one block each) in a new
// transaction of ix, and returns its id.
func putFile(tb testing.TB, ix *Index, path string, ext []fiemap.Extent) int64 {
	tb.Helper()
	tx, err := ix.Begin(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	vol := fsys.Volume{FS: "0123456789abcdef0123456789abcdef", Subvol: 5}
	if err := tx.PutVolume(fsys.Info{Volume: vol, Magic: fstype.Btrfs, BlockSize: 4096}, 0); err != nil {
		tb.Fatal(err)
	}
	sums := make([]byte, 0, len(ext)*8)
	for i := range ext {
		sums = binary.LittleEndian.AppendUint64(sums, uint64(0x1000+i))
	}
	f := File{Path: path, Identity: fsys.Identity{Vol: vol, Ino: 257, Size: int64(len(ext)) * 4096, Mtime: 1, Ctime: 1}}
	id, err := tx.Put(f, sums, ext)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return id
}

// TestPutManyExtents records files of 1 to 150 extents (several
// statements' worth, and what is left over) and reads every field back.
func TestPutManyExtents(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	if err := ix.UseBlockSize(4096); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 63, 64, 65, 150} {
		want := manyExtents(n)
		id := putFile(t, ix, fmt.Sprintf("/f%d", n), want)
		var got []fiemap.Extent
		err := ix.ScanExtents(context.Background(), 1, func(_ int, file int64, e fiemap.Extent) error {
			if file == id {
				got = append(got, e)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d extents: read back %d, first difference at %d; want them as recorded", n, len(got), firstDiff(got, want))
		}
		tx, err := ix.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Delete(id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func firstDiff(a, b []fiemap.Extent) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkPutExtents records a file of 100,000 extents, as hashfile
// does for a VM image written at random.
func BenchmarkPutExtents(b *testing.B) {
	ix := openT(b, filepath.Join(b.TempDir(), "index.db"))
	if err := ix.UseBlockSize(4096); err != nil {
		b.Fatal(err)
	}
	ext := manyExtents(100000)
	for i := 0; b.Loop(); i++ {
		putFile(b, ix, fmt.Sprintf("/f%d", i), ext)
	}
}

// BenchmarkPutNew records 1,000 files the index has no row of (a first
// run's) in one transaction, each with a chunk of sums and an extent.
func BenchmarkPutNew(b *testing.B) {
	ix := openT(b, filepath.Join(b.TempDir(), "index.db"))
	if err := ix.UseBlockSize(4096); err != nil {
		b.Fatal(err)
	}
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	sums := sumsOf(1, 4)
	ino := uint64(0)
	for b.Loop() {
		tx, err := ix.Begin(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for range 1000 {
			ino++
			f := File{Path: fmt.Sprintf("/d/f%08d", ino), NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: 4 * 4096, Mtime: 1, Ctime: 1}}
			ext := []fiemap.Extent{{Logical: 0, Physical: int64(ino) << 20, Length: 4 * 4096, Flags: fiemap.FlagLast}}
			if _, err := tx.Put(f, sums, ext); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
