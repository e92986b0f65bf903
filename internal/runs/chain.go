package runs

import (
	"slices"

	"same/internal/fiemap"
)

// chain merges the mappings into maximal runs, leaving out blocks that
// already share storage or sit in inline extents, those of files
// changed since hashed (stale) or settled (see settle), and those whose
// destination is immutable. It reads the lists of
// f.maps in destination order, each sorted in memory, and frees them. The
// runs come in destination order.
func (f *finder) chain() ([]run, error) {
	defer f.maps.close()
	var total, done int64
	for _, n := range f.maps.n {
		total += n
	}
	var runs []run
	cur := -1 // the run the next mapping may extend
	var dc, sc cursor
	for k := range f.maps.len() {
		ws, err := f.maps.read(k, f.buf)
		if err != nil {
			return nil, err
		}
		maps := mappingsOf(ws)
		sortMappings(maps)
		for _, m := range maps {
			if done%(1<<16) == 0 {
				f.o.progress("chaining", done, total, "blocks")
				if err := f.ctx.Err(); err != nil {
					return nil, err
				}
			}
			done++
			df, sf := &f.files[m.dst.file()], &f.files[m.src.file()]
			if df.stale || sf.stale || df.settled || sf.settled || !shareable(df, sf, m.dst.block()*f.bs, m.src.block()*f.bs, &dc, &sc, f.o.Rewrite) {
				cur = -1
				continue
			}
			if df.immutable {
				df.refused = true
				cur = -1
				continue
			}
			if f.tab != nil && f.tab.need != nil {
				f.tab.need[m.dst.file()], f.tab.need[m.src.file()] = true, true
			}
			if cur >= 0 {
				r := &runs[cur]
				if m.dst == r.dst+loc(r.n) && m.src == r.src+loc(r.n) &&
					!(m.dst.file() == m.src.file() && m.src.block()+1 > r.dst.block()) {
					r.n++
					continue
				}
			}
			runs = append(runs, run{src: m.src, dst: m.dst, n: 1})
			cur = len(runs) - 1
		}
	}
	f.buf = nil
	f.o.progress("chaining", done, total, "blocks")
	for i := range runs {
		r := &runs[i]
		r.len = r.n * f.bs
		if end := (r.dst.block() + r.n) * f.bs; end > f.files[r.dst.file()].Size {
			r.len -= end - f.files[r.dst.file()].Size // the partial tail, equal in both
		}
	}
	return runs, nil
}

// shareable reports whether the block at doff of d may be deduplicated
// against the block at soff of s: neither is inline, they do not already
// share their physical block, and, without rewrites, they are not in one
// btrfs disk extent (where sharing frees nothing). The cursors dc and sc look up d's
// and s's extents.
func shareable(d, s *file, doff, soff int64, dc, sc *cursor, rewrite bool) bool {
	de, dok := dc.at(d, doff)
	se, sok := sc.at(s, soff)
	if (dok && de.Flags&fiemap.FlagDataInline != 0) || (sok && se.Flags&fiemap.FlagDataInline != 0) {
		return false
	}
	if dok && sok && d.class == s.class && samePlace(de, doff, se, soff) {
		return false
	}
	if !rewrite && dok && sok && de.DiskStart != 0 && de.DiskStart == se.DiskStart && d.class == s.class {
		// Both in one btrfs disk extent, at other offsets: sharing them
		// frees nothing, the source keeps the extent alive. (A rewrite
		// of the extent, which moves the source out of it first, makes
		// it free the extent.)
		return false
	}
	return true
}

// samePlace reports whether file offset doff, in extent de, and soff, in
// se, hold the same stored bytes. Where btrfs's disk extents are known,
// that is the same disk extent at the same offset in its data: FIEMAP and
// the tree search give every piece of a compressed extent the extent's
// start as its physical offset, whatever part of its data the piece
// holds, so that pieces already sharing it looked apart, and were
// planned again every night. Elsewhere, the same physical offset.
func samePlace(de fiemap.Extent, doff int64, se fiemap.Extent, soff int64) bool {
	if de.DiskStart != 0 && se.DiskStart != 0 {
		return de.DiskStart == se.DiskStart && de.Offset+(doff-de.Logical) == se.Offset+(soff-se.Logical)
	}
	return de.Physical+(doff-de.Logical) == se.Physical+(soff-se.Logical)
}

