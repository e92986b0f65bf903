package runs

import (
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
// extent counts once, for the first destination met. Elsewhere space is
// freed block by block, a partial last block whole.
func estimate(runs []run, files []file, bs int64, refs func(fi int, disk int64) ([]fiemap.Ref, bool)) {
	byDest := make(map[int][]run)
	byDestination(runs, func(fi int, rs []run) { byDest[fi] = rs })
	// covered reports whether the runs of file fi cover every piece of
	// disk extent g, and which run covers its first piece.
	covered := func(fi int, g []fiemap.Extent) (int, bool) {
		f, rs := &files[fi], byDest[fi]
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
		rs, ok := refs(fi, disk)
		if !ok || len(rs) == 0 {
			return false
		}
		if byIno == nil {
			byIno = make(map[refKey]int)
			for di := range byDest {
				byIno[refKey{files[di].Vol.FS, fiemap.Ref{Root: files[di].Vol.Subvol, Ino: files[di].Ino}}] = di
			}
		}
		for _, r := range rs {
			di, ok := byIno[refKey{files[fi].Vol.FS, r}]
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
		if !f.btrfs {
			for k := range rs {
				rs[k].freed = (rs[k].len + f.fsBlock - 1) / f.fsBlock * f.fsBlock
			}
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
