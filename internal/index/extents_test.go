package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"same/internal/fiemap"
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
