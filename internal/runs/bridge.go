package runs

import (
	"context"

	"same/internal/index"
)

// maxBridge is the longest stretch of zero blocks bridge joins runs
// across, in blocks (128 MiB at 4 KiB, btrfs's largest extent).
const maxBridge = 32768

// bridge joins runs of one destination that zero blocks split: zero
// blocks are never grouped, so a copy of a file with zero blocks inside
// (a library's padding, a disk image's empty space) comes out as runs
// with gaps, and on btrfs each zero block left unshared keeps its whole
// extent alive, in the copy and in every snapshot that holds it. Where
// the gap between two runs from one source is the same on both sides and
// every block of it is zero in both files, the runs become one. runs are
// in destination order, and stay so.
func bridge(ctx context.Context, ix *index.Index, files []file, runs []run, bs int64, o *Options) ([]run, error) {
	if len(runs) < 2 {
		return runs, nil
	}
	dsums, ssums := newSumReader(ctx, ix), newSumReader(ctx, ix)
	out := runs[:1]
	for i, r := range runs[1:] {
		if i%(1<<14) == 0 {
			o.progress("joining runs", int64(i), int64(len(runs)-1), "runs")
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		p := &out[len(out)-1]
		df, sf := r.dst.file(), r.src.file()
		gap := r.dst.block() - (p.dst.block() + p.n)
		if df == p.dst.file() && sf == p.src.file() && df != sf &&
			gap > 0 && gap <= maxBridge && r.src.block()-(p.src.block()+p.n) == gap &&
			p.len == p.n*bs && !files[df].stale && !files[sf].stale {
			dz, err := dsums.zero(files[df].id, p.dst.block()+p.n, gap)
			if err != nil {
				return nil, err
			}
			sz := false
			if dz {
				if sz, err = ssums.zero(files[sf].id, p.src.block()+p.n, gap); err != nil {
					return nil, err
				}
			}
			if dz && sz {
				p.n += gap + r.n
				p.len = (r.dst.block()-p.dst.block())*bs + r.len
				continue
			}
		}
		out = append(out, r)
	}
	o.progress("joining runs", int64(len(runs)-1), int64(len(runs)-1), "runs")
	return out, nil
}
