package runs

import (
	"fmt"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/plan"
)

// TestPlanUnits checks which runs and rewrites make one unit, and the
// order of the units, on hand-made files of one 8 KiB extent each.
func TestPlanUnits(t *testing.T) {
	const bs = 4096
	files := make([]file, 6)
	for i := range files {
		files[i] = file{path: fmt.Sprint("f", i), Identity: fsys.Identity{Vol: fsys.Volume{FS: "f5", Subvol: 5}, Size: 2 * bs}, btrfs: true,
			extents: []fiemap.Extent{{Logical: 0, Length: 2 * bs, Physical: int64(i+1) << 20, DiskStart: int64(i+1) << 20, DiskLen: 2 * bs}}}
	}
	rewrite := func(fi int) rewriteAt {
		return rewriteAt{&plan.Rewrite{File: plan.Range{Path: files[fi].path}, Len: 2 * bs}, fi}
	}
	r := func(src, sb, dst, db int, freed int64) run {
		return run{src: mkloc(src, int64(sb)), dst: mkloc(dst, int64(db)), n: 1, len: bs, freed: freed}
	}
	for _, tt := range []struct {
		name string
		runs []run // sorted by source
		ws   []rewriteAt
		want string // units in order: rewrites (w) and runs (r) by index
	}{
		{
			// f1's extent is covered by two runs from different sources:
			// one unit, freeing 8 KiB for 8 KiB compared. f3's run frees
			// 8 KiB for 4 KiB compared: it goes first.
			name: "best first",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 3, 0, 2*bs), r(2, 0, 1, 1, 2*bs)},
			want: "[[r1] [r0 r2]]",
		},
		{
			// A run whose source lies in a rewritten extent waits for
			// the rewrite, in a unit after it. The rewrite goes by what
			// it and the unit waiting for it alone free together (8 KiB),
			// more than f3's unit (4 KiB) for a like cost.
			name: "waiting for a rewrite",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 1, 1, 2*bs), r(2, 0, 3, 0, 0), r(2, 1, 3, 1, bs)},
			ws:   []rewriteAt{rewrite(0)},
			want: "[[w0] [r0 r1] [r2 r3]]",
		},
		{
			// The same, but f3's unit frees more: it goes first.
			name: "better than waiting",
			runs: []run{r(0, 0, 1, 0, 0), r(0, 1, 1, 1, bs), r(2, 0, 3, 0, 0), r(2, 1, 3, 1, 2*bs)},
			ws:   []rewriteAt{rewrite(0)},
			want: "[[r2 r3] [w0] [r0 r1]]",
		},
		{
			// f0's rewrite needs a run with its source in f1's rewritten
			// extent, and f1's a run with its source in f0's: each
			// would wait for the other, so they are one unit.
			name: "cycle",
			runs: []run{r(0, 0, 1, 1, 0), r(1, 0, 0, 1, 0)},
			ws:   []rewriteAt{rewrite(0), rewrite(1)},
			want: "[[w0 w1 r0 r1]]",
		},
		{
			// The best rewrite (w0, of f1) goes with a run whose source
			// lies in the extent w1 rewrites (f0's): it comes after w1.
			name: "rewrites in order",
			runs: []run{r(0, 0, 1, 1, 0)},
			ws:   []rewriteAt{rewrite(1), rewrite(0)},
			want: "[[w1] [w0 r0]]",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, u := range planUnits(tt.runs, tt.ws, files, bs) {
				var s []string
				for _, k := range u.rewrites {
					s = append(s, fmt.Sprint("w", k))
				}
				for _, k := range u.runs {
					s = append(s, fmt.Sprint("r", k))
				}
				got = append(got, fmt.Sprint(s))
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("planUnits = %v; want %s", got, tt.want)
			}
		})
	}
}
