package runs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"same/internal/index"
	"same/internal/plan"
)

// lines groups runs that share source range and length into plan lines
// and emits them with the rewrites ws (best first), unit by unit. A line
// goes with a rewrite when one of its destination ranges, or its source
// range, lies in the rewrite's extent: with the first such rewrite for its
// destinations, so that the extent it helps free is freed as soon as
// possible, but never before a rewrite of the extent holding its source
// (sharing that extent first would keep it). Lines that go with no
// rewrite need no writing and come first, each a unit of its own, in
// source order, as they are found; the others wait in memory for their
// rewrite.
func lines(ctx context.Context, ix *index.Index, files []file, runs []run, ws []rewriteAt, bs int64, emit func(plan.Record) error, sum *Summary, o *Options) error {
	slices.SortFunc(runs, func(a, b run) int {
		if c := cmp.Compare(a.src, b.src); c != 0 {
			return c
		}
		if c := cmp.Compare(a.len, b.len); c != 0 {
			return -c // longest first
		}
		return cmp.Compare(a.dst, b.dst)
	})
	// The extents of the rewrites of each file, with their rank in ws.
	type extent struct {
		lo, hi int64
		rank   int
	}
	rewritten := make(map[int][]extent)
	for k, w := range ws {
		rewritten[w.fi] = append(rewritten[w.fi], extent{w.w.File.Off, w.w.File.Off + w.w.Len, k})
	}
	// rankOf returns the rank of the first (or, with last, the last)
	// rewrite whose extent [lo, hi) of file fi overlaps, and -1 if none.
	rankOf := func(fi int, lo, hi int64, last bool) int {
		rank := -1
		for _, e := range rewritten[fi] {
			if e.lo < hi && lo < e.hi && (rank < 0 || (e.rank < rank) != last) {
				rank = e.rank
			}
		}
		return rank
	}
	waiting := make([][]*plan.Dedupe, len(ws))
	var unit int64
	sums := newSumReader(ctx, ix)
	for i := 0; i < len(runs); {
		if err := ctx.Err(); err != nil {
			return err
		}
		o.progress("writing the plan", int64(i), int64(len(runs)), "runs")
		j := i + 1
		for j < len(runs) && j-i < plan.MaxDests && runs[j].src == runs[i].src && runs[j].len == runs[i].len {
			j++
		}
		r := runs[i]
		sf := &files[r.src.file()]
		h := sha256.New()
		if err := sums.hash(h, sf.id, r.src.block(), r.n); err != nil {
			return err
		}
		var digest [sha256.Size]byte
		h.Sum(digest[:0])
		d := &plan.Dedupe{
			Type:   plan.TypeDedupe,
			V:      plan.Version,
			Len:    r.len,
			Digest: hex.EncodeToString(digest[:]),
			Src:    rangeOf(sf, r.src.block()*bs),
		}
		// The line's unit: that of the first rewrite of an extent holding
		// one of its destinations, but not before the last of those
		// holding its source.
		srcRank, dstRank := -1, -1
		if len(ws) > 0 {
			srcRank = rankOf(r.src.file(), r.src.block()*bs, r.src.block()*bs+r.len, true)
		}
		for _, rr := range runs[i:j] {
			d.Dst = append(d.Dst, rangeOf(&files[rr.dst.file()], rr.dst.block()*bs))
			d.Freed += rr.freed
			sum.Runs++
			sum.Bytes += rr.len
			if len(ws) > 0 {
				if k := rankOf(rr.dst.file(), rr.dst.block()*bs, rr.dst.block()*bs+rr.len, false); k >= 0 && (dstRank < 0 || k < dstRank) {
					dstRank = k
				}
			}
		}
		rank := max(srcRank, dstRank)
		i = j
		if rank >= 0 {
			waiting[rank] = append(waiting[rank], d)
			continue
		}
		unit++
		d.Unit = unit
		if err := emitLine(d, emit, sum); err != nil {
			return err
		}
	}
	for k, w := range ws {
		unit++
		w.w.Unit = unit
		sum.Lines++
		sum.Rewrites++
		sum.Written += w.w.Bytes
		sum.Freed += w.w.Freed
		if err := emit(w.w); err != nil {
			return err
		}
		for _, d := range waiting[k] {
			d.Unit = unit
			if err := emitLine(d, emit, sum); err != nil {
				return err
			}
		}
		waiting[k] = nil
	}
	o.progress("writing the plan", int64(len(runs)), int64(len(runs)), "runs")
	return nil
}

func rangeOf(f *file, off int64) plan.Range {
	return plan.Range{Path: f.path, Off: off, FS: f.vol.FS, Subvol: f.vol.Subvol, Ino: f.ino, Size: f.size, Mtime: f.mtime}
}

// emitLine counts a dedupe line and emits it.
func emitLine(d *plan.Dedupe, emit func(plan.Record) error, sum *Summary) error {
	sum.Lines++
	sum.Freed += d.Freed
	return emit(d)
}
