package runs

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
)

func TestLeftover(t *testing.T) {
	const M = 1 << 20
	for _, tt := range []struct {
		name string
		n    int64
		used []span
		want bool
	}{
		{"all referred to", 8 * M, []span{{0, 8 * M}}, false},
		{"bookends", 8 * M, []span{{7 * M, 8 * M}, {0, M}}, true},
		{"overlapping references", 8 * M, []span{{0, 4 * M}, {M, 7 * M}, {2 * M, 3 * M}}, false},
		{"a quarter unreferenced", 8 * M, []span{{0, 6 * M}}, true},
		{"less than a quarter", 8 * M, []span{{0, 6*M + 4096}}, false},
		{"less than the least gain", 128 << 10, []span{{0, 64<<10 + 4096}}, false},
		{"a reference past the end", 8 * M, []span{{0, M}, {4 * M, 12 * M}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := leftover(tt.n, tt.used, DefaultRewriteMin); got != tt.want {
				t.Errorf("leftover(%d, %v) = %v; want %v", tt.n, tt.used, got, tt.want)
			}
		})
	}
}

// leftoverFile is a file of markedLeftovers: on filesystem fs, of size
// bytes, with the recorded extents ext.
type leftoverFile struct {
	fs   string
	size int64
	ext  []fiemap.Extent
}

// markedLeftovers records fs in a new index, each a btrfs file, and
// returns which of them markLeftovers marks involved.
func markedLeftovers(t *testing.T, fs []leftoverFile) []bool {
	t.Helper()
	ctx := context.Background()
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var files []file
	for i, f := range fs {
		id := fsys.Identity{Vol: fsys.Volume{FS: f.fs, Subvol: 5}, Ino: uint64(257 + i), Size: f.size}
		path := fmt.Sprintf("/%s/file%d", f.fs, i)
		n, err := tx.Put(index.File{Path: path, NoCOW: index.NoCOWUnset, Identity: id}, nil, f.ext)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file{id: n, path: path, vol: &volume{Volume: id.Vol, btrfs: true}, Ino: id.Ino, Size: id.Size})
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	involved := make([]bool, len(files))
	if err := markLeftovers(ctx, ix, files, newFileIndex(files), involved, DefaultRewriteMin); err != nil {
		t.Fatal(err)
	}
	return involved
}

// markLeftovers goes by the references to each disk extent within one
// filesystem: on another, an extent with the same key is another extent,
// whose references do not make this one's data referred to.
func TestMarkLeftoversByFilesystem(t *testing.T) {
	const M = 1 << 20
	// Disk extent (100M, 8M, gen 9) on f1: a's first MiB, the rest
	// unreferenced. On f2, the extent of that key: b's last 7 MiB.
	involved := markedLeftovers(t, []leftoverFile{
		{"f1", M, []fiemap.Extent{{Logical: 0, Physical: 100 * M, Length: M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Offset: 0}}},
		{"f2", 7 * M, []fiemap.Extent{{Logical: 0, Physical: 101 * M, Length: 7 * M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Offset: M}}},
	})
	// f1's extent is 7/8 unreferenced; f2's 1/8, less than a quarter.
	if want := []bool{true, false}; !slices.Equal(involved, want) {
		t.Errorf("involved = %v; want %v", involved, want)
	}
}

// A piece of an extent past its file's end holds no data of the file: a
// rewrite writes up to the end and frees the rest, so the rest counts as
// unreferenced, as rewriteOf counts it. Without that, a file whose last
// extent the tail's bytes made pay was left out of the files mapped
// again on a night that regrouped it, where -full planned its rewrite.
func TestMarkLeftoversPastEnd(t *testing.T) {
	const K = 1 << 10
	// Two extents of 256 KiB, each referred to by one file but for 4 KiB
	// at 64 KiB (another extent's there): the first file ends at 160 KiB
	// (96 KiB past it, with the 4 KiB more than a quarter), the second at
	// 250 KiB (6 KiB past it: 10 KiB, less than 64 KiB).
	var fs []leftoverFile
	for i, size := range []int64{160 * K, 250 * K} {
		disk := int64(i+1) << 30
		fs = append(fs, leftoverFile{"f1", size, []fiemap.Extent{
			{Logical: 0, Physical: disk, Length: 64 * K, DiskStart: disk, DiskLen: 256 * K, Gen: 9},
			{Logical: 64 * K, Physical: 1 << 40, Length: 4 * K, DiskStart: 1 << 40, DiskLen: 4 * K, Gen: 9},
			{Logical: 68 * K, Physical: disk + 68*K, Length: 188 * K, DiskStart: disk, DiskLen: 256 * K, Gen: 9, Offset: 68 * K},
		}})
	}
	if involved, want := markedLeftovers(t, fs), []bool{true, false}; !slices.Equal(involved, want) {
		t.Errorf("involved = %v; want %v", involved, want)
	}
}
