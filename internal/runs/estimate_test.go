package runs

import (
	"cmp"
	"fmt"
	"math/rand/v2"
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
	estimate(runs, files, bs, refs, nil)
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
			estimate(runs, files, bs, nil, nil)
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

// TestWeighFirst checks, on 200 sets of units made at random, that
// weighFirst's estimate plans what an estimate that asks for the
// references of every extent plans: the same units, in the same order,
// each freeing the same, the same units left out for their metadata,
// with fewer extents asked for. Each unit is a shared extent of 4 KiB to
// 96 KiB with two to four destinations, in leaves of three snapshotted
// subvolumes; a third of the extents have a reference outside the plan.
func TestWeighFirst(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	vols := snapshottedVolumes(3)
	var asks, fewer, left int
	for round := range 200 {
		var files []file
		ino := uint64(1000) // spaced at random: a leaf holds one to many destinations
		add := func(v *volume, size, disk int64) int {
			ino += 1 + uint64(rng.IntN(64))
			files = append(files, file{path: fmt.Sprint("f", len(files)), vol: v, Ino: ino, Size: size,
				extents: []fiemap.Extent{{Logical: 0, Length: size, Physical: disk, DiskStart: disk, DiskLen: size, Gen: 1, Flags: fiemap.FlagShared | fiemap.FlagLast}}})
			return len(files) - 1
		}
		src := add(vols[0], 96<<10, 1<<20)
		files[src].extents[0].Flags = fiemap.FlagLast
		var runs []run
		outside := make(map[int64]bool)
		for u := range 30 + rng.IntN(100) {
			disk := int64(u+2) << 20
			size := int64(1+rng.IntN(24)) * bs
			outside[disk] = rng.IntN(3) == 0
			for range 2 + rng.IntN(3) {
				fi := add(vols[rng.IntN(len(vols))], size, disk)
				runs = append(runs, run{src: mkloc(src, 0), dst: mkloc(fi, 0), n: size / bs, len: size})
			}
		}
		asked := make(map[int64]int)
		refs := func(fi int, disk int64) ([]fiemap.Ref, bool) {
			asked[disk]++
			var rs []fiemap.Ref
			for _, f := range files[1:] {
				if f.extents[0].DiskStart == disk {
					rs = append(rs, fiemap.Ref{Root: f.vol.Subvol, Ino: f.Ino})
				}
			}
			if outside[disk] {
				rs = append(rs, fiemap.Ref{Root: 999, Ino: 1})
			}
			return rs, true
		}
		// plans estimates the runs (in destination order), then plans
		// and weighs their units as lines does.
		plans := func(est func([]run)) ([]run, *units) {
			rs := slices.Clone(runs)
			est(rs)
			bySource(rs)
			return rs, planUnits(rs, nil, files, bs, true)
		}
		wantRuns, want := plans(func(rs []run) { estimate(rs, files, bs, refs, nil) })
		all := len(asked)
		clear(asked)
		gotRuns, got := plans(func(rs []run) {
			weighFirst(rs, len(rs), nil, files, bs, refs)
		})
		asks += all
		fewer += all - len(asked)
		left += want.costly
		if got.costly != want.costly || got.metadata != want.metadata || got.len() != want.len() {
			t.Fatalf("round %d: %d units, %d left out, metadata %d; want %d, %d, %d",
				round, got.len(), got.costly, got.metadata, want.len(), want.costly, want.metadata)
		}
		for n := range want.len() {
			wr, _ := want.get(n)
			gr, _ := got.get(n)
			var w, g []run
			for _, k := range wr {
				w = append(w, wantRuns[k])
			}
			for _, k := range gr {
				g = append(g, gotRuns[k])
			}
			if !slices.Equal(g, w) {
				t.Fatalf("round %d: unit %d holds %v; want %v", round, n, g, w)
			}
		}
	}
	if left == 0 || fewer == 0 {
		t.Errorf("%d units left out, %d of %d asks spared: the rounds test nothing", left, fewer, asks)
	}
	t.Logf("%d units left out; %d of %d asks spared", left, fewer, asks)
}
