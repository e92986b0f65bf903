package runs

import (
	"same/internal/fiemap"
	"same/internal/plan"
)

// DefaultRewriteMin is the least an extent's rewrite must free, net, to be
// planned.
const DefaultRewriteMin = 64 << 10

// rewrites plans, for each disk extent of a destination on btrfs (see
// groups) that the runs cover only in part, a rewrite of the rest
// (plan.Rewrite): the extent is freed, at the cost of writing the rest
// anew. It pays when the runs cover at least a quarter of the extent (so at
// most three bytes are written for one freed) and at least minNet bytes.
// Extents that something else shares, inline, compressed, unwritten or
// delayed ones are left alone. runs are in destination order.
func rewrites(runs []run, files []file, bs, minNet int64) []*plan.Rewrite {
	var out []*plan.Rewrite
	byDestination(runs, func(fi int, rs []run) {
		f := &files[fi]
		if !f.btrfs || f.stale {
			return
		}
		for _, g := range groups(f) {
			if w := rewriteOf(rs, f, bs, minNet, g); w != nil {
				out = append(out, w)
			}
		}
	})
	return out
}

const unfit = fiemap.FlagShared | fiemap.FlagDataInline | fiemap.FlagEncoded | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// rewriteOf returns the rewrite of disk extent g of f, if one pays.
func rewriteOf(runs []run, f *file, bs, minNet int64, g []fiemap.Extent) *plan.Rewrite {
	for _, e := range g {
		if e.Flags&unfit != 0 {
			return nil
		}
	}
	var spans []plan.Span
	var covered int64
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
			covered += hi - lo
			pos = hi
		}
		if pos < end {
			spans = append(spans, plan.Span{Off: pos, Len: end - pos})
		}
	}
	if covered == 0 || len(spans) == 0 {
		return nil // untouched, or covered whole (freed without a rewrite)
	}
	var written int64
	for _, s := range spans {
		written += s.Len
	}
	n := length(g)
	if covered < minNet || 4*covered < n {
		return nil
	}
	first, last := g[0], g[len(g)-1]
	return &plan.Rewrite{
		Type: plan.TypeRewrite, V: plan.Version,
		File: rangeOf(f, first.Logical),
		Len:  last.End() - first.Logical, Physical: first.Physical, Copy: spans, Bytes: written, Freed: n - written,
	}
}
