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
func rewrites(runs []run, files []file, bs, minNet int64) []rewriteAt {
	byDst := make(map[int][]run)
	byDestination(runs, func(fi int, rs []run) { byDst[fi] = rs })
	var out []rewriteAt
	for fi := range files {
		f := &files[fi]
		if !f.btrfs || f.stale || len(f.extents) == 0 {
			continue
		}
		for _, g := range groups(f) {
			if w := rewriteOf(byDst[fi], f, bs, minNet, g); w != nil {
				out = append(out, rewriteAt{w, fi})
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
