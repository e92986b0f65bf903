package runs

import (
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
// out: units joined by the tree leaves they touch, no unit planned
// touching any of their leaves. A cluster is kept when every file of it
// is untouched since (see finder.untouched: unchanged, not named, no
// volume of its filesystem gone) and, as the run finds out,
//
//   - no group made again holds a block of one of its files (regroup);
//   - none of its files refers to a leftover the run looks at (Find);
//   - no unit of the run touches one of its leaves (lines).
//
// Otherwise the run starts again with that cluster's files regrouped
// (and the files whose entries are theirs), as they were before: so the
// plan is the one a full run prints. It is so because the units a full
// run would make of a kept cluster's files are its units of the last
// run, with the copies of their files in snapshots taken since (clones,
// which refer to the same extents): they free what they freed, at a cost
// no lower, for each of its leaves is still touched by no other unit.
// No unit of the cluster pays even when no other unit of it is left
// out, or it would have been kept last time; and leaveCostly's choice
// of the units to keep is the largest set of units that each pay their
// share, which a unit in no such set does not change. A file of a
// cluster kept is not regrouped, mapped or weighed, and its clones join
// its groups, as a settled file's do.
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
	near map[uint32]bool
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
	lk := &leftKept{cluster: make([]int32, len(f.files)), last: last, kept: make([]bool, len(last.Units)), near: make(map[uint32]bool)}
	for c := range lk.kept {
		lk.kept[c] = !drop[uint32(c)]
	}
	for _, lf := range last.Files {
		if i, ok := f.byID.of(int64(lf.File)); !ok || !untouched[i] {
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

// err returns errLeftNear if a cluster was found near what changed.
func (lk *leftKept) err() error {
	if lk == nil || len(lk.near) == 0 {
		return nil
	}
	return &errLeftNear{lk.near}
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

// weighLeft checks that no unit of us touches a leaf of a cluster kept
// (else it returns errLeftNear), and finds the clusters of the units us
// left out that the table this run writes keeps, with those kept.
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
		// The clusters kept, numbered anew.
		num := make([]int32, len(lk.kept))
		for c, ok := range lk.kept {
			num[c] = -1
			if ok {
				num[c] = int32(len(out.Units))
				out.Units = append(out.Units, lk.last.Units[c])
			}
		}
		for _, lf := range lk.last.Files {
			if n := num[lf.Cluster]; n >= 0 {
				out.Files = append(out.Files, sumtab.LeftFile{File: lf.File, Cluster: uint32(n), Touches: lf.Touches})
			}
		}
		for _, n := range out.Units {
			f.sum.Costly += int(n)
		}
	}
	// The units left out, joined by the leaves they touch; a cluster
	// with a leaf that a unit kept touches is not kept (its units pay
	// a share of a leaf that changes with the plan).
	nu := len(us.left)
	parent := make([]int32, nu)
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
	open := make([]bool, nu)
	byLeaf := make(map[leafKey]int32) // a unit touching the leaf
	for _, t := range us.touching {
		k := leafOf(&f.files[t.file])
		v, ok := byLeaf[k]
		if !ok {
			byLeaf[k] = t.unit
			continue
		}
		if a, b := find(v), find(t.unit); a != b {
			parent[max(a, b)] = min(a, b)
		}
	}
	for u := range nu {
		if !us.left[u] {
			open[find(int32(u))] = true
		}
	}
	// The files of each cluster kept: those of its units' runs and
	// rewrites, and whether each touches a leaf.
	touches := make(map[int32]bool)
	for _, t := range us.touching {
		touches[t.file] = true
	}
	num := make(map[int32]uint32)
	seen := make(map[int32]bool)
	for u := range nu {
		r := find(int32(u))
		if !us.left[u] || open[r] {
			continue
		}
		c, ok := num[r]
		if !ok {
			c = uint32(len(out.Units))
			num[r] = c
			out.Units = append(out.Units, 0)
		}
		out.Units[c]++
		add := func(fi int) {
			if !seen[int32(fi)] {
				seen[int32(fi)] = true
				out.Files = append(out.Files, sumtab.LeftFile{File: uint32(f.files[fi].id), Cluster: c, Touches: touches[int32(fi)]})
			}
		}
		for _, k := range us.members[us.at[u]:us.mid[u]] {
			add(runs[k].src.file())
			add(runs[k].dst.file())
		}
		for _, k := range us.members[us.mid[u]:us.at[u+1]] {
			add(ws[k].fi)
		}
	}
	slices.SortFunc(out.Files, func(a, b sumtab.LeftFile) int { return int(a.File) - int(b.File) })
	return out, nil
}

// nearExtents marks near what changed each cluster kept with a file that
// refers to a disk extent that a run of the plan moves a reference to, or
// that a rewrite copies: in a full run, the cluster's units would be
// joined to that one (they free that extent only together). It reads the
// recorded extents of the clusters' files, which are current (they are
// untouched: see trusted).
func (f *finder) nearExtents(runs []run, ws []rewriteAt) error {
	lk := f.left
	want := make([]bool, len(f.files))
	for i := range f.files {
		want[i] = lk.has(i)
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
