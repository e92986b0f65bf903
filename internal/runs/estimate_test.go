package runs

import (
	"cmp"
	"slices"
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
		f := file{id: int64(i + 1), path: fs + "/f", class: int32(fs[0] - 'a'),
			vol: &volume{Volume: fsys.Volume{FS: fs, Subvol: 5}, btrfs: true}, Ino: uint64(257 + i%2), Size: M}
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
			t.Errorf("run %d (filesystem %s) frees %d; want %d", i, files[r.dst.file()].vol.FS, r.freed, M)
		}
	}
}

// On XFS a block that reflinked copies share is freed when every copy's
// range moves: it counts once, and only then. Three reflinked copies of
// one 4 MiB file (x/a, x/b, x/c) are destinations of a source elsewhere.
func TestEstimateReflinkedBlocks(t *testing.T) {
	const M = 1 << 20
	mk := func(path string, phys int64, size int64, flags uint32) file {
		return file{path: path, vol: &volume{Volume: fsys.Volume{FS: "x"}, fsBlock: bs}, Size: size,
			extents: []fiemap.Extent{{Logical: 0, Physical: phys, Length: (size + bs - 1) / bs * bs, Flags: flags | fiemap.FlagLast}}}
	}
	files := []file{
		mk("/x/src", 0, 4*M, 0),
		mk("/x/a", 100*M, 4*M, fiemap.FlagShared),
		mk("/x/b", 100*M, 4*M, fiemap.FlagShared),
		mk("/x/c", 100*M, 4*M, fiemap.FlagShared),
		mk("/x/alone", 200*M, M, fiemap.FlagShared), // shared with nothing at hand
		mk("/x/small", 300*M, 10000, 0),
		// Copies of one extent across a refBucketSize boundary on disk.
		mk("/x/g1", refBucketSize*2-2*M, 4*M, fiemap.FlagShared),
		mk("/x/g2", refBucketSize*2-2*M, 4*M, fiemap.FlagShared),
	}
	for i := range files {
		files[i].id, files[i].Ino = int64(i+1), uint64(i+100)
	}
	// run moves n bytes at off of file dst onto the source.
	run1 := func(dst int, off, n int64) run {
		return run{src: mkloc(0, off/bs), dst: mkloc(dst, off/bs), n: (n + bs - 1) / bs, len: n}
	}
	for _, c := range []struct {
		name  string
		runs  []run
		want  []int64 // each run's freed
		units int
	}{
		{"every copy moves", []run{run1(1, 0, 4*M), run1(2, 0, 4*M), run1(3, 0, 4*M)}, []int64{4 * M, 0, 0}, 1},
		{"one copy stays", []run{run1(1, 0, 4*M), run1(2, 0, 4*M)}, []int64{0, 0}, 1},
		{"the blocks every copy moves", []run{run1(1, 0, M), run1(1, 2*M, M), run1(2, 0, M), run1(3, 0, 2*M)}, []int64{M, 0, 0, 0}, 1},
		{"shared with nothing at hand", []run{run1(4, 0, M)}, []int64{0}, 1},
		{"not shared: its blocks, the last whole", []run{run1(5, 0, 10000)}, []int64{12288}, 1},
		{"across buckets: both copies move", []run{run1(6, 0, 4*M), run1(7, 0, 4*M)}, []int64{4 * M, 0}, 1},
		{"across buckets: one copy stays", []run{run1(6, 0, 4*M), run1(7, 0, 3*M)}, []int64{3 * M, 0}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			runs := slices.Clone(c.runs)
			estimate(runs, files, bs, nil)
			var got []int64
			for _, r := range runs {
				got = append(got, r.freed)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("freed %v; want %v", got, c.want)
			}
			slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.src, b.src) })
			if us := planUnits(runs, nil, files, bs, false); us.len() != c.units {
				t.Errorf("%d units; want %d", us.len(), c.units)
			}
		})
	}
}

// countOnce counts each disk byte once, however the ranges asked about
// overlap those counted before.
func TestCountOnce(t *testing.T) {
	b := &sharedBlocks{counted: make(map[string][]span)}
	for _, c := range []struct {
		free []span
		want int64
	}{
		{[]span{{0, 10}}, 10},
		{[]span{{5, 15}}, 5},
		{[]span{{20, 30}}, 10},
		{[]span{{0, 40}}, 15},
		{[]span{{0, 40}}, 0},
		{[]span{{38, 50}, {60, 70}}, 20},
		{[]span{{45, 65}}, 10},
	} {
		if got := b.countOnce("x", c.free); got != c.want {
			t.Errorf("countOnce(%v) = %d; want %d (counted %v)", c.free, got, c.want, b.counted["x"])
		}
	}
	if got, want := b.counted["x"], []span{{0, 70}}; !slices.Equal(got, want) {
		t.Errorf("counted %v; want %v", got, want)
	}
	if got, want := b.countOnce("y", []span{{0, 70}}), int64(70); got != want {
		t.Errorf("another filesystem: %d; want %d", got, want)
	}
}
