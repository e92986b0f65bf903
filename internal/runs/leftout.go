package runs

import (
	"errors"
	"fmt"
	"slices"

	"same/internal/sumtab"
)

// Units left out for their metadata cost (see leaveCostly) stay left out
// night after night on a host of snapshots: a small file's copies in a
// live subvolume and its snapshots, each a leaf to copy for a few KiB.
// Their files were never settled (they share blocks not stored once), so
// each re-run regrouped them, mapped them and weighed them again, and
// each new snapshot added a copy of each to regroup. Now a re-run keeps
// them as the last run left them while nothing near them changes.
//
// The last run's table (sumtab.Left) holds the clusters of units it left
// out: units joined by the tree leaves they touch and by the files they
// name. A cluster is kept
// when every file of it is untouched since (see finder.untouched:
// unchanged, not named, no volume of its filesystem gone) and, as the
// run finds out,
//
//   - none of its files is mapped to a source it was not mapped to at
//     the last run: a file changed or new since, or any, in a group
//     that lost its source (regroup; the other mappings a group made
//     again adds are those of the last run);
//   - none of its files refers to a leftover the run looks at (Find);
//   - no run or rewrite of the plan moves a reference to one of its
//     extents, and no unit touches one of its leaves (lines).
//
// Otherwise the run regroups that cluster's files (and the files whose
// entries are theirs) as they were before, grouping again or, past
// grouping, starting again: so the plan is the one a full run prints. It
// is so because the units a full run would make of a kept cluster's
// files are its units of the last run, with the copies of their files in
// snapshots taken since (clones, which refer to the same extents): they
// free what they freed, at a cost no lower, for no unit but theirs
// touches their leaves now (one planned last time may have). No set of
// them pays its share of those leaves: with the units kept last time it
// would have been a larger set of units that each pay, and leaveCostly
// keeps the largest. So none of them is kept now, and the others' choice
// is as it would be without them: that largest set does not change for
// units in none. A file of a cluster kept is not regrouped, mapped or
// weighed, and its clones join its groups, as a settled file's do.
//
// What a full run sees and this does not: a reference to one of the
// cluster's extents from outside the files in scope going away (a file
// of a snapshot not indexed, say), which could make a unit pay. Such a
// cluster is weighed again when something near it changes, or by
// findsame -full.

// leftKept is what a run keeps of the last table's clusters.
type leftKept struct {
	// cluster marks, by file index, the files of the clusters kept: the
	// cluster's number in the last table, plus 1 (0: none).
	cluster []int32
	last    sumtab.Left
	kept    []bool // by cluster of the last table
	// near holds the clusters found near what changed: the next
	// attempt regroups them.
	near  map[uint32]bool
	files int // files of the clusters kept
	// dropped holds the clusters not kept for being near what changed,
	// for the attempts after this one too.
	dropped map[uint32]bool
}

// errLeftNear ends an attempt that found clusters kept near what
// changed (leftKept.near).
type errLeftNear struct{ clusters map[uint32]bool }

func (e *errLeftNear) Error() string {
	return fmt.Sprintf("%d clusters of units left out near what changed", len(e.clusters))
}

// keepLeft marks the files of the last table's clusters that may be kept
// as they were: every file of the cluster in scope and untouched, and the
// cluster not among drop (found near what changed by an attempt before).
// It returns nil when none is.
func (f *finder) keepLeft(untouched []bool, drop map[uint32]bool) *leftKept {
	t := f.tab
	if t == nil || t.base == nil || untouched == nil {
		return nil
	}
	last := t.latest().Left
	if len(last.Units) == 0 {
		return nil
	}
	lk := &leftKept{cluster: make([]int32, len(f.files)), last: last, kept: make([]bool, len(last.Units)), near: make(map[uint32]bool), dropped: drop}
	for c := range lk.kept {
		lk.kept[c] = !drop[uint32(c)]
	}
	// A file changed or new since, in a leaf a cluster touches, is
	// likely to be planned there, and the cluster weighed with it: it is
	// not kept, rather than found near after the units are made.
	changed := make(map[leafKey]bool)
	t0 := t.latest()
	for i := range f.files {
		if fl := &f.files[i]; fl.changed > t0.Seq || !t0.Files.Has(fl.id) {
			changed[leafOf(fl)] = true
		}
	}
	for _, lf := range last.Files {
		i, ok := f.byID.of(int64(lf.File))
		if !ok || !untouched[i] || (lf.Touches && changed[leafOf(&f.files[i])]) {
			lk.kept[lf.Cluster] = false
		}
	}
	n := 0
	for _, lf := range last.Files {
		if lk.kept[lf.Cluster] {
			i, _ := f.byID.of(int64(lf.File))
			lk.cluster[i] = int32(lf.Cluster) + 1
			n++
		}
	}
	if n == 0 {
		return nil
	}
	lk.files = n
	f.sum.KeptLeft = n
	return lk
}

