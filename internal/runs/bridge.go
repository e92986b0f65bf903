package runs

import (
	"context"

	"same/internal/blockhash"
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
func bridge(ctx context.Context, ix *index.Index, files []file, runs []run, bs int64) ([]run, error) {
	if len(runs) < 2 {
		return runs, nil
	}
	sums := make(map[int][]byte) // of the files of one destination's runs
	sumsOf := func(fi int) ([]byte, error) {
		if s, ok := sums[fi]; ok {
			return s, nil
		}
		s, err := ix.Sums(ctx, files[fi].id)
		sums[fi] = s
		return s, err
	}
	zero := func(s []byte, from, n int64) bool {
		for b := from; b < from+n; b++ {
			if int(b) < len(s)/blockhash.SumSize && blockhash.At(s, int(b)) != blockhash.Zero {
				return false
			}
		}
		return true
	}
	out := runs[:1]
	for _, r := range runs[1:] {
		p := &out[len(out)-1]
		df, sf := r.dst.file(), r.src.file()
		if df != p.dst.file() {
			clear(sums)
		}
		gap := r.dst.block() - (p.dst.block() + p.n)
		if df == p.dst.file() && sf == p.src.file() && df != sf &&
			gap > 0 && gap <= maxBridge && r.src.block()-(p.src.block()+p.n) == gap &&
			p.len == p.n*bs && !files[df].stale && !files[sf].stale {
			ds, err := sumsOf(df)
			if err != nil {
				return nil, err
			}
			ss, err := sumsOf(sf)
			if err != nil {
				return nil, err
			}
			if zero(ds, p.dst.block()+p.n, gap) && zero(ss, p.src.block()+p.n, gap) {
				p.n += gap + r.n
				p.len = (r.dst.block()-p.dst.block())*bs + r.len
				continue
			}
		}
		out = append(out, r)
	}
	return out, nil
}
