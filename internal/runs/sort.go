package runs

import (
	"cmp"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"unsafe"
)

// words is the layout pair and mapping share: two words, sorted by the
// first, then the second. Sorting one concrete type lets the compiler
// inline the key reads that a generic sort called through a function
// value for every entry.
type words struct{ hi, lo uint64 }

// The build fails here if pair or mapping stop being laid out as words.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(pair{})-unsafe.Sizeof(words{})]
	_ = [1]struct{}{}[unsafe.Offsetof(pair{}.at)-unsafe.Offsetof(words{}.lo)]
	_ = [1]struct{}{}[unsafe.Sizeof(mapping{})-unsafe.Sizeof(words{})]
	_ = [1]struct{}{}[unsafe.Offsetof(mapping{}.src)-unsafe.Offsetof(words{}.lo)]
)

// sortPairs sorts pairs by sum, then location.
func sortPairs(s []pair) {
	radixSort(unsafe.Slice((*words)(unsafe.Pointer(unsafe.SliceData(s))), len(s)))
}

// sortMappings sorts mappings by destination, then source.
func sortMappings(s []mapping) {
	radixSort(unsafe.Slice((*words)(unsafe.Pointer(unsafe.SliceData(s))), len(s)))
}

// radixSort sorts s in place by hi, then lo. A grouping pass sorts tens of
// millions of entries: an in-place most-significant-digit radix sort
// (American flag sort) on hi takes a few passes over them where a
// comparison sort takes dozens, and it needs no second buffer, so the
// memory a pass holds is its entries alone. Entries whose hi words are
// equal end up together and are sorted by lo with a comparison sort. The
// buckets of the first digit are sorted on every CPU.
//
// Entries in order already are left as they are: settle leaves each list
// of mappings sorted for chain, which sorts it again. The look for the
// first entry out of order stops at once on entries in none.
func radixSort(s []words) {
	if ascending(s) {
		return
	}
	// Only the bits that differ somewhere need sorting.
	hi := differing(s)
	if len(s) < parallelSort || hi == 0 {
		radixLevel(s, hi)
		return
	}
	count := partition(s, hi)
	work := make(chan []words, len(count))
	start := 0
	for _, n := range count {
		work <- s[start : start+n]
		start += n
	}
	close(work)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for b := range work {
				radixLevel(b, hi-min(8, hi))
			}
		})
	}
	wg.Wait()
}

// ascending reports whether s is sorted by hi, then lo.
func ascending(s []words) bool {
	for i := 1; i < len(s); i++ {
		if a, b := s[i-1], s[i]; a.hi > b.hi || a.hi == b.hi && a.lo > b.lo {
			return false
		}
	}
	return true
}

// differing returns how many of the low bits of the hi words of s differ
// somewhere: those above agree in every entry.
func differing(s []words) int {
	var diff uint64
	for _, x := range s {
		diff |= x.hi ^ s[0].hi
	}
	return bits.Len64(diff)
}

// parallelSort is the size from which the first digit's buckets are
// sorted in parallel.
const parallelSort = 1 << 16

// roundsFrom is the size from which partition places entries in rounds
// rather than by following cycles: 4 MiB of entries, more than the
// processor's cache holds, where each read of a cycle waits for memory.
// Within the cache, following cycles takes fewer steps and was faster
// (BenchmarkSortPairs).
const roundsFrom = 1 << 18

// Buckets smaller than smallSort are insertion sorted.
const smallSort = 32

// radixLevel sorts s, whose hi words agree above bit hi, by their bits
// below hi, 8 at a time, then by lo.
func radixLevel(s []words, hi int) {
	switch {
	case len(s) < smallSort:
		insertionSort(s)
		return
	case hi <= 0:
		slices.SortFunc(s, func(a, b words) int { return cmp.Compare(a.lo, b.lo) })
		return
	}
	count := partition(s, hi)
	next := hi - min(8, hi)
	if slices.Contains(count[:], len(s)) && next > 0 {
		// One digit for all: skip to the bits that differ, rather than
		// a pass for every 8 bits they share (a sum and its copies in
		// every snapshot, the same up to the last bit).
		radixLevel(s, min(next, differing(s)))
		return
	}
	start := 0
	for _, n := range count {
		if n > 1 {
			radixLevel(s[start:start+n], next)
		}
		start += n
	}
}

// partition puts s, whose hi words agree above bit hi, in order of the
// (up to) 8 bits below hi, and returns how many entries each digit has.
func partition(s []words, hi int) (count [256]int) {
	w := min(8, hi)
	shift := uint(hi - w)
	mask := uint64(1)<<w - 1
	for _, x := range s {
		count[x.hi>>shift&mask]++
	}
	// next[d] is where the next entry of digit d goes; end[d], where the
	// entries of digit d end.
	var next, end [256]int
	pos := 0
	for d := range 1 << w {
		next[d] = pos
		pos += count[d]
		end[d] = pos
	}
	if len(s) < roundsFrom {
		for d := range 1 << w {
			for next[d] < end[d] {
				x := s[next[d]]
				for e := x.hi >> shift & mask; e != uint64(d); e = x.hi >> shift & mask {
					// Put x in its bucket and carry on with the entry it
					// displaces, until one of digit d comes round.
					x, s[next[e]] = s[next[e]], x
					next[e]++
				}
				s[next[d]] = x
				next[d]++
			}
		}
		return count
	}
	// Rounds over the entries not placed yet, in each digit's range:
	// each step puts the entry at hand at the next place of its digit,
	// and takes the one there in its stead, to be placed in a later
	// round. The steps of a round do not wait on each other (the entry
	// taken is not looked at again in the round), so the processor has
	// many of their reads from all over s in flight, where following
	// one cycle of displaced entries waits for each read in turn.
	// Every step places one entry; next[d] never passes i, so the
	// entries placed in a round lie behind it.
	for {
		left := false
		for d := range 1 << w {
			for i, e := next[d], end[d]; i < e; i++ {
				x := s[i]
				t := x.hi >> shift & mask
				j := next[t]
				next[t]++
				s[i] = s[j]
				s[j] = x
			}
			left = left || next[d] < end[d]
		}
		if !left {
			break
		}
	}
	return count
}

func insertionSort(s []words) {
	for i := 1; i < len(s); i++ {
		x := s[i]
		j := i
		for ; j > 0; j-- {
			if y := s[j-1]; y.hi < x.hi || (y.hi == x.hi && y.lo <= x.lo) {
				break
			}
			s[j] = s[j-1]
		}
		s[j] = x
	}
}
