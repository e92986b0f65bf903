package runs

import (
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// Two filesystems with a shared extent each at the same disk start and
// files of the same subvolume and inode: each extent is another, and
// each is freed when its own references are covered.
func TestEstimateByFilesystem(t *testing.T) {
	const M = 1 << 20
	var files []file
	for i, fs := range []string{"a", "a", "b", "b"} {
		f := file{id: int64(i + 1), path: fs + "/f", btrfs: true, class: int(fs[0] - 'a'),
			Identity: fsys.Identity{Vol: fsys.Volume{FS: fs, Subvol: 5}, Ino: uint64(257 + i%2), Size: M}}
		if i%2 == 1 { // the destination: one extent, shared (by a snapshot of it, say)
			f.extents = []fiemap.Extent{{Logical: 0, Physical: 100 * M, Length: M, DiskStart: 100 * M, DiskLen: M, Gen: 9, Flags: fiemap.FlagShared | fiemap.FlagLast}}
		}
		files = append(files, f)
	}
	runs := []run{
		{src: mkloc(0, 0), dst: mkloc(1, 0), n: M / bs, len: M},
		{src: mkloc(2, 0), dst: mkloc(3, 0), n: M / bs, len: M},
	}
	// Every reference to each extent is its destination's.
	refs := func(fi int, disk int64) ([]fiemap.Ref, bool) {
		return []fiemap.Ref{{Root: 5, Ino: files[fi].Ino}}, true
	}
	estimate(runs, files, bs, refs)
	for i, r := range runs {
		if r.freed != M {
			t.Errorf("run %d (filesystem %s) frees %d; want %d", i, files[r.dst.file()].Vol.FS, r.freed, M)
		}
	}
}
