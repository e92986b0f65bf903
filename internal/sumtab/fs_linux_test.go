package sumtab

import (
	"path/filepath"
	"slices"
	"testing"

	"same/internal/testfs"
)

// TestTableOnFilesystems writes a table past the page cache on the
// filesystems an index lives on, btrfs (whose direct writes checksum
// the data as they go) and XFS, and reads it back whole and verified.
func TestTableOnFilesystems(t *testing.T) {
	setDirectAfter(t, directBuf)
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "300M")
			path := filepath.Join(mnt, "index.db-sums")
			w, err := Create(path, Header{Key: "k", Seq: 2, Nonce: 9})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]Entry, 4*directBuf/EntrySize+1) // 4 buffers, and a tail
			for i := range want {
				want[i] = Entry{Sum: uint64(i) * 7, File: uint32(i % 13), Block: uint32(i)}
			}
			if err := w.Add(want...); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(Sets{}, nil, nil); err != nil {
				t.Fatal(err)
			}
			if cached := cachedPages(t, path, directBuf, 4*directBuf); cached != 0 {
				t.Errorf("%d pages of the table's second to fourth buffers are in the page cache", cached)
			}
			testfs.Remount(t, mnt)
			tb, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer tb.Close()
			var got []Entry
			it := tb.Iter()
			for b := it.Batch(); b != nil; b = it.Batch() {
				got = append(got, b...)
			}
			if err := it.Err(); err != nil || !slices.Equal(got, want) {
				t.Fatalf("%d entries read back of %d: %v", len(got), len(want), err)
			}
		})
	}
}
