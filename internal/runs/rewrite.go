package runs

import (
	"same/internal/fiemap"
	"same/internal/plan"
)

// DefaultRewriteMin is the least an extent's rewrite must free, net, to be
// planned.
const DefaultRewriteMin = 64 << 10

// rewrites plans, for each destination extent on btrfs that the runs cover
// only in part, a rewrite of the rest (plan.Rewrite): the extent is freed,
// at the cost of writing the rest anew. It pays when the runs cover at
// least a quarter of the extent (so at most three bytes are written for
// one freed) and at least minNet bytes. Extents that something else shares,
// inline, compressed, unwritten or delayed ones are left alone. runs are
// in destination order; each planned extent's bytes count as freed.
func rewrites(runs []run, files []file, bs, minNet int64) []*plan.Rewrite {
	var out []*plan.Rewrite
	for i := 0; i < len(runs); {
		fi := runs[i].dst.file()
		j := i
		for j < len(runs) && runs[j].dst.file() == fi {
			j++
		}
		f := &files[fi]
		if f.btrfs && !f.stale {
			for _, e := range f.extents {
				if w := rewriteOf(runs[i:j], f, bs, minNet, e); w != nil {
					out = append(out, w)
				}
			}
		}
		i = j
	}
	return out
}

const unfit = fiemap.FlagShared | fiemap.FlagDataInline | fiemap.FlagEncoded | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// rewriteOf returns the rewrite of extent e of f, if one pays.
func rewriteOf(runs []run, f *file, bs, minNet int64, e fiemap.Extent) *plan.Rewrite {
	if e.Flags&unfit != 0 {
		return nil
	}
	end := min(e.End(), f.size)
	var spans []plan.Span
	var covered int64
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
	if covered == 0 || pos >= end && len(spans) == 0 {
		return nil // untouched, or covered whole (freed without a rewrite)
	}
	if pos < end {
		spans = append(spans, plan.Span{Off: pos, Len: end - pos})
	}
	var written int64
	for _, s := range spans {
		written += s.Len
	}
	if covered < minNet || 4*covered < e.Length {
		return nil
	}
	return &plan.Rewrite{
		Type: plan.TypeRewrite, V: plan.Version,
		File: plan.Range{Path: f.path, Off: e.Logical, Dev: f.dev, Ino: f.ino, Size: f.size, Mtime: f.mtime},
		Len:  e.Length, Physical: e.Physical, Copy: spans, Bytes: written, Freed: e.Length - written,
	}
}
