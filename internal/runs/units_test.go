package runs

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/plan"
)

// TestPlanUnits checks which runs and rewrites make one unit, and the
// order of the units, on hand-made files of one 8 KiB extent each.
func TestPlanUnits(t *testing.T) {
	const bs = 4096
	files := make([]file, 6)
	for i := range files {
		files[i] = file{path: fmt.Sprint("f", i), vol: &volume{Volume: fsys.Volume{FS: "f5", Subvol: 5}, btrfs: true}, Size: 2 * bs,
			extents: []fiemap.Extent{{Logical: 0, Length: 2 * bs, Physical: int64(i+1) << 20, DiskStart: int64(i+1) << 20, DiskLen: 2 * bs}}}
	}
	rewrite := func(fi int) rewriteAt {
		return rewriteAt{&plan.Rewrite{File: plan.Range{Path: files[fi].path}, Len: 2 * bs}, fi}
	}
	rewriteFreeing := func(fi int, freed int64) rewriteAt {
		w := rewrite(fi)
		w.w.Freed = freed
		return w
	}
	r := func(src, sb, dst, db int, freed int64) run {
		return run{src: mkloc(src, int64(sb)), dst: mkloc(dst, int64(db)), n: 1, len: bs, freed: freed}
	}
	for _, tt := range []struct {
		name string
		runs []run // sorted by source
		ws   []rewriteAt
		want string // units in order: rewrites (w) and runs (r) by index
	}{
		{
			// f1's extent is covered by two runs from different sources:
			// one unit, freeing 8 KiB for 8 KiB compared. f3's run frees
			// 8 KiB for 4 KiB compared: it goes first.
			name: "best first",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 3, 0, 2*bs), r(2, 0, 1, 1, 2*bs)},
			want: "[[r1] [r0 r2]]",
		},
		{
			// A run whose source lies in a rewritten extent waits for
			// the rewrite, in a unit after it. The rewrite goes by what
			// it and the unit waiting for it alone free together (8 KiB),
			// more than f3's unit (4 KiB) for a like cost.
			name: "waiting for a rewrite",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 1, 1, 2*bs), r(2, 0, 3, 0, 0), r(2, 1, 3, 1, bs)},
			ws:   []rewriteAt{rewrite(0)},
			want: "[[w0] [r0 r1] [r2 r3]]",
		},
		{
			// The same, but f3's unit frees more: it goes first.
			name: "better than waiting",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 1, 1, bs), r(2, 0, 3, 0, 0), r(2, 1, 3, 1, 2*bs)},
			ws:   []rewriteAt{rewrite(0)},
			want: "[[r2 r3] [w0] [r0 r1]]",
		},
		{
			// f3's unit frees most, and waits for both rewrites. Once
			// the first (which frees something itself) is done, the
			// other goes by what it lets f3's unit free, before f4's
			// unit, which frees next to nothing.
			name: "the last rewrite waited for",
			runs: []run{r(0, 0, 3, 0, 2*bs), r(1, 0, 3, 1, 0), r(2, 0, 4, 0, 1)},
			ws:   []rewriteAt{rewriteFreeing(0, 2*bs), rewrite(1)},
			want: "[[w0] [w1] [r0 r1] [r2]]",
		},
		{
			// f3's unit waits for f1's rewrite, which waits for f0's
			// (its run's source lies in f0's extent): f0's rewrite goes
			// by what the three free, before f4's unit.
			name: "a chain of rewrites",
			runs: []run{r(0, 0, 1, 0, 0), r(1, 1, 3, 0, 2*bs), r(2, 0, 4, 0, 1)},
			ws:   []rewriteAt{rewrite(0), rewrite(1)},
			want: "[[w0] [w1 r0] [r1] [r2]]",
		},
		{
			// Both units free 8 KiB for 8 KiB compared; f1's opens three
			// files, f5's two: f5's goes first.
			name: "files opened",
			runs: []run{r(0, 0, 1, 0, 2*bs), r(2, 0, 5, 0, 2*bs), r(2, 1, 5, 1, 0), r(3, 0, 1, 1, 0)},
			want: "[[r1 r2] [r0 r3]]",
		},
		{
			// f0's rewrite needs a run with its source in f1's rewritten
			// extent, and f1's a run with its source in f0's: each
			// would wait for the other, so they are one unit.
			name: "cycle",
			runs: []run{r(0, 0, 1, 1, 0), r(1, 0, 0, 1, 0)},
			ws:   []rewriteAt{rewrite(0), rewrite(1)},
			want: "[[w0 w1 r0 r1]]",
		},
		{
			// The best rewrite (w0, of f1) goes with a run whose source
			// lies in the extent w1 rewrites (f0's): it comes after w1.
			name: "rewrites in order",
			runs: []run{r(0, 0, 1, 1, 0)},
			ws:   []rewriteAt{rewrite(1), rewrite(0)},
			want: "[[w1] [w0 r0]]",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			us := planUnits(tt.runs, tt.ws, files, bs, false)
			for n := range us.len() {
				var s []string
				runs, rewrites := us.get(n)
				for _, k := range rewrites {
					s = append(s, fmt.Sprint("w", k))
				}
				for _, k := range runs {
					s = append(s, fmt.Sprint("r", k))
				}
				got = append(got, fmt.Sprint(s))
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("planUnits = %v; want %s", got, tt.want)
			}
		})
	}
}

