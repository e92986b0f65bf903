package runs

import (
	"cmp"
	"context"
	"slices"

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
// every block of it is zero in both files, the runs become one. Where
// the run after the gap comes from elsewhere (a block that repeats in
// the file comes from its first place), the run before it is carried
// across the gap instead, if its source goes on with as many zero blocks:
// otherwise only a rewrite could free the extent, and none can where no
// writable subvolume holds a file (a backup host that receives its
// snapshots). So is a run that ends in a whole copy's zero blocks at
// its end. runs are in destination order, and stay so.
func bridge(ctx context.Context, ix *index.Index, files []file, held heldSums, runs []run, bs int64, o *Options) ([]run, error) {
	if len(runs) == 0 {
		return runs, nil
	}
	// Whether run i joins run i-1 depends on those two alone: a run
	// joined to the one before ends where the later one did. So the gaps
	// are looked at in the destinations first, along them, and those zero
	// there in the sources next, along them: reading the sources in
	// destination order took a chunk of the index for each.
	type gapAt struct {
		i    int // the run after the gap
		src  loc // the gap's first block in the source of the run before
		n    int64
		join bool // the run after goes on from the same source: joined, else the one before carried across
	}
	var gaps []gapAt
	dsums, hsums := newSumReader(ctx, ix, held), newSumReader(ctx, ix, held)
	defer dsums.close()
	defer hsums.close()
	for i := 1; i <= len(runs); i++ {
		if i%(1<<14) == 0 {
			o.progress("joining runs", int64(i), int64(len(runs)-1), "runs")
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		p := &runs[i-1]
		df, sf := p.dst.file(), p.src.file()
		var gap int64
		join, ok := false, false
		if i < len(runs) && runs[i].dst.file() == df {
			// Between two runs of the destination. Carried across, the
			// source must hold the gap's blocks: the index holds no sums
			// for the zero blocks at a file's end.
			r := &runs[i]
			gap = r.dst.block() - (p.dst.block() + p.n)
			join = r.src.file() == sf && r.src.block()-(p.src.block()+p.n) == gap
			ok = join || p.src.block()+p.n+gap <= files[sf].blocks(bs)
		} else {
			// After the last run of the destination, to its end: carried
			// there where the source is as long, the run at the same
			// place in both (a whole copy ending in zero blocks), so
			// that both ranges end at the end of their files, as a
			// range shared whose length is not whole blocks must.
			gap = files[df].blocks(bs) - (p.dst.block() + p.n)
			ok = files[sf].Size == files[df].Size && p.src.block() == p.dst.block()
		}
		if ok && df != sf && gap > 0 && gap <= maxBridge &&
			p.len == p.n*bs && !files[df].stale && !files[sf].stale {
			// A source whose sums are held says first, for nothing,
			// whether its side of the gap is zero.
			if _, ok := held[files[sf].id]; ok {
				sz, err := hsums.zero(files[sf].id, p.src.block()+p.n, gap)
				if err != nil {
					return nil, err
				}
				if !sz {
					continue
				}
			}
			dz, err := dsums.zero(files[df].id, p.dst.block()+p.n, gap)
			if err != nil {
				return nil, err
			}
			if dz {
				gaps = append(gaps, gapAt{i, p.src + loc(p.n), gap, join})
			}
		}
	}
	slices.SortFunc(gaps, func(a, b gapAt) int { return cmp.Compare(a.src, b.src) })
	join := make([]bool, len(runs))
	carry := make([]int64, len(runs)+1) // blocks the run before run i is carried across
	ssums := newSumReader(ctx, ix, held)
	defer ssums.close()
	for k, g := range gaps {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil { // the reads do not look (see index.SumsReader)
				return nil, err
			}
		}
		sz, err := ssums.zero(files[g.src.file()].id, g.src.block(), g.n)
		if err != nil {
			return nil, err
		}
		switch {
		case sz && g.join:
			join[g.i] = true
		case sz:
			carry[g.i] = g.n
		}
	}
	// carried carries the run p across n blocks, to the end of its
	// destination where that is nearer.
	carried := func(p *run, n int64) {
		if n == 0 {
			return
		}
		p.n += n
		p.len = min(p.n*bs, files[p.dst.file()].Size-p.dst.block()*bs)
	}
	out := runs[:1]
	for i, r := range runs[1:] {
		p := &out[len(out)-1]
		if join[i+1] {
			p.n = r.dst.block() - p.dst.block() + r.n
			p.len = (r.dst.block()-p.dst.block())*bs + r.len
			continue
		}
		carried(p, carry[i+1])
		out = append(out, r)
	}
	carried(&out[len(out)-1], carry[len(runs)])
	o.progress("joining runs", int64(len(runs)-1), int64(len(runs)-1), "runs")
	return out, nil
}
