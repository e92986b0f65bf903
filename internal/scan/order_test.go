package scan

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/testfs"
)

// TestElevator checks the order the readers get jobs in: those to go
// first in the order put (a job placed where one held is placed counts as
// one), then the placed ones from the place handed out last upwards,
// wrapping around to the lowest, across filesystems; and that take reports
// the end once closed and empty.
func TestElevator(t *testing.T) {
	e := newElevator(16)
	put := func(name string, p place) { e.put(job{path: name}, p) }
	take := func() string {
		t.Helper()
		j, ok := e.take()
		if !ok {
			t.Fatal("take: closed")
		}
		return j.path
	}
	put("a", place{1, 300})
	put("b", now)
	put("c", place{1, 100})
	put("d", place{1, 200})
	put("e", place{1, 300}) // where a is: first
	put("f", place{0, 500}) // another filesystem, ordered before
	var got []string
	for range 5 {
		got = append(got, take())
	}
	put("g", place{1, 150}) // behind: after the wrap
	put("h", place{1, 250}) // ahead
	for range 3 {
		got = append(got, take())
	}
	if want := []string{"b", "e", "f", "c", "d", "h", "a", "g"}; !slices.Equal(got, want) {
		t.Errorf("order %v; want %v", got, want)
	}
	e.close()
	if j, ok := e.take(); ok {
		t.Errorf("take after close, empty: %q", j.path)
	}
}

// TestToPlace checks which jobs are placed: files to be read, neither
// empty nor large; the others go first.
func TestToPlace(t *testing.T) {
	for _, tt := range []struct {
		j    job
		want bool
	}{
		{job{id: fsys.Stat{Size: 4096}}, true},
		{job{id: fsys.Stat{Size: largeFile - 1}}, true},
		{job{id: fsys.Stat{Size: largeFile}}, false},
		{job{id: fsys.Stat{Size: 0}}, false},
		{job{id: fsys.Stat{Size: 4096}, attrOf: 7}, false},
		{job{id: fsys.Stat{Size: 4096}, sumsOf: 7}, false},
	} {
		if got := toPlace(tt.j); got != tt.want {
			t.Errorf("toPlace(size %d, attrOf %d, sumsOf %d) = %v; want %v", tt.j.id.Size, tt.j.attrOf, tt.j.sumsOf, got, tt.want)
		}
	}
}

// TestReadsInDiskOrder checks, on a btrfs (its extent items) and an XFS
// (FIEMAP), that hashfile reads files in the order their data lies on the
// disk, not by name: files written in reverse order of their names get
// index rows, which the writer adds in the order read with one reader, in
// the order of their data. On a btrfs with two subvolumes (a device each)
// whose files were written in turn, the order is the filesystem's, across
// them.
func TestReadsInDiskOrder(t *testing.T) {
	var reverse []string
	for i := 7; i >= 0; i-- {
		reverse = append(reverse, fmt.Sprintf("f%d", i))
	}
	for _, tt := range []struct {
		name, fstype string
		subvols      []string
		written      []string // in this order
	}{
		{"btrfs", "btrfs", nil, reverse},
		{"xfs", "xfs", nil, reverse},
		{"btrfs subvolumes", "btrfs", []string{"a", "b"}, []string{"a/f3", "b/f2", "a/f1", "b/f0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mnt := testfs.Mount(t, tt.fstype, "512M")
			dir := filepath.Join(mnt, "tree")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, sv := range tt.subvols {
				testfs.Run(t, "btrfs", "subvolume", "create", filepath.Join(dir, sv))
			}
			for i, name := range tt.written {
				p := filepath.Join(dir, name)
				writeRandom(t, p, uint64(i), 256<<10)
				testfs.Sync(t, p)
			}
			type at struct {
				name string
				phys int64
			}
			var placed []at
			for _, name := range tt.written {
				f, err := os.Open(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				e, ok, err := fiemap.First(f)
				f.Close()
				if err != nil || !ok {
					t.Fatalf("%s: first extent: %v %v", name, ok, err)
				}
				placed = append(placed, at{name, e.Physical})
			}
			slices.SortFunc(placed, func(a, b at) int { return cmp.Compare(a.phys, b.phys) })
			var want []string
			for _, p := range placed {
				want = append(want, p.name)
			}
			if slices.IsSorted(want) {
				t.Fatalf("setup: the files' data lies in the order of their names: %v", placed)
			}

			holdReads = true
			t.Cleanup(func() { holdReads = false })
			ix := openIndex(t)
			if _, err := Run(context.Background(), ix, []string{dir}, Options{BlockSize: 4096, Jobs: 1, Error: func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) }}); err != nil {
				t.Fatal(err)
			}
			var rows []index.File
			if err := ix.Files(context.Background(), func(f index.File) error {
				rows = append(rows, f)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(rows, func(a, b index.File) int { return cmp.Compare(a.ID, b.ID) })
			var got []string
			for _, f := range rows {
				rel, err := filepath.Rel(dir, f.Path)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rel)
			}
			if !slices.Equal(got, want) {
				t.Errorf("read in the order %v; the data lies in the order %v", got, want)
			}
		})
	}
}
