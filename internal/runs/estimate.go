package runs

import (
	"cmp"
	"slices"

	"same/internal/fiemap"
)

// estimate sets each run's freed bytes. runs are in destination order. On
// btrfs a disk extent of the destination (see groups) is freed when the
// runs cover every piece of it and nothing else refers to it; it counts
// for the run that covers its first piece's start. An extent that other
// files or snapshots share (FIEMAP's shared flag) is freed when every
// reference to it is a destination whose pieces of it the runs cover
// whole: refs, if not nil, lists them (see fiemap.ExtentRefs), and such an
// extent counts once, for the first destination met. Where assume is set
// and says so of that destination, the extent counts without a look at
// its references: what it frees is then an upper bound (see weighFirst).
// Elsewhere space is freed block by block, a partial last block whole
// (see sharedBlocks for blocks that reflinked copies share). It returns
// how many shared extents it counted on assume's word.
func estimate(runs []run, files []file, bs int64, refs func(fi int, disk int64) ([]fiemap.Ref, bool), assume func(fi int) bool) (assumed int) {
	byDest := newDstRuns(runs, len(files))
	var blocks *sharedBlocks // built when a destination elsewhere than on btrfs has a shared extent
	// covered reports whether the runs of file fi cover every piece of
	// disk extent g, and which run covers its first piece.
	covered := func(fi int, g []fiemap.Extent) (int, bool) {
		f, rs := &files[fi], byDest.of(fi)
		first := -1
		for _, e := range g {
			if e.Logical >= f.Size {
				// Preallocated beyond EOF: no run can cover it, and it
				// keeps the disk extent alive.
				return 0, false
			}
			k, ok := covers(rs, bs, f.Size, e)
			if !ok {
				return 0, false
			}
			if first < 0 {
				first = k
			}
		}
		return first, first >= 0
	}
	// References to a disk extent (subvolume and inode) are known within
	// their filesystem.
	type refKey struct {
		fs  string
		ref fiemap.Ref
	}
	var byIno map[refKey]int          // destination files
	counted := make(map[diskKey]bool) // disk extents counted
	// everyRef reports whether every reference to the shared disk extent
	// disk, found through file fi, is a destination covering it whole.
	everyRef := func(fi int, disk int64) bool {
		if refs == nil || disk == 0 {
			return false
		}
		if assume != nil && assume(fi) {
			assumed++
			return true
		}
		rs, ok := refs(fi, disk)
		if !ok || len(rs) == 0 {
			return false
		}
		if byIno == nil {
			byIno = make(map[refKey]int)
			for di := range files {
				if len(byDest.of(di)) == 0 {
					continue
				}
				byIno[refKey{files[di].vol.FS, fiemap.Ref{Root: files[di].vol.Subvol, Ino: files[di].Ino}}] = di
			}
		}
		for _, r := range rs {
			di, ok := byIno[refKey{files[fi].vol.FS, r}]
			if !ok {
				return false // a file outside the plan, or only a source
			}
			var pieces []fiemap.Extent
			for _, e := range files[di].extents {
				if e.DiskStart == disk {
					pieces = append(pieces, e)
				}
			}
			if _, ok := covered(di, pieces); len(pieces) == 0 || !ok {
				return false
			}
		}
		return true
	}
	byDestination(runs, func(fi int, rs []run) {
		f := &files[fi]
		if !f.vol.btrfs {
			blocks = blockwise(fi, rs, files, byDest, bs, blocks)
			return
		}
		for _, g := range groups(f) {
			if inlineGroup(g) {
				continue
			}
			first, ok := covered(fi, g)
			if !ok {
				continue
			}
			if shared(g) {
				k := diskOf(f, g[0])
				if counted[k] || !everyRef(fi, k.start) {
					continue
				}
				counted[k] = true
			}
			rs[first].freed += length(g)
		}
	})
	return assumed
}

// weighFirstMin is how many shared extents an estimate must have taken as
// freed unasked for weighFirst to weigh the units first: below it, asking
// for them all costs less than planning the units once more.
const weighFirstMin = 64

