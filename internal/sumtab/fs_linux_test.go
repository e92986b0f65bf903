package sumtab

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"same/internal/testfs"
)

// TestTableOnFilesystems writes a table past the page cache on the
// filesystems an index lives on, btrfs (whose direct writes checksum
// the data as they go) and XFS, and reads it back past the page cache,
// whole and verified.
// A direct write may leave a page or a few in the cache (btrfs falls back
// to a buffered write where it cannot write directly): once in many runs
// of the test suite, 1 of the 3,072 pages checked was. A write through
// the page cache would leave them all.
func TestTableOnFilesystems(t *testing.T) {
	setDirectAfter(t, directBuf)
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "300M")
			path := filepath.Join(mnt, "index.db-sums")
			want := writeEntries(t, path, 4*directBuf/EntrySize+1) // 4 buffers, and a tail
			pages := 3 * directBuf / os.Getpagesize()
			if cached := cachedPages(t, path, directBuf, 4*directBuf); cached > pages/100 {
				t.Errorf("%d of the %d pages of the table's second to fourth buffers are in the page cache; want at most %d", cached, pages, pages/100)
			}
			testfs.Remount(t, mnt)
			got, before, after := readPastCache(t, path)
			if !slices.Equal(got, want) {
				t.Fatalf("%d entries read back of %d", len(got), len(want))
			}
			if after-before > pages/100 {
				t.Errorf("reading the table brought %d of its pages into the page cache; want at most %d", after-before, pages/100)
			}
		})
	}
}