// TestMetadataCost checks which units planUnits leaves out as costing
// btrfs's metadata more than they free: a leaf for each run of leafFiles
// inode numbers of a subvolume their destinations lie in, shared among
// the units with destinations there, a leaf costing what the volume's
// filesystem stores of it, but nothing for the leaves a unit kept copies
// anyway; and never a unit whose destinations are not on btrfs, or lie
// in a subvolume no snapshot shares leaves with, or in leaves no snapshot
// shares.
func TestMetadataCost(t *testing.T) {
	const bs = 4096
	const leaf = 32 << 10
	vol := func(subvol uint64, btrfs, snapshotted bool) *volume {
		return &volume{Volume: fsys.Volume{FS: "f", Subvol: subvol}, btrfs: btrfs, snapshotted: snapshotted, leaf: leaf}
	}
	live, xfs, plain := vol(256, true, true), vol(0, false, false), vol(257, true, false)
	// A snapshotted subvolume of a btrfs whose metadata is single: its
	// leaves cost half.
	single := &volume{Volume: fsys.Volume{FS: "g", Subvol: 256}, btrfs: true, snapshotted: true, leaf: leaf / 2}
	snaps := make([]*volume, 40)
	for i := range snaps {
		snaps[i] = vol(uint64(300+i), true, true)
	}
	var files []file
	// Each file has an extent of its own, but the file's copies in the
	// snapshots, which refer to the extent in live (disk).
	add := func(v *volume, ino uint64, disk ...int64) int {
		at := append(disk, int64(len(files)+1)<<20)[0]
		files = append(files, file{path: fmt.Sprint("f", len(files)), vol: v, Ino: ino, Size: 2 * bs,
			extents: []fiemap.Extent{{Logical: 0, Length: 2 * bs, Physical: at, DiskStart: at, DiskLen: 2 * bs}}})
		return len(files) - 1
	}
	src := add(live, 1000)
	r := func(dst int, freed int64) run {
		return run{src: mkloc(src, 0), dst: mkloc(dst, 0), n: 2, len: 2 * bs, freed: freed}
	}
	// A file with its copies in live and in 40 snapshots, alone in its
	// leaf everywhere: 41 leaves for 8 KiB.
	var many []run
	for _, v := range append([]*volume{live}, snaps...) {
		many = append(many, r(add(v, 5000, 99<<20), 0))
	}
	many[0].freed = 2 * bs
	// 32 small files of live in one leaf, each freeing 8 KiB: a leaf
	// shared 32 ways, 1 KiB each.
	var leafmates []run
	for ino := range uint64(leafFiles) {
		leafmates = append(leafmates, r(add(live, 6400+ino), 2*bs))
	}
	// A large file and a small one next to it, with their copies in live
	// and the 40 snapshots: the large one's unit pays for the leaves,
	// which the small one's then rides along.
	var pair []run
	for _, v := range append([]*volume{live}, snaps...) {
		pair = append(pair, r(add(v, 7000, 98<<20), 0), r(add(v, 7001, 97<<20), 0), r(add(v, 7002, 96<<20), 0))
	}
	// The third, next to them, frees nothing (a snapshot not in the plan
	// keeps its extent, say): left out all the same.
	pair[0].freed, pair[1].freed = 4<<20, 2*bs
	// Ten files in one leaf of live, one freeing 20 KiB, the others
	// nothing: left out, the others first, and then it alone pays the
	// leaf, more than it frees.
	var crowd []run
	for ino := range uint64(10) {
		crowd = append(crowd, r(add(live, 8000+ino), 0))
	}
	crowd[0].freed = 20 << 10
	// One freeing nothing on btrfs; one freeing nothing on XFS; one
	// freeing 4 KiB in a subvolume no snapshot shares leaves with, whose
	// leaves are rewritten in place.
	none := r(add(live, 9000), 0)
	other := r(add(xfs, 9000), 0)
	alone := r(add(plain, 9000), bs)
	// 20 KiB freed alone in a leaf: less than a leaf stored twice, more
	// than one stored once.
	lone := r(add(single, 9000), 20<<10)
	// 8 KiB freed alone in a leaf of live written since its last
	// snapshot: a leaf no snapshot shares, rewritten in place.
	ownFile := add(live, 9500)
	files[ownFile].ownLeaves = true
	own := r(ownFile, 2*bs)
	// Nothing freed in leaves that cost nothing to copy, on btrfs: left
	// out all the same, as the one freeing nothing in live is.
	ownNoneFile := add(live, 9600)
	files[ownNoneFile].ownLeaves = true
	ownNone, plainNone := r(ownNoneFile, 0), r(add(plain, 9600), 0)
	runs := append(append(append(append(append([]run{}, many...), leafmates...), pair...), crowd...), none, other, alone, lone, own, ownNone, plainNone)
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.dst, b.dst) })
	us := planUnits(runs, nil, files, bs, true)
	kept := make(map[int]bool)
	for n := range us.len() {
		rs, _ := us.get(n)
		for _, k := range rs {
			kept[runs[k].dst.file()] = true
		}
	}
	for _, rr := range runs {
		fi := rr.dst.file()
		want := files[fi].Ino >= 6400 && files[fi].Ino < 6400+leafFiles || files[fi].Ino == 7000 || files[fi].Ino == 7001 || files[fi].vol == xfs ||
			(files[fi].vol == plain || files[fi].vol == single || files[fi].ownLeaves) && files[fi].Ino != 9600
		if kept[fi] != want {
			t.Errorf("file %d (subvolume %d, inode %d): planned %v; want %v", fi, files[fi].vol.Subvol, files[fi].Ino, kept[fi], want)
		}
	}
	if us.costly != 15 {
		t.Errorf("%d units left out; want 15 (the file in 41 subvolumes, the crowd of ten, the four on btrfs freeing nothing)", us.costly)
	}
	// With no metadata cost, every unit.
	if us := planUnits(runs, nil, files, bs, false); us.len() != 2+leafFiles+3+10+6 || us.costly != 0 {
		t.Errorf("without a cost: %d units, %d left out; want %d and 0", us.len(), us.costly, 2+leafFiles+3+10+6)
	}
}

