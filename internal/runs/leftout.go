package runs

import (
	"cmp"
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
// The last run's table (sumtab.Left) holds the units it left out that
// would not pay even if every other unit touching their tree leaves were
// kept, sharing those leaves' cost: each unit's files, its destinations,
// and for each leaf it touches how many units touched it (Share). Such a
// unit is kept as it was when every file of it is untouched since (see
// finder.untouched: unchanged, not named, no volume of its filesystem
// gone), none of its leaves lies where a file changed or is new (that
// file would likely make a unit there), and, as the run finds out,
//
//   - none of its files is mapped to a source it was not mapped to at
//     the last run: a file changed or new since, or any, in a group
//     that lost its source (regroup; the other mappings a group made
//     again adds are those of the last run);
//   - none of its files refers to a leftover the run looks at (Find);
//   - no run or rewrite of the plan moves a reference to an extent of
//     one of its destinations, no unit planned touches one of its
//     leaves, and no more units touch one than did (lines).
//
// Otherwise the run regroups that unit's destinations and the files no
// unit kept names (and the files whose entries are theirs) as they were
// before, grouping again or, past grouping, starting again: so the plan
// is the one a full run prints. It is so because the unit a full run
// would make of a kept unit's files is the unit of the last run, with the
// copies of its destinations in snapshots taken since (clones, which
// refer to the same extents): it frees what it freed, at a cost no lower
// than its share of its leaves with every unit touching them kept, which
// it did not pay; and with a leaf no unit planned touches, it is not
// kept for riding on leaves copied anyway. So it is in no set of units
// that each pay their share, and leaveCostly, which keeps the largest
// such set, keeps the others as it would without it. A file of a unit
// kept is not regrouped, mapped or weighed, and its clones join its
// groups, as a settled file's do.
//
// What a full run sees and this does not: a reference to one of the
// unit's extents from outside the files in scope going away (a file of
// a snapshot not indexed, say), which could make it pay. Such a unit is
// weighed again when something near it changes, or by findsame -full.

// leftKept is what a run keeps of the last table's units left out (each
// a cluster of sumtab.Left).
type leftKept struct {
	last sumtab.Left
	kept []bool // by cluster of the last table
	// of lists, by file index, the clusters that name the file.
	of map[int32][]uint32
	// held counts, by file index, the clusters kept that name the file;
	// dstLost marks the destinations of clusters not kept, which are
	// regrouped.
	held    []int32
	dstLost []bool
	// near holds the clusters found near what changed: the next
	// attempt regroups them.
	near  map[uint32]bool
	files int // files kept (see has)
	// dropped holds the clusters not kept for being near what changed,
	// for the attempts after this one too.
	dropped map[uint32]bool
	// keptOn counts, by leaf, the clusters kept that touch it.
	keptOn map[leafKey]int32
}

// errLeftNear ends an attempt that found clusters kept near what
// changed (leftKept.near).
type errLeftNear struct{ clusters map[uint32]bool }

func (e *errLeftNear) Error() string {
	return fmt.Sprintf("%d units left out near what changed", len(e.clusters))
}

// keepLeft marks the files of the last table's units left out that may be
// kept as they were: every file of the unit in scope and untouched, none
// of its leaves where a file changed or is new, and the unit not among
// drop (found near what changed by an attempt before). It returns nil
// when none is.
func (f *finder) keepLeft(untouched []bool, drop map[uint32]bool) *leftKept {
	t := f.tab
	if t == nil || t.base == nil || untouched == nil {
		return nil
	}
	latest := t.latest()
	last := latest.Left
	if len(last.Units) == 0 {
		return nil
	}
	lk := &leftKept{last: last, kept: make([]bool, len(last.Units)), of: make(map[int32][]uint32),
		held: make([]int32, len(f.files)), dstLost: make([]bool, len(f.files)),
		near: make(map[uint32]bool), dropped: drop}
	for c := range lk.kept {
		lk.kept[c] = !drop[uint32(c)]
	}
	changed := make(map[leafKey]bool)
	for i := range f.files {
		if fl := &f.files[i]; fl.changed > latest.Seq || !latest.Files.Has(fl.id) {
			changed[leafOf(fl)] = true
		}
	}
	for _, lf := range last.Files {
		i, ok := f.byID.of(int64(lf.File))
		if !ok || !untouched[i] || (lf.Touches && changed[leafOf(&f.files[i])]) {
			lk.kept[lf.Cluster] = false
			continue
		}
		lk.of[int32(i)] = append(lk.of[int32(i)], lf.Cluster)
	}
	lk.count(f)
	if lk.files == 0 {
		return nil
	}
	f.sum.KeptLeft = lk.files
	return lk
}

// count works out, from kept, which files are kept and the leaves the
// units kept touch.
func (lk *leftKept) count(f *finder) {
	clear(lk.held)
	clear(lk.dstLost)
	lk.keptOn = make(map[leafKey]int32)
	for _, lf := range lk.last.Files {
		i, ok := f.byID.of(int64(lf.File))
		if !ok {
			continue
		}
		switch {
		case lk.kept[lf.Cluster]:
			lk.held[i]++
			if lf.Touches {
				lk.keptOn[leafOf(&f.files[i])]++
			}
		case lf.Dst:
			lk.dstLost[i] = true
		}
	}
	lk.files = 0
	for i := range lk.held {
		if lk.has(i) {
			lk.files++
		}
	}
}

// has reports whether file fi is kept: named by a unit kept, and no
// destination of one not kept.
func (lk *leftKept) has(fi int) bool { return lk != nil && lk.held[fi] > 0 && !lk.dstLost[fi] }

// touch notes that file fi is near what changed: so is every unit kept
// that names it.
func (lk *leftKept) touch(fi int) {
	if lk == nil || lk.held[fi] == 0 {
		return
	}
	for _, c := range lk.of[int32(fi)] {
		if lk.kept[c] {
			lk.near[c] = true
		}
	}
}

// nearFiles marks near what changed the units kept that name a file
// marked in involved but not in was, and returns errLeftNear if a unit
// is.
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

// err returns errLeftNear if a unit was found near what changed.
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
		f.left.drop(f, near.clusters)
		f.sum.KeptLeft = f.left.files
		if f.left.files == 0 {
			f.left = nil
		}
	}
}

