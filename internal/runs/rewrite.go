package runs

import (
	"cmp"
	"slices"
	"strings"

	"same/internal/fiemap"
	"same/internal/plan"
)

// DefaultRewriteMin is the least an extent's rewrite must free, net, to be
// planned.
const DefaultRewriteMin = 64 << 10

// rewriteAt is a planned rewrite and the file (index in files) it is in.
type rewriteAt struct {
	w  *plan.Rewrite
	fi int
}

// rewrites plans, for each disk extent on btrfs (see groups) that would
// not be freed otherwise, a rewrite of its pieces that no run covers
// (plan.Rewrite): the extent is freed, at the cost of writing those pieces
// anew. Two kinds of extent call for one: those of a destination that the
// runs cover only in part, and leftovers, whose stored bytes are partly
// referred to by no file (a run interrupted or failed between a rewrite
// and its dedupe lines leaves them, and so do overwrites inside large
// files), whether or not runs cover them. A rewrite pays when it frees, net,
// at least a quarter of the extent (so at most three bytes are written for
// one freed) and at least minNet bytes. Extents that something else
// shares, inline, compressed, unwritten or delayed ones are left alone, and
// so are those holding the source of a run (sharing them keeps them).
// runs are in destination order. The rewrites come best first: by net
// bytes freed per byte written, then by path and offset.
func rewrites(runs []run, files []file, bs, minNet int64) ([]rewriteAt, []run) {
	byDst := make(map[int][]run)
	byDestination(runs, func(fi int, rs []run) { byDst[fi] = rs })
	srcs := make(map[int][]span)
	for _, r := range runs {
		fi := r.src.file()
		srcs[fi] = append(srcs[fi], span{r.src.block() * bs, r.src.block()*bs + r.len})
	}
	refs := make(map[int64][]ref) // by disk extent
	for fi := range files {
		f := &files[fi]
		if !f.btrfs || f.stale {
			continue
		}
		for _, e := range f.extents {
			if e.DiskStart != 0 {
				refs[e.DiskStart] = append(refs[e.DiskStart], ref{fi, e})
			}
		}
	}
	var out []rewriteAt
	var relinks []run
	for fi := range files {
		f := &files[fi]
		if !f.btrfs || f.stale || len(f.extents) == 0 {
			continue
		}
		for _, g := range groups(f) {
			var more []run
			if shared(g) {
				var ok bool
				if more, ok = sharedWithin(g, fi, files, refs[g[0].DiskStart], byDst, srcs, bs); !ok {
					continue
				}
				g = slices.Clone(g)
				for i := range g {
					g[i].Flags &^= fiemap.FlagShared
				}
			}
			if w := rewriteOf(byDst[fi], f, bs, minNet, g); w != nil {
				w.Shared = more != nil
				out = append(out, rewriteAt{w, fi})
				relinks = append(relinks, more...)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b rewriteAt) int {
		// a.Freed/a.Bytes > b.Freed/b.Bytes first; both sides stay below
		// 2^63 (extents are at most 128 MiB on btrfs, far less than 2^31).
		if c := cmp.Compare(b.w.Freed*a.w.Bytes, a.w.Freed*b.w.Bytes); c != 0 {
			return c
		}
		if c := strings.Compare(a.w.File.Path, b.w.File.Path); c != 0 {
			return c
		}
		return cmp.Compare(a.w.File.Off, b.w.File.Off)
	})
	return out, relinks
}

// ref is a file's reference to part of a disk extent.
type ref struct {
	fi int
	e  fiemap.Extent
}

// span is a range of a file, [lo, hi).
type span struct{ lo, hi int64 }

// covered reports whether any of spans overlaps [lo, hi).
func covered(spans []span, lo, hi int64) bool {
	for _, s := range spans {
		if s.lo < hi && lo < s.hi {
			return true
		}
	}
	return false
}

// sharedWithin reports whether disk extent g of file fi, shared, is shared
// only with other files of the index, each referring to bytes that fi
// refers to too, and returns the runs that would move those files' ranges
// onto fi's, once fi's rewrite has given them storage of their own: then
// nothing refers to the extent any more. An interrupted or limited run
// leaves such extents: a line shared a range of an extent whose rewrite
// was not done. Parts of the other files that runs move already need no
// run; parts whose data in fi runs move, parts used as a source, and
// anything not block-aligned make it decline, and so does a shared piece
// of fi that no other file of the index refers to (a snapshot, say, that
// was not hashed).
func sharedWithin(g []fiemap.Extent, fi int, files []file, refs []ref, byDst map[int][]run, srcs map[int][]span, bs int64) ([]run, bool) {
	if g[0].DiskStart == 0 {
		return nil, false
	}
	ds := g[0].DiskStart
	for _, e := range g {
		if e.Flags&(unfit&^fiemap.FlagShared) != 0 {
			return nil, false
		}
	}
	var others []ref
	for _, r := range refs {
		if r.fi != fi {
			others = append(others, r)
		}
	}
	// Every shared piece of fi must be referred to by another file.
	for _, e := range g {
		if e.Flags&fiemap.FlagShared == 0 {
			continue
		}
		lo, hi := e.Physical-ds, e.Physical-ds+e.Length
		seen := false
		for _, o := range others {
			olo := o.e.Physical - ds
			if olo < hi && lo < olo+o.e.Length {
				seen = true
				break
			}
		}
		if !seen {
			return nil, false
		}
	}
	if len(others) == 0 {
		return nil, false
	}
	var out []run
	ownDsts := dstSpans(byDst[fi], bs)
	for _, o := range others {
		of := &files[o.fi]
		oDsts := dstSpans(byDst[o.fi], bs)
		if of.class != files[fi].class || o.e.Logical%bs != 0 || o.e.Length%bs != 0 {
			return nil, false
		}
		// Block by block, the parts that no run moves.
		for off := o.e.Logical; off < min(o.e.End(), of.size); off += bs {
			if covered(oDsts, off, off+bs) {
				continue
			}
			if covered(srcs[o.fi], off, off+bs) {
				return nil, false
			}
			disk := o.e.Physical - ds + (off - o.e.Logical)
			var at int64 = -1
			for _, e := range g {
				if lo := e.Physical - ds; lo <= disk && disk+bs <= lo+e.Length {
					at = e.Logical + (disk - lo)
					break
				}
			}
			if at < 0 || at%bs != 0 || covered(ownDsts, at, at+bs) {
				return nil, false
			}
			// A partial last block is shared only where both ranges end
			// at their files' EOF.
			n := min(bs, of.size-off)
			if n < bs && at+n != files[fi].size {
				return nil, false
			}
			if k := len(out) - 1; k >= 0 && out[k].len%bs == 0 && out[k].dst == mkloc(o.fi, off/bs)-loc(out[k].n) && out[k].src == mkloc(fi, at/bs)-loc(out[k].n) {
				out[k].n++
				out[k].len += n
				continue
			}
			out = append(out, run{src: mkloc(fi, at/bs), dst: mkloc(o.fi, off/bs), n: 1, len: n})
		}
	}
	return out, true
}

// dstSpans returns the destination ranges of runs.
func dstSpans(runs []run, bs int64) []span {
	out := make([]span, len(runs))
	for i, r := range runs {
		out[i] = span{r.dst.block() * bs, r.dst.block()*bs + r.len}
	}
	return out
}

const unfit = fiemap.FlagShared | fiemap.FlagDataInline | fiemap.FlagEncoded | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// rewriteOf returns the rewrite of disk extent g of f, if one pays. runs
// are those whose destination is f.
func rewriteOf(runs []run, f *file, bs, minNet int64, g []fiemap.Extent) *plan.Rewrite {
	dist := g[0].Physical - g[0].Logical
	for _, e := range g {
		if e.Flags&unfit != 0 {
			return nil
		}
		// applysame finds the pieces at the distance the plan implies; a
		// piece cloned elsewhere in the file is not where it would look.
		if e.Physical-e.Logical != dist {
			return nil
		}
	}
	var spans []plan.Span
	for _, e := range g {
		end := min(e.End(), f.size)
		pos := e.Logical
		for _, r := range runs {
			lo, hi := r.dst.block()*bs, r.dst.block()*bs+r.len
			if hi <= pos || lo >= end {
				continue
			}
			lo, hi = max(lo, pos), min(hi, end)
			if lo > pos {
				spans = append(spans, plan.Span{Off: pos, Len: lo - pos})
			}
			pos = hi
		}
		if pos < end {
			spans = append(spans, plan.Span{Off: pos, Len: end - pos})
		}
	}
	if len(spans) == 0 {
		return nil // covered whole: freed without a rewrite
	}
	var written int64
	for _, s := range spans {
		written += s.Len
	}
	// The extent's size less what is written: the bytes the runs cover
	// and, in a leftover, those nothing refers to any more.
	n := length(g)
	net := n - written
	if net < minNet || 4*net < n {
		return nil
	}
	first, last := g[0], g[len(g)-1]
	return &plan.Rewrite{
		Type: plan.TypeRewrite, V: plan.Version,
		File: rangeOf(f, first.Logical),
		Len:  last.End() - first.Logical, Physical: first.Physical, Copy: spans, Bytes: written, Freed: net,
	}
}