// TestMetadataCostChains checks that a rewrite and the unit sharing its
// copy (which waits for it) are weighed as one: left out together when
// what they free together does not pay the leaves they touch, kept
// together when it does, though the second alone frees nothing.
func TestMetadataCostChains(t *testing.T) {
	const bs = 4096
	live := &volume{Volume: fsys.Volume{FS: "f", Subvol: 256}, btrfs: true, snapshotted: true, leaf: 32 << 10}
	snap := &volume{Volume: fsys.Volume{FS: "f", Subvol: 300}, btrfs: true, snapshotted: true, leaf: 32 << 10}
	files := []file{
		{path: "live/a", vol: live, Ino: 1000}, // rewritten
		{path: "snap/b", vol: snap, Ino: 2000}, // shares a's copy
	}
	for i := range files {
		at := int64(i+1) << 20
		files[i].Size = 2 * bs
		files[i].extents = []fiemap.Extent{{Logical: 0, Length: 2 * bs, Physical: at, DiskStart: at, DiskLen: 2 * bs}}
	}
	for _, tt := range []struct {
		name        string
		freed       int64 // by the rewrite
		units, left int
	}{
		{"pays", 1 << 20, 2, 0},
		{"does not pay", 8 << 10, 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ws := []rewriteAt{{&plan.Rewrite{File: plan.Range{Path: files[0].path}, Len: 2 * bs, Freed: tt.freed}, 0}}
			runs := []run{{src: mkloc(0, 0), dst: mkloc(1, 0), n: 1, len: bs}}
			us := planUnits(runs, ws, files, bs, true)
			if us.len() != tt.units || us.costly != tt.left {
				t.Errorf("%d units planned, %d left out; want %d and %d", us.len(), us.costly, tt.units, tt.left)
			}
		})
	}
}