// has reports whether file fi is of a cluster kept.
func (lk *leftKept) has(fi int) bool { return lk != nil && lk.cluster[fi] > 0 }

// touch notes that file fi, if of a cluster kept, is near what changed.
func (lk *leftKept) touch(fi int) {
	if lk.has(fi) {
		lk.near[uint32(lk.cluster[fi]-1)] = true
	}
}

// nearFiles marks near what changed the clusters of the files marked in
// involved but not in was, and returns errLeftNear if a cluster is.
func (lk *leftKept) nearFiles(involved, was []bool) error {
	if lk == nil {
		return nil
	}
	for i, ok := range involved {
		if ok && !was[i] {
			lk.touch(i)
		}
	}
	return lk.err()
}

// err returns errLeftNear if a cluster was found near what changed.
func (lk *leftKept) err() error {
	if lk == nil || len(lk.near) == 0 {
		return nil
	}
	return &errLeftNear{lk.near}
}

// regroupKeeping is regroup, made again without the clusters it finds
// near what changed until it finds none (a cluster's files, regrouped,
// are mapped as they were at the last run, and bring no other near).
func (f *finder) regroupKeeping() error {
	for {
		err := f.regroup()
		var near *errLeftNear
		if !errors.As(err, &near) {
			return err
		}
		if f.maps != nil {
			f.maps.close()
		}
		f.maps, f.bounds, f.buf, f.mapped, f.held = nil, nil, nil, nil, nil
		if t := f.tab; t.w != nil {
			t.w.Abort()
			t.w, t.superseded = nil, nil
		}
		f.tab.cloned = 0
		f.sum.Partial = 0
		f.sum.Attempts++
		f.left.drop(near.clusters)
		if f.left.files == 0 {
			f.left = nil
		}
		f.sum.KeptLeft = f.left.count()
	}
}

// drop keeps none of the clusters given.
func (lk *leftKept) drop(clusters map[uint32]bool) {
	for c := range clusters {
		lk.kept[c] = false
		lk.dropped[c] = true
	}
	for i, c := range lk.cluster {
		if c > 0 && !lk.kept[c-1] {
			lk.cluster[i] = 0
			lk.files--
		}
	}
	lk.near = make(map[uint32]bool)
}

// count returns how many files of clusters are kept.
func (lk *leftKept) count() int {
	if lk == nil {
		return 0
	}
	return lk.files
}

// wasLeft marks, by file index, the files of the last table's clusters
// not kept: regroup regroups them (the table lists them unsettled) and
// the files whose entries are theirs.
func (f *finder) wasLeft() []bool {
	last := f.tab.latest().Left
	out := make([]bool, len(f.files))
	for _, lf := range last.Files {
		if i, ok := f.byID.of(int64(lf.File)); ok && !f.left.has(i) {
			out[i] = true
		}
	}
	return out
}

// leafKey names a tree leaf as leaveCostly counts them.
type leafKey struct {
	vol  *volume
	leaf uint64
}

func leafOf(fl *file) leafKey { return leafKey{fl.vol, fl.Ino / leafFiles} }

