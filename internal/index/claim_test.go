package index

import (
	"context"
	"maps"
	"path/filepath"
	"same/internal/fsys"
	"slices"
	"testing"
)

// byIno returns the path the index holds for each inode ("" for none).
func byIno(t *testing.T, ix *Index) map[uint64]string {
	t.Helper()
	m := make(map[uint64]string)
	err := ix.Files(context.Background(), func(f File) error {
		m[f.Ino] = f.Path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A path belongs to one inode at a time: Put and Rename take it from
// whichever inode held it, which keeps its row (and sums) with no path;
// Delete frees it.
func TestClaim(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	file := func(ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: fsys.Volume{FS: "f1"}, Ino: ino, Size: 4096, Mtime: int64(ino), Ctime: int64(ino)}}
	}
	sum := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	ids := make(map[uint64]int64)
	steps := []struct {
		name string
		do   func(tx *Tx) error
		want map[uint64]string
	}{
		{"put 10 at /a", func(tx *Tx) (err error) {
			ids[10], err = tx.Put(file(10, "/a"), sum, nil)
			return err
		}, map[uint64]string{10: "/a"}},
		{"put 11 at /a", func(tx *Tx) (err error) {
			ids[11], err = tx.Put(file(11, "/a"), sum, nil)
			return err
		}, map[uint64]string{10: "", 11: "/a"}},
		{"put 12 at /b", func(tx *Tx) (err error) {
			ids[12], err = tx.Put(file(12, "/b"), sum, nil)
			return err
		}, map[uint64]string{10: "", 11: "/a", 12: "/b"}},
		{"rename 10 to /b", func(tx *Tx) error {
			return tx.Rename(file(10, "/b"))
		}, map[uint64]string{10: "/b", 11: "/a", 12: ""}},
		{"rename 10 to /c", func(tx *Tx) error {
			return tx.Rename(file(10, "/c"))
		}, map[uint64]string{10: "/c", 11: "/a", 12: ""}},
		{"delete 11", func(tx *Tx) error {
			return tx.Delete(ids[11])
		}, map[uint64]string{10: "/c", 12: ""}},
		{"put 12 at /a, freed", func(tx *Tx) (err error) {
			id, err := tx.Put(file(12, "/a"), sum, nil)
			if err == nil && id != ids[12] {
				t.Errorf("put 12 again: id %d; want its row, %d", id, ids[12])
			}
			return err
		}, map[uint64]string{10: "/c", 12: "/a"}},
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
		if got := byIno(t, ix); !maps.Equal(got, s.want) {
			t.Errorf("after %s: paths by inode = %v; want %v", s.name, got, s.want)
		}
	}
	// An inode that lost its path keeps its sums.
	for _, ino := range []uint64{10, 12} {
		if got, err := ix.Sums(ctx, ids[ino]); err != nil || !slices.Equal(got, sum) {
			t.Errorf("Sums of inode %d = %x, %v; want %x", ino, got, err, sum)
		}
	}
	if got, err := ix.Sums(ctx, ids[11]); err != nil || len(got) != 0 {
		t.Errorf("Sums of deleted inode 11 = %x, %v; want none", got, err)
	}
}
