package runs

import "same/internal/fiemap"

// diskKey names a btrfs disk extent: its start (fiemap.Extent's
// DiskStart), within its filesystem, for the same start on another
// filesystem is another extent.
type diskKey struct {
	fs    string
	start int64
}

// diskOf returns the disk extent that e, an extent of f, refers to.
func diskOf(f *file, e fiemap.Extent) diskKey { return diskKey{f.Vol.FS, e.DiskStart} }

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
	var out [][]fiemap.Extent
	byDisk := make(map[int64]int) // DiskStart -> group
	last := make(map[int64]int)   // distance -> group of the last piece with it
	for i, e := range f.extents {
		if e.DiskStart != 0 {
			g, ok := byDisk[e.DiskStart]
			if !ok {
				g = len(out)
				out = append(out, nil)
				byDisk[e.DiskStart] = g
			}
			out[g] = append(out[g], e)
			continue
		}
		if e.Flags&(fiemap.FlagEncoded|fiemap.FlagDataInline|fiemap.FlagUnwritten|fiemap.FlagDelalloc) != 0 {
			out = append(out, []fiemap.Extent{e})
			continue
		}
		d := e.Physical - e.Logical
		g, ok := last[d]
		adjacent := i > 0 && f.extents[i-1].End() == e.Logical && f.extents[i-1].Physical-f.extents[i-1].Logical == d
		if !ok || adjacent {
			g = len(out)
			out = append(out, nil)
		}
		out[g] = append(out[g], e)
		last[d] = g
	}
	return out
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