// snapshottedVolumes returns n btrfs subvolumes of one filesystem whose
// leaves snapshots share, a leaf costing 32 KiB.
func snapshottedVolumes(n int) []*volume {
	var vols []*volume
	for i := range n {
		vols = append(vols, &volume{Volume: fsys.Volume{FS: "f", Subvol: uint64(256 + i)}, btrfs: true, snapshotted: true, leaf: 32 << 10})
	}
	return vols
}

// TestMetadataCostLargest checks, on 300 sets of units made at random
// (two to four destinations each, in a few leaves of three snapshotted
// subvolumes), that planUnits keeps the units that leaving out, round
// after round, those that do not pay their share of the leaves they
// touch keeps: the largest set of units that each pay their share, then
// those left out whose every leaf is copied anyway and that free
// something.
func TestMetadataCostLargest(t *testing.T) {
	const bs = 4096
	rng := rand.New(rand.NewPCG(7, 7))
	vols := snapshottedVolumes(3)
	var leftN, keptN, riding int
	for round := range 300 {
		var files []file
		var runs []run
		add := func(v *volume, ino uint64) int {
			at := int64(len(files)+1) << 20
			files = append(files, file{path: fmt.Sprint("f", len(files)), vol: v, Ino: ino, Size: 2 * bs,
				extents: []fiemap.Extent{{Logical: 0, Length: 2 * bs, Physical: at, DiskStart: at, DiskLen: 2 * bs}}})
			return len(files) - 1
		}
		src := add(vols[0], 100000)
		n := 5 + rng.IntN(40)
		for range n {
			// The destinations of one unit share one disk extent.
			disk := int64(len(files)+1) << 20
			freed := int64(rng.IntN(48)) << 10
			for k := range 2 + rng.IntN(3) {
				fi := add(vols[rng.IntN(len(vols))], uint64(rng.IntN(4*leafFiles)))
				files[fi].extents[0].DiskStart, files[fi].extents[0].Physical = disk, disk
				r := run{src: mkloc(src, 0), dst: mkloc(fi, 0), n: 2, len: 2 * bs}
				if k == 0 {
					r.freed = freed
				}
				runs = append(runs, r)
			}
		}
		slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.dst, b.dst) })
		us := planUnits(runs, nil, files, bs, true)
		// The units left out are those not placed (none waits for
		// another here).
		nu := len(us.at) - 1
		gotLeft := make([]bool, nu)
		for u := range gotLeft {
			gotLeft[u] = !slices.Contains(us.order, int32(u))
		}
		// The rounds, to the end.
		type leafKey struct {
			v    *volume
			leaf uint64
		}
		touches := make([]map[leafKey]bool, nu)
		freed := make([]int64, nu)
		for u := range nu {
			touches[u] = make(map[leafKey]bool)
			for _, k := range us.members[us.at[u]:us.mid[u]] {
				f := &files[runs[k].dst.file()]
				touches[u][leafKey{f.vol, f.Ino / leafFiles}] = true
				freed[u] += runs[k].freed
			}
		}
		left := make([]bool, nu)
		for changed := true; changed; {
			kept := make(map[leafKey]int64)
			for u := range nu {
				for l := range touches[u] {
					if !left[u] {
						kept[l]++
					}
				}
			}
			changed = false
			cost := make([]int64, nu)
			for u := range nu {
				if left[u] {
					continue
				}
				for l := range touches[u] {
					cost[u] += (32 << 10) / kept[l]
				}
			}
			for u := range nu {
				if !left[u] && freed[u] < cost[u] {
					left[u], changed = true, true
				}
			}
		}
		copied := make(map[leafKey]bool)
		for u := range nu {
			for l := range touches[u] {
				if !left[u] {
					copied[l] = true
				}
			}
		}
		want := slices.Clone(left)
		for u := range nu {
			all := true
			for l := range touches[u] {
				all = all && copied[l]
			}
			if left[u] && all && freed[u] > 0 {
				want[u] = false
				riding++
			}
			if want[u] {
				leftN++
			} else {
				keptN++
			}
		}
		if !slices.Equal(gotLeft, want) {
			t.Fatalf("round %d: left out %v; want %v", round, gotLeft, want)
		}
	}
	// The sets are of every kind.
	if leftN < 1000 || keptN < 1000 || riding < 10 {
		t.Errorf("%d units left out, %d kept, %d of them kept for leaves copied anyway: sets too alike", leftN, keptN, riding)
	}
}
