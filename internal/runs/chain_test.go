package runs

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRunsByFile checks dstRuns and srcRanges against the runs filtered
// file by file, on runs in destination order with files that have none.
func TestRunsByFile(t *testing.T) {
	const bs = 4096
	rng := rand.New(rand.NewPCG(5, 5))
	for round := range 200 {
		nfiles := 1 + rng.IntN(12)
		var runs []run
		for range rng.IntN(40) {
			src, dst := mkloc(rng.IntN(nfiles), rng.Int64N(100)), mkloc(rng.IntN(nfiles), rng.Int64N(100))
			n := 1 + rng.Int64N(8)
			runs = append(runs, run{src: src, dst: dst, n: n, len: n*bs - rng.Int64N(bs)})
		}
		slices.SortFunc(runs, func(a, b run) int { return int(a.dst>>32) - int(b.dst>>32) })
		byDst, srcs := newDstRuns(runs, nfiles), newSrcRanges(runs, nfiles, bs)
		for fi := range nfiles {
			var wantDst []run
			var wantSrc []span
			for _, r := range runs {
				if r.dst.file() == fi {
					wantDst = append(wantDst, r)
				}
				if r.src.file() == fi {
					wantSrc = append(wantSrc, span{r.src.block() * bs, r.src.block()*bs + r.len})
				}
			}
			if got := byDst.of(fi); !slices.Equal(got, wantDst) || cap(got) != len(got) {
				t.Fatalf("round %d: runs to file %d: %v (cap %d); want %v", round, fi, got, cap(got), wantDst)
			}
			if got := srcs.of(fi); !slices.Equal(got, wantSrc) {
				t.Fatalf("round %d: ranges read of file %d: %v; want %v", round, fi, got, wantSrc)
			}
		}
	}
	if got := (srcRanges{}).of(3); got != nil {
		t.Errorf("no ranges: %v", got)
	}
}