// alignRuns fits the runs to filesystems whose block is larger than the
// index's (XFS made with 16 KiB blocks, btrfs with 64 KiB sectors): the
// kernel shares whole blocks of the filesystem, at offsets that are
// multiples of it in both files, and a last block in part only where the
// range ends at the end of both. A run is cut to the filesystem blocks it
// covers whole (keeping a partial tail that ends both files, as chain
// makes it), and left out where its source and destination lie at
// offsets that differ by other than whole filesystem blocks, or where
// nothing is left. Elsewhere the runs are as they were. The order of the
// runs is kept.
func alignRuns(runs []run, files []file, bs int64) []run {
	out := runs[:0]
	for _, r := range runs {
		fb := max(files[r.dst.file()].vol.fsBlock, files[r.src.file()].vol.fsBlock)
		if fb <= bs {
			out = append(out, r)
			continue
		}
		k := fb / bs // index blocks in a filesystem block
		d0, s0 := r.dst.block(), r.src.block()
		if (d0-s0)%k != 0 {
			continue
		}
		lo, end := (d0+k-1)/k*k, d0+r.n
		hi := end / k * k
		if r.len < r.n*bs {
			hi = end // a partial tail, at the end of both files
		}
		if hi <= lo {
			continue
		}
		cut := (lo - d0) * bs
		r.len -= cut + (end-hi)*bs
		r.dst += loc(lo - d0)
		r.src += loc(lo - d0)
		r.n = hi - lo
		out = append(out, r)
	}
	return out
}

func filter(runs []run, o Options) []run {
	return slices.DeleteFunc(runs, func(r run) bool {
		return r.len < o.MinLen
	})
}

// dstRuns finds the runs of each destination file: runs are in
// destination order, and those of file fi are runs[start[fi]:start[fi+1]].
// 4 bytes a file where a map from each destination to its runs took about
// 80, 150 MB at two million files.
type dstRuns struct {
	runs  []run
	start []int32
}

// newDstRuns indexes runs, in destination order, of files numbered below
// nfiles. Runs in another order are a mistake of the caller's: it
// panics rather than find other runs than a file's.
func newDstRuns(runs []run, nfiles int) dstRuns {
	start := make([]int32, nfiles+1)
	for i, r := range runs {
		if i > 0 && r.dst.file() < runs[i-1].dst.file() {
			panic("runs: newDstRuns: runs not in destination order")
		}
		start[r.dst.file()+1]++
	}
	for fi := 1; fi <= nfiles; fi++ {
		start[fi] += start[fi-1]
	}
	return dstRuns{runs, start}
}

// of returns the runs whose destination is file fi, in order: runs of
// the slice indexed, not copies, and no room to append to.
func (d dstRuns) of(fi int) []run {
	lo, hi := d.start[fi], d.start[fi+1]
	return d.runs[lo:hi:hi]
}

// srcRanges holds the ranges that runs read of each source file, in the
// runs' order: those of file fi are spans[start[fi]:start[fi+1]]. (A map
// from each file to its ranges took 150 MB at two million files.)
type srcRanges struct {
	spans []span
	start []int32
}

// newSrcRanges indexes the source ranges of runs of files numbered below
// nfiles, of bs-byte blocks.
func newSrcRanges(runs []run, nfiles int, bs int64) srcRanges {
	// Counted into start[fi+2], summed, then each file's ranges placed
	// from start[fi+1], which ends where the next file's begin.
	start := make([]int32, nfiles+2)
	for _, r := range runs {
		start[r.src.file()+2]++
	}
	for fi := 2; fi < len(start); fi++ {
		start[fi] += start[fi-1]
	}
	spans := make([]span, len(runs))
	for _, r := range runs {
		at := &start[r.src.file()+1]
		spans[*at] = span{r.src.block() * bs, r.src.block()*bs + r.len}
		*at++
	}
	return srcRanges{spans, start[:nfiles+1]}
}

// of returns the source ranges of file fi; none in the zero srcRanges.
func (s srcRanges) of(fi int) []span {
	if s.start == nil {
		return nil
	}
	return s.spans[s.start[fi]:s.start[fi+1]:s.start[fi+1]]
}

// byDestination calls fn with the runs of each destination file in turn;
// runs are in destination order.
func byDestination(runs []run, fn func(fi int, rs []run)) {
	for i := 0; i < len(runs); {
		j := i + 1
		for j < len(runs) && runs[j].dst.file() == runs[i].dst.file() {
			j++
		}
		fn(runs[i].dst.file(), runs[i:j])
		i = j
	}
}
