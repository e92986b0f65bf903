package runs

import (
	"cmp"
	"errors"
	"math/bits"
	"runtime/debug"
	"slices"
	"sort"
	"unsafe"

	"same/internal/blockhash"
)

// capacity is how many pairs or mappings one partition may hold: half
// of Options.Budget. The other half is for SQLite's page caches,
// the files, their extents and the runs, the lists' buffers, and the
// garbage the collector has not taken yet.
func (f *finder) capacity() int64 {
	return max(1, f.o.Budget/2/pairSize)
}

// chunkCount is how many non-zero sums a chunk of a file holds, by the
// location of its first block.
type chunkCount struct {
	at loc
	n  int64
}

// scanBatch is how many pairs the scan hands on at a time.
const scanBatch = 1 << 16

// scan reads every sum the index holds once, in index order, and calls put
// with the non-zero ones of the files in scope, with their locations, a
// batch at a time. SQLite is read on one goroutine while put runs on the
// caller's. It returns how many pairs each chunk of each file gave.
func (f *finder) scan(held int64, put func([]pair) error) ([]chunkCount, error) {
	full := make(chan []pair, 2)
	free := make(chan []pair, 3)
	for range 3 {
		free <- make([]pair, 0, scanBatch)
	}
	var counts []chunkCount
	errc := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(full)
		batch := <-free
		var done, shown int64
		var in []int // the files in scope that hold the chunk at hand
		err := f.ix.ScanSums(f.ctx, func(ids []int64, first int, sums []byte) error {
			in = in[:0]
			for _, id := range ids {
				if fi, ok := f.byID.of(id); ok {
					if len(in) > 0 {
						f.alias(fi, in[0]) // its entries are the first's
					}
					in = append(in, fi)
				}
			}
			if len(in) == 0 {
				return nil
			}
			n := int64(0)
			for i := range len(sums) / blockhash.SumSize {
				s := blockhash.At(sums, i)
				if s == blockhash.Zero {
					continue
				}
				for _, fi := range in {
					if len(batch) == cap(batch) {
						select {
						case full <- batch:
						case <-stop:
							return errStopped
						}
						batch = (<-free)[:0]
					}
					batch = append(batch, pair{s, mkloc(fi, int64(first+i))})
				}
				n++
			}
			if n > 0 {
				for _, fi := range in {
					counts = append(counts, chunkCount{mkloc(fi, int64(first)), n})
				}
			}
			done += int64(len(in) * len(sums) / blockhash.SumSize)
			if done-shown >= 1<<16 {
				f.o.progress("reading sums", done, held, "blocks")
				shown = done
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			full <- batch
		}
		f.o.progress("reading sums", done, held, "blocks")
		errc <- err
	}()
	var err error
	for b := range full {
		if err == nil {
			if err = put(b); err != nil {
				close(stop)
			}
		}
		free <- b
	}
	if serr := <-errc; err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(counts, func(a, b chunkCount) int { return cmp.Compare(a.at, b.at) })
	return counts, nil
}

var errStopped = errors.New("stopped")

// group finds every group of equal non-zero sums and maps each member but
// the group's source to the source (see appendGroup). It reads the sums
// once: into memory when they fit, else partitioned by sum range into
// temporary files, each partition then sorted and grouped in memory.
// The mappings go to f.maps by destination range, for chain; f.mapped
// marks the files they name.
func (f *finder) group(held int64) error {
	capw := f.capacity()
	f.mapped = make([]bool, len(f.files))
	if 2*held <= capw {
		pairs := make([]pair, 0, held)
		if _, err := f.scan(held, func(b []pair) error {
			pairs = append(pairs, b...)
			return nil
		}); err != nil {
			return err
		}
		f.sum.Partitions = 1
		f.o.progress("grouping", 0, held, "blocks")
		sortPairs(pairs)
		f.keep(pairs)
		defer f.o.progress("grouping", int64(len(pairs)), held, "blocks")
		f.maps = memBuckets(dups(pairs))
		return f.groups(pairs)
	}
	parts := int((held + capw*7/8 - 1) / max(1, capw*7/8))
	f.sum.Partitions = parts
	sums, err := newPacked(f.tmpdir, parts, &f.temp)
	if err != nil {
		return err
	}
	defer sums.close()
	// The live heap stays as it is while the pairs go to the partitions.
	uncollect := collectPast(headroom(f.o.Budget))
	counts, err := f.scan(held, func(b []pair) error {
		for _, p := range b {
			// Partition k holds the kth of parts slices of the sum space.
			k, _ := bits.Mul64(p.sum, uint64(parts))
			if err := sums.add(int(k), words{p.sum, uint64(p.at)}); err != nil {
				return err
			}
		}
		return nil
	})
	uncollect()
	if err != nil {
		return err
	}
	// The scan's garbage goes back to the system before grouping takes
	// its buffer, which cannot reuse it: at 400 million blocks, peak RSS
	// 612 MiB without this and 569 MiB with it (562 MiB at a quarter).
	debug.FreeOSMemory()
	if err := sums.done(); err != nil {
		return err
	}
	f.bounds = boundaries(counts, capw)
	if f.maps, err = newBuckets(f.tmpdir, len(f.bounds)+1, &f.temp); err != nil {
		return err
	}
	f.buf = make([]words, 0, capw)
	var done int64
	for k := range parts {
		if err := f.ctx.Err(); err != nil {
			return err
		}
		f.o.progress("grouping", done, held, "blocks")
		done += sums.n[k]
		if sums.n[k] > capw {
			if err := f.groupLarge(sums, k, parts, capw); err != nil {
				return err
			}
			continue
		}
		ws, err := sums.read(k, f.buf)
		if err != nil {
			return err
		}
		pairs := pairsOf(ws)
		sortPairs(pairs)
		f.keep(pairs)
		if err := f.groups(pairs); err != nil {
			return err
		}
	}
	f.o.progress("grouping", done, held, "blocks")
	return f.maps.done()
}

// groupLarge groups partition k of sums, which holds more pairs than one
// partition may: in as many passes over it as it takes, each keeping one
// slice of the partition's sum range. (Sums are hashes: only a block
// repeated very often makes a partition so much larger than the others.)
func (f *finder) groupLarge(sums *buckets, k, parts int, capw int64) error {
	passes := (sums.n[k] + capw - 1) / capw
	part := make([]words, 0, min(capw, 1<<16))
	for p := range uint64(passes) {
		kept := f.buf[:0]
		err := sums.scan(k, part, func(ws []words) error {
			for _, x := range ws {
				// The sum's place in its partition, then in its pass.
				_, frac := bits.Mul64(x.hi, uint64(parts))
				if hi, _ := bits.Mul64(frac, uint64(passes)); hi == p {
					kept = append(kept, x)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		pairs := pairsOf(kept)
		sortPairs(pairs)
		f.keep(pairs)
		if err := f.groups(pairs); err != nil {
			return err
		}
		f.buf = kept[:0]
	}
	return nil
}

// dups returns how many pairs, sorted, have the sum of the one before.
func dups(pairs []pair) int64 {
	var n int64
	for i := 1; i < len(pairs); i++ {
		if pairs[i].sum == pairs[i-1].sum {
			n++
		}
	}
	return n
}

// groups maps the members of each group of pairs, sorted, to its source,
// into f.maps.
func (f *finder) groups(pairs []pair) error {
	return f.someGroups(pairs, false, nil)
}

// someGroups is groups, but with only set it adds only the mappings that
// name one of newer (sorted): see regroup. The pairs of a sum need not be
// sorted by location among themselves. It marks the files of every
// mapping all the same, and the sources for the table written.
func (f *finder) someGroups(pairs []pair, only bool, newer []loc) error {
	maps := f.groupMaps[:0]
	defer func() { f.groupMaps = maps[:0] }()
	for i := 0; i < len(pairs); {
		j := i + 1
		for j < len(pairs) && pairs[j].sum == pairs[i].sum {
			j++
		}
		if j-i > 1 {
			maps = appendGroup(maps[:0], f.sources, pairs[i:j])
			for _, m := range maps {
				f.mapped[m.dst.file()] = true
				f.mapped[m.src.file()] = true
				f.sourced(m.src.file())
				if only {
					if _, ok := slices.BinarySearch(newer, m.dst); !ok {
						if _, ok := slices.BinarySearch(newer, m.src); !ok {
							continue
						}
					}
				}
				if err := f.maps.add(f.list(m.dst), words{uint64(m.dst), uint64(m.src)}); err != nil {
					return err
				}
			}
		}
		i = j
	}
	return nil
}

// boundaries returns where each list of mappings after the first starts,
// so that each holds the destinations of at most capw pairs (or one
// chunk's).
func boundaries(counts []chunkCount, capw int64) []loc {
	var out []loc
	var n int64
	for _, c := range counts {
		if n > 0 && n+c.n > capw {
			out = append(out, c.at)
			n = 0
		}
		n += c.n
	}
	return out
}

// list returns the list of mappings that holds destination dst.
func (f *finder) list(dst loc) int {
	return sort.Search(len(f.bounds), func(i int) bool { return f.bounds[i] > dst })
}

// pairsOf is ws as pairs, which have the same layout.
func pairsOf(ws []words) []pair {
	return unsafe.Slice((*pair)(unsafe.Pointer(unsafe.SliceData(ws))), len(ws))
}

// mappingsOf is ws as mappings, which have the same layout.
func mappingsOf(ws []words) []mapping {
	return unsafe.Slice((*mapping)(unsafe.Pointer(unsafe.SliceData(ws))), len(ws))
}

// sources is what grouping reads of each file, for every member of every
// group: which class it is in, and how good a source it is. Held apart
// from the files (about 180 bytes each, 12 here), which grouping read
// from all over as the files grew in number, missing the CPU's caches.
type sources struct {
	// rank orders the files as sources, the better the higher: in a
	// read-only subvolume that may not be a destination (keepSource),
	// else in a larger file, else stored compressed (the copy that takes
	// less disk is the one to keep).
	rank  []uint64
	class []int32
	// mask is, for a file on a filesystem whose block holds several of
	// the index's (XFS of 16 KiB blocks), their number less one: a block
	// can share storage only with blocks at the same place in a block of
	// the filesystem (see of). 0 elsewhere; nil where no file has one.
	mask []uint16
}

// of returns the class of the block at a as a member of a group: its
// file's class, and where the filesystem's block holds several of the
// index's, its place in it.
func (s sources) of(a loc) int64 {
	c := int64(s.class[a.file()]) << 16
	if s.mask != nil {
		c |= a.block() & int64(s.mask[a.file()])
	}
	return c
}

const keepSourceRank = 1 << 63

// newSources makes the sources of files, whose index blocks are of bs
// bytes.
func newSources(files []file, bs int64) sources {
	s := sources{rank: make([]uint64, len(files)), class: make([]int32, len(files))}
	for i := range files {
		if v := files[i].vol; v != nil && v.fsBlock/bs > 1 {
			k := v.fsBlock / bs
			if s.mask == nil {
				s.mask = make([]uint16, len(files))
			}
			s.mask[i] = uint16(k - 1)
		}
	}
	for i := range files {
		f := &files[i]
		r := uint64(min(max(f.Size, 0), 1<<62-1)) << 1
		if f.keepSource {
			r |= keepSourceRank
		}
		if f.encoded {
			r |= 1
		}
		s.rank[i], s.class[i] = r, int32(f.class)
	}
	return s
}

// appendGroup maps every member of g (in any order) to the source of its
// class: the member of the class with the highest rank, the first in path
// and block order. Members of different classes (sources.of) cannot share
// storage. A
// member that must stay a source (keepSource) is mapped to nothing.
func appendGroup(maps []mapping, s sources, g []pair) []mapping {
	c := s.of(g[0].at)
	for _, m := range g[1:] {
		if s.of(m.at) != c {
			return appendClasses(maps, s, g)
		}
	}
	src := g[0].at
	best := s.rank[src.file()]
	for _, m := range g[1:] {
		if r := s.rank[m.at.file()]; r > best || (r == best && m.at < src) {
			src, best = m.at, r
		}
	}
	for _, m := range g {
		if m.at != src && s.rank[m.at.file()]&keepSourceRank == 0 {
			maps = append(maps, mapping{dst: m.at, src: src})
		}
	}
	return maps
}

// appendClasses is appendGroup for a group of several classes: each
// class's members make a group of their own.
func appendClasses(maps []mapping, s sources, g []pair) []mapping {
	g = slices.Clone(g)
	class := func(p pair) int64 { return s.of(p.at) }
	slices.SortStableFunc(g, func(a, b pair) int { return cmp.Compare(class(a), class(b)) })
	for i := 0; i < len(g); {
		j := i + 1
		for j < len(g) && class(g[j]) == class(g[i]) {
			j++
		}
		if j-i > 1 {
			maps = appendGroup(maps, s, g[i:j])
		}
		i = j
	}
	return maps
}
