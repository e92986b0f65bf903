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

// lines emits the runs as plan lines, with the rewrites ws, in units of
// work (see planUnits): each unit's rewrites, then its runs, those that
// share source range and length on one line of up to plan.MaxDests
// destinations.
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
	// The digest of each source range and length, in source order (the
	// sums read along the sources).
	var digests [][sha256.Size]byte
	digest := make([]int32, len(runs))
	sums := newSumReader(ctx, ix)
	h := sha256.New()
	for i, r := range runs {
		if i%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if i == 0 || r.src != runs[i-1].src || r.len != runs[i-1].len {
			h.Reset()
			if err := sums.hash(h, files[r.src.file()].id, r.src.block(), r.n); err != nil {
				return err
			}
			var d [sha256.Size]byte
			h.Sum(d[:0])
			digests = append(digests, d)
		}
		digest[i] = int32(len(digests) - 1)
	}
	var unit int64
	done := 0
	for _, u := range planUnits(runs, ws, files, bs) {
		unit++
		// A unit's rewrites come first: applysame finishes them before it
		// starts the unit's dedupe lines.
		for _, k := range u.rewrites {
			w := ws[k].w
			w.Unit = unit
			sum.Lines++
			sum.Rewrites++
			sum.Written += w.Bytes
			sum.Freed += w.Freed
			if err := emit(w); err != nil {
				return err
			}
		}
		for i := 0; i < len(u.runs); {
			first := runs[u.runs[i]]
			d := &plan.Dedupe{
				Type:   plan.TypeDedupe,
				V:      plan.Version,
				Len:    first.len,
				Digest: hex.EncodeToString(digests[digest[u.runs[i]]][:]),
				Src:    rangeOf(&files[first.src.file()], first.src.block()*bs),
				Unit:   unit,
			}
			for ; i < len(u.runs) && len(d.Dst) < plan.MaxDests; i++ {
				r := runs[u.runs[i]]
				if r.src != first.src || r.len != first.len {
					break
				}
				d.Dst = append(d.Dst, rangeOf(&files[r.dst.file()], r.dst.block()*bs))
				d.Freed += r.freed
			}
			if done += len(d.Dst); done%4096 < len(d.Dst) {
				if err := ctx.Err(); err != nil {
					return err
				}
				o.progress("writing the plan", int64(done), int64(len(runs)), "runs")
			}
			if err := emitLine(d, emit, sum); err != nil {
				return err
			}
		}
	}
	o.progress("writing the plan", int64(len(runs)), int64(len(runs)), "runs")
	return nil
}

func rangeOf(f *file, off int64) plan.Range {
	return plan.Range{Path: f.path, Off: off, Identity: f.Identity}
}

// emitLine counts a dedupe line and emits it.
func emitLine(d *plan.Dedupe, emit func(plan.Record) error, sum *Summary) error {
	sum.Lines++
	sum.Runs += int64(len(d.Dst))
	sum.Bytes += d.Len * int64(len(d.Dst))
	sum.Freed += d.Freed
	return emit(d)
}