// weighFirst sets the freed bytes of runs[:estimated] (in destination
// order; the rest are rewrites' runs) as estimate does with refs, asking
// for the references of fewer extents. Each ask is the kernel's walk of
// an extent's references (LOGICAL_INO), through every snapshot that
// shares the tree leaves above them: about 160 µs an extent, 0.28 s for
// the 1,764 extents of a snapshot host's night, where the units kept
// needed 10: the others lie in units that leaveCostly leaves out, night
// after night, for the metadata they would cost.
//
// The runs are first estimated with every shared extent their destinations
// cover whole taken as freed, unasked: no run frees more. From
// that, the units are planned and weighed as lines will plan them (with
// the rewrites ws): a unit left out then is left out whatever its
// extents' references are, since freeing less only leaves more units out
// (leaveCostly keeps the largest set of units that each pay for the
// leaves they touch). The runs are then estimated again, the references
// asked for where the destination has a run in a unit kept, and taken as
// freed elsewhere. An extent counts for the run of the first destination
// met, so what is taken on trust counts only for runs in units left out:
// those free no less than they would, and stay left out; the units kept
// free what they would free with every extent asked for, and are kept
// and ordered the same.
func weighFirst(runs []run, estimated int, ws []rewriteAt, files []file, bs int64, refs func(fi int, disk int64) ([]fiemap.Ref, bool)) {
	assumed := estimate(runs[:estimated], files, bs, refs, func(int) bool { return true })
	if assumed == 0 {
		return // nothing taken on trust: the estimate stands
	}
	var assume func(int) bool
	if assumed >= weighFirstMin {
		kept := keptDestinations(runs, ws, files, bs)
		assume = func(fi int) bool { return !kept[fi] }
	}
	for i := range runs[:estimated] {
		runs[i].freed = 0
	}
	estimate(runs[:estimated], files, bs, refs, assume)
}

// keptDestinations marks the files that are the destination of a run in a
// unit that planUnits, weighing the units, keeps.
func keptDestinations(runs []run, ws []rewriteAt, files []file, bs int64) []bool {
	sorted := slices.Clone(runs)
	bySource(sorted)
	us := planUnits(sorted, ws, files, bs, true)
	kept := make([]bool, len(files))
	for n := range us.len() {
		rs, _ := us.get(n)
		for _, k := range rs {
			kept[sorted[k].dst.file()] = true
		}
	}
	return kept
}

// estimateBlockwise sets the freed bytes of the runs (each destination's
// together) whose destination is on a filesystem other than btrfs, as
// estimate does.
func estimateBlockwise(runs []run, files []file, bs int64) {
	byDest := newDstRuns(runs, len(files))
	var blocks *sharedBlocks
	byDestination(runs, func(fi int, rs []run) {
		if !files[fi].vol.btrfs {
			blocks = blockwise(fi, rs, files, byDest, bs, blocks)
		}
	})
}

// blockwise sets the freed bytes of rs, the runs of destination fi on a
// filesystem other than btrfs: the blocks they cover, a partial last block
// whole, but for those of shared extents, which count as sharedBlocks
// says. It returns blocks, made if it was nil and needed.
func blockwise(fi int, rs []run, files []file, byDest dstRuns, bs int64, blocks *sharedBlocks) *sharedBlocks {
	f := &files[fi]
	var inShared []int // f's shared extents that the runs reach
	for k := range rs {
		lo := rs[k].dst.block() * bs
		hi := lo + (rs[k].len+f.vol.fsBlock-1)/f.vol.fsBlock*f.vol.fsBlock
		n := hi - lo
		for i := firstEndingAfter(f.extents, lo); i < len(f.extents) && f.extents[i].Logical < hi; i++ {
			e := f.extents[i]
			if e.Flags&fiemap.FlagShared == 0 {
				continue
			}
			n -= min(hi, e.End()) - max(lo, e.Logical)
			if len(inShared) == 0 || inShared[len(inShared)-1] != i {
				inShared = append(inShared, i)
			}
		}
		rs[k].freed = n
	}
	if len(inShared) == 0 {
		return blocks
	}
	if blocks == nil {
		blocks = newSharedBlocks(files, byDest, bs)
	}
	for _, i := range inShared {
		e := f.extents[i]
		n := blocks.freed(fi, e)
		if n == 0 {
			continue
		}
		// For the first run reaching the extent.
		k, _ := slices.BinarySearchFunc(rs, e.Logical, func(r run, off int64) int {
			return cmp.Compare(r.dst.block()*bs+r.len, off+1)
		})
		rs[min(k, len(rs)-1)].freed += n
	}
	return blocks
}

