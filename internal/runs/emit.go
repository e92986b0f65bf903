package runs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	"same/internal/index"
	"same/internal/plan"
)

// bySource sorts runs as planUnits takes them: by source, the longest
// first, then by destination.
func bySource(runs []run) {
	slices.SortFunc(runs, func(a, b run) int {
		if c := cmp.Compare(a.src, b.src); c != 0 {
			return c
		}
		if c := cmp.Compare(a.len, b.len); c != 0 {
			return -c // longest first
		}
		return cmp.Compare(a.dst, b.dst)
	})
}

// maxPlanned is the most runs and rewrites lines plans at once: they
// are numbered in 32 bits (see planUnits). Tests lower it.
var maxPlanned = math.MaxInt32 - 1

// lines emits the runs as plan lines, with the rewrites ws, in units of
// work (see planUnits): each unit's rewrites, then its runs, those that
// share source range and length on one line of up to plan.MaxDests
// destinations. redo, if not nil, marks the files regrouped (see
// finder.redo); named, if not nil, is where lines marks the files the
// plan names. Once they are marked, before the first line, it calls
// planned if not nil (Find commits its table of sums there: the files a
// plan names count as named once any of it may have been applied, even
// if it is cut short).
func lines(ctx context.Context, ix *index.Index, files []file, redo, named []bool, planned func(), held heldSums, runs []run, ws []rewriteAt, bs int64, emit func(plan.Record) error, sum *Summary, o *Options) error {
	if len(runs)+len(ws) > maxPlanned {
		return fmt.Errorf("%d runs and %d rewrites to plan, more than findsame plans at once (%d): plan parts of the index in turn (-include)", len(runs), len(ws), maxPlanned)
	}
	bySource(runs)
	// The units first: the maps planUnits builds are gone before the
	// digests and the sums read for them take their room.
	// With the files at hand (not -recorded), the estimate knows every
	// reference to a shared extent, and a unit that frees less than its
	// metadata costs is left out.
	us := planUnits(runs, ws, files, bs, o.Live)
	sum.Costly, sum.Metadata = us.costly, us.metadata
	// The extents are not looked at again: their room is the digests'.
	for i := range files {
		files[i].extents = nil
	}
	if named != nil {
		for n := range us.len() {
			uruns, urewrites := us.get(n)
			for _, k := range urewrites {
				named[ws[k].fi] = true
			}
			for _, k := range uruns {
				named[runs[k].src.file()], named[runs[k].dst.file()] = true, true
			}
		}
	}
	if planned != nil {
		planned()
	}
	// The digest of each source range and length (of the sums of its
	// blocks), for the first run of each.
	var firsts []int
	digest := make([]int32, len(runs))
	for i, r := range runs {
		if i == 0 || r.src != runs[i-1].src || r.len != runs[i-1].len {
			firsts = append(firsts, i)
		}
		digest[i] = int32(len(firsts) - 1)
	}
	// A run's destination range has the sums of its source (bridge joins
	// runs across zero blocks of both). The sums are read along the
	// ranges in order, a chunk at a time: of the sources, but of the
	// destinations where those were regrouped and the sources not, as
	// after a small change the few files regrouped hold most
	// destinations, which then take a few chunks to read where their
	// sources would take one each.
	side := func(r run) loc {
		if redo != nil && redo[r.dst.file()] && !redo[r.src.file()] {
			return r.dst
		}
		return r.src
	}
	order := make([]int32, len(firsts))
	for k := range order {
		order[k] = int32(k)
	}
	if redo != nil {
		slices.SortFunc(order, func(a, b int32) int {
			return cmp.Compare(side(runs[firsts[a]]), side(runs[firsts[b]]))
		})
	}
	digests := make([][sha256.Size]byte, len(firsts))
	sums := newSumReader(ctx, ix, held)
	defer sums.close()
	h := sha256.New()
	for n, k := range order {
		if n%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := runs[firsts[k]]
		at := side(r)
		h.Reset()
		if err := sums.hash(h, files[at.file()].id, at.block(), r.n); err != nil {
			return err
		}
		h.Sum(digests[k][:0])
	}
	var unit int64
	done := 0
	for n := range us.len() {
		unit++
		uruns, urewrites := us.get(n)
		// A unit's rewrites come first: applysame finishes them before it
		// starts the unit's dedupe lines.
		for _, k := range urewrites {
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
		for i := 0; i < len(uruns); {
			first := runs[uruns[i]]
			d := &plan.Dedupe{
				Type:   plan.TypeDedupe,
				V:      plan.Version,
				Len:    first.len,
				Digest: hex.EncodeToString(digests[digest[uruns[i]]][:]),
				Src:    rangeOf(&files[first.src.file()], first.src.block()*bs),
				Unit:   unit,
			}
			for ; i < len(uruns) && len(d.Dst) < plan.MaxDests; i++ {
				r := runs[uruns[i]]
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
	return plan.Range{Path: f.path, Off: off, Identity: f.identity()}
}

// emitLine counts a dedupe line and emits it.
func emitLine(d *plan.Dedupe, emit func(plan.Record) error, sum *Summary) error {
	sum.Lines++
	sum.Runs += int64(len(d.Dst))
	sum.Bytes += d.Len * int64(len(d.Dst))
	sum.Freed += d.Freed
	return emit(d)
}