// weighLeft checks that no unit of us touches a leaf of a cluster kept,
// nor moves a reference to one of its extents (else it returns
// errLeftNear), and finds the clusters the table this run writes keeps:
// the units us left out and the clusters kept, joined where they share a
// tree leaf or a file (so that a file is of one cluster, which is kept
// or regrouped whole). A unit planned may touch a leaf of one: it paid a
// share of that leaf's cost, which the units left out did not pay all
// the same, and would pay less of without it.
func (f *finder) weighLeft(us *units, runs []run, ws []rewriteAt) (sumtab.Left, error) {
	var out sumtab.Left
	lk := f.left
	if lk != nil {
		leaves := make(map[leafKey]uint32)
		for _, lf := range lk.last.Files {
			if lk.kept[lf.Cluster] && lf.Touches {
				i, _ := f.byID.of(int64(lf.File))
				leaves[leafOf(&f.files[i])] = lf.Cluster
			}
		}
		for _, t := range us.touching {
			if c, ok := leaves[leafOf(&f.files[t.file])]; ok {
				lk.near[c] = true
			}
		}
		if err := f.nearExtents(runs, ws); err != nil {
			return out, err
		}
		if err := lk.err(); err != nil {
			return out, err
		}
	}
	// The nodes: the units left out (numbered as units), then the
	// clusters kept (len(us.left) + their number in the last table).
	nu := len(us.left)
	nodes := nu
	if lk != nil {
		nodes += len(lk.kept)
	}
	parent := make([]int32, nodes)
	for u := range parent {
		parent[u] = int32(u)
	}
	find := func(u int32) int32 {
		for parent[u] != u {
			parent[u] = parent[parent[u]]
			u = parent[u]
		}
		return u
	}
	join := func(a, b int32) {
		if a, b = find(a), find(b); a != b {
			parent[max(a, b)] = min(a, b)
		}
	}
	// Each node's files, with whether the node touches the file's leaf.
	type nodeFile struct {
		node         int32
		file         int32
		touches, dst bool
	}
	var nfs []nodeFile
	for _, t := range us.touching {
		if us.left[t.unit] {
			nfs = append(nfs, nodeFile{t.unit, t.file, true, true})
		}
	}
	for u := range nu {
		if !us.left[u] {
			continue
		}
		for _, k := range us.members[us.at[u]:us.mid[u]] {
			nfs = append(nfs, nodeFile{int32(u), int32(runs[k].src.file()), false, false}, nodeFile{int32(u), int32(runs[k].dst.file()), false, true})
		}
		for _, k := range us.members[us.mid[u]:us.at[u+1]] {
			nfs = append(nfs, nodeFile{int32(u), int32(ws[k].fi), false, true})
		}
	}
	if lk != nil {
		for _, lf := range lk.last.Files {
			if lk.kept[lf.Cluster] {
				i, _ := f.byID.of(int64(lf.File))
				nfs = append(nfs, nodeFile{int32(nu) + int32(lf.Cluster), int32(i), lf.Touches, lf.Dst})
			}
		}
	}
	// Joined by file, and by leaf.
	byFile := make(map[int32]int32)
	byLeaf := make(map[leafKey]int32)
	for _, x := range nfs {
		if v, ok := byFile[x.file]; ok {
			join(v, x.node)
		} else {
			byFile[x.file] = x.node
		}
		if x.touches {
			k := leafOf(&f.files[x.file])
			if v, ok := byLeaf[k]; ok {
				join(v, x.node)
			} else {
				byLeaf[k] = x.node
			}
		}
	}
	// The clusters: each root, numbered in order, with its units and
	// files.
	num := make(map[int32]uint32)
	cluster := func(node int32) (uint32, bool) {
		r := find(node)
		c, ok := num[r]
		if !ok {
			c = uint32(len(out.Units))
			num[r] = c
			out.Units = append(out.Units, 0)
		}
		return c, true
	}
	for u := range nu {
		if c, ok := cluster(int32(u)); ok && us.left[u] {
			out.Units[c]++
		}
	}
	if lk != nil {
		for c, ok := range lk.kept {
			if !ok {
				continue
			}
			f.sum.Costly += int(lk.last.Units[c])
			if k, ok := cluster(int32(nu + c)); ok {
				out.Units[k] += lk.last.Units[c]
			}
		}
	}
	files := make(map[int32]int) // index in out.Files
	for _, x := range nfs {
		c, ok := cluster(x.node)
		if !ok {
			continue
		}
		if k, ok := files[x.file]; ok {
			out.Files[k].Touches = out.Files[k].Touches || x.touches
			out.Files[k].Dst = out.Files[k].Dst || x.dst
			continue
		}
		files[x.file] = len(out.Files)
		out.Files = append(out.Files, sumtab.LeftFile{File: uint32(f.files[x.file].id), Cluster: c, Touches: x.touches, Dst: x.dst})
	}
	slices.SortFunc(out.Files, func(a, b sumtab.LeftFile) int { return int(a.File) - int(b.File) })
	return out, nil
}

// nearExtents marks near what changed each cluster kept with a
// destination (of its units' runs or rewrites) that refers to a disk
// extent that a run of the plan moves a reference to, or that a rewrite
// copies: in a full run, the cluster's units would be joined to that one
// (they free that extent only together). It reads the recorded extents
// of those files, which are current (they are untouched: see trusted).
func (f *finder) nearExtents(runs []run, ws []rewriteAt) error {
	lk := f.left
	if len(runs)+len(ws) == 0 {
		return nil
	}
	want := make([]bool, len(f.files))
	for _, lf := range lk.last.Files {
		if lk.kept[lf.Cluster] && lf.Dst {
			i, _ := f.byID.of(int64(lf.File))
			want[i] = true
		}
	}
	if err := loadExtents(f.ctx, f.ix, f.files, f.byID, want, f.o); err != nil {
		return err
	}
	type diskKey struct {
		fs    string
		start int64
	}
	held := make(map[diskKey]uint32)
	for i := range f.files {
		if want[i] {
			for _, e := range f.files[i].extents {
				if e.DiskStart != 0 {
					held[diskKey{f.files[i].vol.FS, e.DiskStart}] = uint32(lk.cluster[i] - 1)
				}
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	look := func(fi int, lo, hi int64) {
		fl := &f.files[fi]
		for _, e := range fl.extents[firstEndingAfter(fl.extents, lo):] {
			if e.Logical >= hi {
				break
			}
			if c, ok := held[diskKey{fl.vol.FS, e.DiskStart}]; ok && e.DiskStart != 0 {
				lk.near[c] = true
			}
		}
	}
	for _, r := range runs {
		look(r.dst.file(), r.dst.block()*f.bs, r.dst.block()*f.bs+r.len)
	}
	for _, w := range ws {
		look(w.fi, w.w.File.Off, w.w.File.Off+w.w.Len)
	}
	return nil
}