// covers reports whether the runs (of one destination file, in order)
// cover extent e whole, and which run covers its start. A run that ends at
// EOF covers the rest of the extent's last block.
func covers(runs []run, bs, size int64, e fiemap.Extent) (int, bool) {
	k, _ := slices.BinarySearchFunc(runs, e.Logical, func(r run, off int64) int {
		if r.dst.block()*bs+r.len <= off {
			return -1
		}
		if r.dst.block()*bs > off {
			return 1
		}
		return 0
	})
	pos := e.Logical
	for i := k; i < len(runs) && pos < e.End(); i++ {
		start := runs[i].dst.block() * bs
		if start > pos {
			return 0, false
		}
		pos = max(pos, start+runs[i].len)
	}
	return k, pos >= e.End() || pos >= size
}

// sharedBlocks tells which blocks of shared extents a plan frees on a
// filesystem other than btrfs. There space is freed block by block (XFS
// keeps a reference count for each), so a block that reflinked copies
// share is freed when every range referring to it moves. FIEMAP names
// no owner, only where each range lies on disk: the references known are
// the extents of the files at hand (the plan's sources and destinations)
// at the same disk offsets. A block counts when each of them is in a
// destination whose runs cover it, and once, for the first destination
// met; a block of an extent shown shared with none of them at hand is
// taken to be shared with something outside the plan, and does not
// count. (A file outside the plan that shares one with them keeps it
// alive unseen; its content would be the same, so it is in the plan
// unless left out by the options.)
type sharedBlocks struct {
	files  []file
	byDest dstRuns
	bs     int64
	// refs holds the shared extents of the files at hand that overlap a
	// destination's, by filesystem and by each refBucket of the disk
	// they lie in.
	refs map[refBucket][]extentAt
	// counted are the disk ranges counted already, by filesystem.
	counted map[string][]span
	covered map[int][]span // memo of coveredBy
}

// refBucket is a stretch of refBucketSize bytes of a filesystem's disk.
type refBucket struct {
	fs string
	n  int64
}

const refBucketSize = 64 << 20

// eachBucket calls fn with each refBucket that [lo, hi) of fs lies in.
func eachBucket(fs string, lo, hi int64, fn func(refBucket)) {
	for n := lo / refBucketSize; n <= (hi-1)/refBucketSize; n++ {
		fn(refBucket{fs, n})
	}
}

// extentAt is extent ei of file fi.
type extentAt struct{ fi, ei int32 }

func (b *sharedBlocks) extent(x extentAt) *fiemap.Extent { return &b.files[x.fi].extents[x.ei] }

func newSharedBlocks(files []file, byDest dstRuns, bs int64) *sharedBlocks {
	b := &sharedBlocks{files: files, byDest: byDest, bs: bs, refs: make(map[refBucket][]extentAt),
		counted: make(map[string][]span), covered: make(map[int][]span)}
	// The disk ranges of the destinations' shared extents: only extents
	// overlapping them are looked at.
	dest := make(map[string][]span)
	for fi := range files {
		f := &files[fi]
		if f.vol.btrfs || len(byDest.of(fi)) == 0 {
			continue
		}
		for _, e := range f.extents {
			if e.Flags&fiemap.FlagShared != 0 {
				dest[f.vol.FS] = append(dest[f.vol.FS], span{e.Physical, e.Physical + e.Length})
			}
		}
	}
	for fs, d := range dest {
		slices.SortFunc(d, func(x, y span) int { return cmp.Compare(x.lo, y.lo) })
		merged := d[:0]
		for _, s := range d {
			merged = appendSpan(merged, s)
		}
		dest[fs] = merged
	}
	for fi := range files {
		f := &files[fi]
		d := dest[f.vol.FS]
		if f.vol.btrfs || len(d) == 0 {
			continue
		}
		for ei, e := range f.extents {
			if e.Flags&fiemap.FlagShared == 0 || e.Length <= 0 {
				continue
			}
			k, _ := slices.BinarySearchFunc(d, e.Physical, func(s span, p int64) int { return cmp.Compare(s.hi, p+1) })
			if k < len(d) && d[k].lo < e.Physical+e.Length {
				x := extentAt{int32(fi), int32(ei)}
				eachBucket(f.vol.FS, e.Physical, e.Physical+e.Length, func(k refBucket) { b.refs[k] = append(b.refs[k], x) })
			}
		}
	}
	return b
}

