package runs

import (
	"cmp"
	"slices"

	"same/internal/fiemap"
)

// diskKey names a btrfs disk extent: its start (fiemap.Extent's
// DiskStart), within its filesystem, for the same start on another
// filesystem is another extent.
type diskKey struct {
	fs    string
	start int64
}

// diskOf returns the disk extent that e, an extent of f, refers to.
func diskOf(f *file, e fiemap.Extent) diskKey { return diskKey{f.vol.FS, e.DiskStart} }

// groups returns f's extents grouped into the pieces of one disk extent,
// each group in file order, groups in order of their first piece. btrfs
// frees a disk extent only when no range refers to any part of it.
//
// Where the index knows the disk extent of each range (DiskStart, from the
// btrfs tree search), pieces with the same DiskStart belong together.
// Otherwise only FIEMAP is known, which reports ranges and where each lies
// on disk, not the disk extents they belong to. A disk extent partly shared
// away (a rewrite interrupted between chunks, say) shows there as pieces
// with other ranges between them, each at the same distance between its
// file offset and its disk offset; so pieces with equal distance that are
// not next to each other are grouped. Pieces next to each other are left
// apart: they are most often extents written one after another, contiguous
// on disk. Compressed, inline and unwritten extents stand alone.
func groups(f *file) [][]fiemap.Extent {
	n := len(f.extents)
	if n == 0 {
		return nil
	}
	// Each extent's group first, then the groups cut from one array.
	of, size := extentGroups(f)
	out := make([][]fiemap.Extent, len(size))
	if contiguous(of) {
		// Most often each group's pieces come one after another: the
		// groups are slices of the extents, read only.
		at := 0
		for g, k := range size {
			out[g] = f.extents[at : at+int(k) : at+int(k)]
			at += int(k)
		}
		return out
	}
	all := make([]fiemap.Extent, n)
	at := 0
	for g, k := range size {
		out[g] = all[at : at : at+int(k)]
		at += int(k)
	}
	for i, e := range f.extents {
		out[of[i]] = append(out[of[i]], e)
	}
	return out
}

// extentGroups returns the group of each extent of f (see groups), the
// groups numbered in order of their first piece, and the size of each.
// While a file has few extents the keys are looked up in slices (most
// files have a few; maps would cost more than the rest).
func extentGroups(f *file) (of, size []int32) {
	n := len(f.extents)
	of = make([]int32, n)
	var disk, dist []int64 // each group's DiskStart (0: none); each distance's key
	var distGroup []int32  // the group of the last piece with dist[k]
	var byDisk, last map[int64]int32
	if n > 64 {
		byDisk, last = make(map[int64]int32), make(map[int64]int32)
	}
	newGroup := func(ds int64) int32 {
		size = append(size, 0)
		disk = append(disk, ds)
		return int32(len(size) - 1)
	}
	for i, e := range f.extents {
		var g int32
		switch {
		case e.DiskStart != 0:
			g = -1
			if byDisk != nil {
				if k, ok := byDisk[e.DiskStart]; ok {
					g = k
				}
			} else {
				for k, ds := range disk {
					if ds == e.DiskStart {
						g = int32(k)
						break
					}
				}
			}
			if g < 0 {
				g = newGroup(e.DiskStart)
				if byDisk != nil {
					byDisk[e.DiskStart] = g
				}
			}
		case e.Flags&(fiemap.FlagEncoded|fiemap.FlagDataInline|fiemap.FlagUnwritten|fiemap.FlagDelalloc) != 0:
			g = newGroup(0)
		default:
			d := e.Physical - e.Logical
			adjacent := i > 0 && f.extents[i-1].End() == e.Logical && f.extents[i-1].Physical-f.extents[i-1].Logical == d
			k, ok := -1, false
			if last != nil {
				g, ok = last[d]
			} else {
				for j, x := range dist {
					if x == d {
						k, g, ok = j, distGroup[j], true
						break
					}
				}
			}
			if !ok || adjacent {
				g = newGroup(0)
			}
			switch {
			case last != nil:
				last[d] = g
			case k >= 0:
				distGroup[k] = g
			default:
				dist, distGroup = append(dist, d), append(distGroup, g)
			}
		}
		of[i] = g
		size[g]++
	}
	return of, size
}

// contiguous reports whether the pieces of each group (of, by piece,
// groups numbered in order of their first piece) come one after another.
func contiguous(of []int32) bool {
	for i := 1; i < len(of); i++ {
		if of[i] != of[i-1] && of[i] != of[i-1]+1 {
			return false
		}
	}
	return true
}

// length is what freeing a group frees: its disk extent's size where that
// is known, else the bytes its pieces map.
func length(g []fiemap.Extent) int64 {
	if g[0].DiskLen > 0 {
		return g[0].DiskLen
	}
	var n int64
	for _, e := range g {
		n += e.Length
	}
	return n
}

// shared reports whether any piece of g is shared with another file or
// snapshot, or is inline.
func shared(g []fiemap.Extent) bool {
	for _, e := range g {
		if e.Flags&(fiemap.FlagShared|fiemap.FlagDataInline) != 0 {
			return true
		}
	}
	return false
}

// inlineGroup reports whether g is stored in metadata, where nothing can share
// it.
func inlineGroup(g []fiemap.Extent) bool {
	for _, e := range g {
		if e.Flags&fiemap.FlagDataInline != 0 {
			return true
		}
	}
	return false
}

// firstEndingAfter returns the index of the first of exts (in file order)
// that ends after off, len(exts) if none does.
func firstEndingAfter(exts []fiemap.Extent, off int64) int {
	i, _ := slices.BinarySearchFunc(exts, off, func(e fiemap.Extent, off int64) int { return cmp.Compare(e.End(), off+1) })
	return i
}

// cursor looks up the extent of a file holding an offset, trying the one
// it found last first: chain asks along runs, so the answer is most often
// the same extent, and a binary search over every extent of the file for
// each block took most of a re-run's chaining.
type cursor struct {
	f  *file
	e  fiemap.Extent
	ok bool
}

func (c *cursor) at(f *file, off int64) (fiemap.Extent, bool) {
	if c.f == f && c.ok && c.e.Logical <= off && off < c.e.End() {
		return c.e, true
	}
	c.f = f
	c.e, c.ok = fiemap.At(f.extents, off)
	return c.e, c.ok
}