// drop keeps none of the units given.
func (lk *leftKept) drop(f *finder, clusters map[uint32]bool) {
	for c := range clusters {
		lk.kept[c] = false
		lk.dropped[c] = true
	}
	lk.count(f)
	lk.near = make(map[uint32]bool)
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

// weighLeft checks that no unit of us planned touches a leaf of a unit
// kept, nor more units than touched it last time, and that no run or
// rewrite moves a reference to an extent of one of its destinations
// (else it returns errLeftNear); and it returns the units the table this
// run writes keeps: those kept, and those us left out that would not pay
// even if every unit touching their leaves (here, or kept) were kept.
func (f *finder) weighLeft(us *units, runs []run, ws []rewriteAt) (sumtab.Left, error) {
	var out sumtab.Left
	lk := f.left
	// The units touching each leaf, and whether a unit planned does.
	type leafUse struct {
		units   int32
		planned bool
		last    int32 // the unit counted last, plus 1
	}
	use := make(map[leafKey]*leafUse)
	for _, t := range us.touching { // a unit's touches come together
		k := leafOf(&f.files[t.file])
		u := use[k]
		if u == nil {
			u = &leafUse{}
			use[k] = u
		}
		if u.last != t.unit+1 {
			u.units++
			u.last = t.unit + 1
		}
		u.planned = u.planned || !us.left[t.unit]
	}
	var keptOn map[leafKey]int32
	if lk != nil {
		keptOn = lk.keptOn
		for _, lf := range lk.last.Files {
			if !lk.kept[lf.Cluster] || !lf.Touches {
				continue
			}
			i, _ := f.byID.of(int64(lf.File))
			k := leafOf(&f.files[i])
			if u := use[k]; u != nil && (u.planned || u.units+keptOn[k] > int32(lf.Share)) {
				lk.near[lf.Cluster] = true
			}
		}
		if err := f.nearExtents(runs, ws); err != nil {
			return out, err
		}
		if err := lk.err(); err != nil {
			return out, err
		}
		// The units kept, numbered anew.
		num := make([]int32, len(lk.kept))
		for c, ok := range lk.kept {
			num[c] = -1
			if ok {
				num[c] = int32(len(out.Units))
				out.Units = append(out.Units, lk.last.Units[c])
				f.sum.Costly += int(lk.last.Units[c])
			}
		}
		for _, lf := range lk.last.Files {
			if n := num[lf.Cluster]; n >= 0 {
				lf.Cluster = uint32(n)
				out.Files = append(out.Files, lf)
			}
		}
	}
	// Each unit left out that would not pay its share of its leaves
	// with every unit touching them kept.
	shareOf := func(fi int32) (int64, uint32) {
		fl := &f.files[fi]
		k := leafOf(fl)
		n := int64(keptOn[k])
		if u := use[k]; u != nil {
			n += int64(u.units)
		}
		return cmp.Or(fl.vol.leaf, metadataLeaf) / max(n, 1), uint32(n)
	}
	byUnit := make(map[int32][]int32) // the files whose leaves each unit left out touches
	for _, t := range us.touching {
		if us.left[t.unit] {
			byUnit[t.unit] = append(byUnit[t.unit], t.file)
		}
	}
	for u := range us.left {
		if !us.left[u] {
			continue
		}
		touched := byUnit[int32(u)]
		var cost int64
		seen := make(map[leafKey]bool)
		for _, fi := range touched {
			if k := leafOf(&f.files[fi]); !seen[k] {
				seen[k] = true
				c, _ := shareOf(fi)
				cost += c
			}
		}
		if us.freed[u] >= cost {
			continue // left out for the units beside it
		}
		c := uint32(len(out.Units))
		out.Units = append(out.Units, 1)
		files := make(map[int32]int) // index in out.Files
		add := func(fi int32, dst bool) {
			if k, ok := files[fi]; ok {
				out.Files[k].Dst = out.Files[k].Dst || dst
				return
			}
			files[fi] = len(out.Files)
			out.Files = append(out.Files, sumtab.LeftFile{File: uint32(f.files[fi].id), Cluster: c, Dst: dst})
		}
		for _, k := range us.members[us.at[u]:us.mid[u]] {
			add(int32(runs[k].src.file()), false)
			add(int32(runs[k].dst.file()), true)
		}
		for _, k := range us.members[us.mid[u]:us.at[u+1]] {
			add(int32(ws[k].fi), true)
		}
		for _, fi := range touched {
			k := files[fi]
			_, n := shareOf(fi)
			out.Files[k].Touches, out.Files[k].Share = true, n
		}
	}
	slices.SortFunc(out.Files, func(a, b sumtab.LeftFile) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Cluster, b.Cluster))
	})
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
	held := make(map[diskKey][]int32) // the destinations that refer to each
	for i := range f.files {
		if want[i] {
			for _, e := range f.files[i].extents {
				if e.DiskStart != 0 {
					k := diskKey{f.files[i].vol.FS, e.DiskStart}
					held[k] = append(held[k], int32(i))
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
			if e.DiskStart != 0 {
				for _, d := range held[diskKey{fl.vol.FS, e.DiskStart}] {
					lk.touch(int(d))
				}
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
