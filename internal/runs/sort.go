package runs

import (
	"cmp"
	"math/bits"
	"slices"
)

// sortPairs sorts pairs by sum, then location.
func sortPairs(s []pair) {
	radixSort(s, func(p pair) (uint64, uint64) { return p.sum, uint64(p.at) })
}

// sortMappings sorts mappings by destination, then source.
func sortMappings(s []mapping) {
	radixSort(s, func(m mapping) (uint64, uint64) { return uint64(m.dst), uint64(m.src) })
}

// radixSort sorts s in place by the two words key returns, the first
// before the second. A grouping pass sorts tens of millions of entries:
// an in-place most-significant-digit radix sort (American flag sort) on
// the first word takes a few passes over them where a comparison sort
// takes dozens, and it needs no second buffer, so the memory a pass holds
// is its entries alone. Entries whose first words are equal end up
// together and are sorted by the second word with a comparison sort.
func radixSort[T any](s []T, key func(T) (uint64, uint64)) {
	if len(s) < 2 {
		return
	}
	// Only the bits that differ somewhere need sorting.
	k0, _ := key(s[0])
	var diff uint64
	for _, x := range s {
		k, _ := key(x)
		diff |= k ^ k0
	}
	radixLevel(s, key, bits.Len64(diff))
}

// smallSort is the size under which a bucket is insertion sorted.
const smallSort = 32

// radixLevel sorts s, whose first words agree above bit hi, by the first
// words' bits below hi, 8 at a time, then by the second word.
func radixLevel[T any](s []T, key func(T) (uint64, uint64), hi int) {
	if len(s) < smallSort {
		insertionSort(s, key)
		return
	}
	if hi <= 0 {
		slices.SortFunc(s, func(a, b T) int {
			_, x := key(a)
			_, y := key(b)
			return cmp.Compare(x, y)
		})
		return
	}
	w := min(8, hi)
	shift := uint(hi - w)
	mask := uint64(1)<<w - 1
	digit := func(x T) int {
		k, _ := key(x)
		return int(k >> shift & mask)
	}
	var count [256]int
	for _, x := range s {
		count[digit(x)]++
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
	for d := range 1 << w {
		for next[d] < end[d] {
			x := s[next[d]]
			for e := digit(x); e != d; e = digit(x) {
				// Put x in its bucket and carry on with the entry it
				// displaces, until one of digit d comes round.
				x, s[next[e]] = s[next[e]], x
				next[e]++
			}
			s[next[d]] = x
			next[d]++
		}
	}
	start := 0
	for d := range 1 << w {
		if count[d] > 1 {
			radixLevel(s[start:start+count[d]], key, hi-w)
		}
		start += count[d]
	}
}

func insertionSort[T any](s []T, key func(T) (uint64, uint64)) {
	for i := 1; i < len(s); i++ {
		x := s[i]
		a, b := key(x)
		j := i
		for ; j > 0; j-- {
			c, d := key(s[j-1])
			if c < a || (c == a && d <= b) {
				break
			}
			s[j] = s[j-1]
		}
		s[j] = x
	}
}