// coveredBy returns the ranges of file fi that its runs as a destination
// cover, in order, a run that ends at EOF covering the rest of its last
// block.
func (b *sharedBlocks) coveredBy(fi int) []span {
	if c, ok := b.covered[fi]; ok {
		return c
	}
	f := &b.files[fi]
	var c []span
	for _, r := range b.byDest.of(fi) {
		lo, hi := r.dst.block()*b.bs, r.dst.block()*b.bs+r.len
		if hi >= f.Size {
			hi = (hi + f.vol.fsBlock - 1) / f.vol.fsBlock * f.vol.fsBlock
		}
		c = appendSpan(c, span{lo, hi})
	}
	b.covered[fi] = c
	return c
}

// onDisk returns the disk ranges of extent e of file fi that the file's
// runs cover.
func (b *sharedBlocks) onDisk(fi int, e *fiemap.Extent) []span {
	var out []span
	for _, c := range b.coveredBy(fi) {
		lo, hi := max(c.lo, e.Logical), min(c.hi, e.End())
		if lo < hi {
			out = append(out, span{lo - e.Logical + e.Physical, hi - e.Logical + e.Physical})
		}
	}
	return out
}

// freed returns the bytes of e, a shared extent of destination fi, that
// the plan frees and that were not counted before, and counts them.
func (b *sharedBlocks) freed(fi int, e fiemap.Extent) int64 {
	fs := b.files[fi].vol.FS
	free := b.onDisk(fi, &e)
	whole := span{e.Physical, e.Physical + e.Length}
	others := false
	eachBucket(fs, whole.lo, whole.hi, func(k refBucket) {
		for _, x := range b.refs[k] {
			r := b.extent(x)
			if len(free) == 0 || r.Physical+r.Length <= whole.lo || r.Physical >= whole.hi ||
				(int(x.fi) == fi && r.Logical == e.Logical) {
				continue
			}
			if max(r.Physical, whole.lo)/refBucketSize != k.n {
				continue // met in an earlier bucket
			}
			others = true
			// The blocks r refers to stay unless its file's runs cover them.
			held := subtract([]span{{max(r.Physical, whole.lo), min(r.Physical+r.Length, whole.hi)}}, b.onDisk(int(x.fi), r))
			free = subtract(free, held)
		}
	})
	if !others {
		return 0 // shared with something not at hand
	}
	return b.countOnce(fs, free)
}

// countOnce returns the bytes of free (disk ranges of fs, in order,
// apart) not counted before, and counts them.
func (b *sharedBlocks) countOnce(fs string, free []span) int64 {
	c := b.counted[fs] // in order, apart
	var n int64
	for _, s := range free {
		i, _ := slices.BinarySearchFunc(c, s.lo, func(x span, lo int64) int { return cmp.Compare(x.hi, lo+1) })
		j, lo, merged := i, s.lo, s
		for ; j < len(c) && c[j].lo <= s.hi; j++ {
			n += max(0, min(c[j].lo, s.hi)-lo)
			lo = max(lo, c[j].hi)
			merged = span{min(merged.lo, c[j].lo), max(merged.hi, c[j].hi)}
		}
		n += max(0, s.hi-lo)
		c = slices.Replace(c, i, j, merged)
	}
	b.counted[fs] = c
	return n
}

// appendSpan appends s to c (ranges in order, s beginning at or after the
// last's start), merged with the last where they overlap or touch.
func appendSpan(c []span, s span) []span {
	if k := len(c) - 1; k >= 0 && s.lo <= c[k].hi {
		c[k].hi = max(c[k].hi, s.hi)
		return c
	}
	return append(c, s)
}

// subtract returns the parts of a (ranges in order, apart) outside every
// range of x (in order).
func subtract(a, x []span) []span {
	var out []span
	j := 0
	for _, s := range a {
		lo := s.lo
		for j < len(x) && x[j].hi <= lo {
			j++
		}
		for i := j; i < len(x) && x[i].lo < s.hi; i++ {
			if x[i].lo > lo {
				out = append(out, span{lo, x[i].lo})
			}
			lo = max(lo, x[i].hi)
		}
		if lo < s.hi {
			out = append(out, span{lo, s.hi})
		}
	}
	return out
}
