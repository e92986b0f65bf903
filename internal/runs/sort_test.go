package runs

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func comparePairs(a, b pair) int {
	if c := cmp.Compare(a.sum, b.sum); c != 0 {
		return c
	}
	return cmp.Compare(a.at, b.at)
}

func TestSortPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		n    int
		sum  func() uint64
	}{
		{"empty", 0, rng.Uint64},
		{"one", 1, rng.Uint64},
		{"small", 20, rng.Uint64},
		{"random", 100000, rng.Uint64},
		{"few distinct", 100000, func() uint64 { return rng.Uint64N(7) << 40 }},
		{"all equal", 5000, func() uint64 { return 42 }},
		{"low bits only", 100000, func() uint64 { return rng.Uint64N(1000) }},
		{"one pass of several", 100000, func() uint64 { return rng.Uint64()/3*3 + 2 }},
		{"groups of 50", 100000, func() uint64 { return rng.Uint64N(2000) * 0x9e3779b97f4a7c15 }},
		{"equal but the lowest bit", 5000, func() uint64 { return 1<<63 | 1<<40 | rng.Uint64N(2) }},
		// Partitioned in rounds (roundsFrom entries or more).
		{"random, in rounds", 1 << 19, rng.Uint64},
		{"few distinct, in rounds", 1 << 19, func() uint64 { return rng.Uint64N(7) << 40 }},
		{"low bits only, in rounds", 1 << 19, func() uint64 { return rng.Uint64N(1000) }},
		{"groups of 50, in rounds", 1 << 19, func() uint64 { return rng.Uint64N(10000) * 0x9e3779b97f4a7c15 }},
		{"one digit, in rounds", roundsFrom, func() uint64 { return 5<<56 | rng.Uint64N(1<<40) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := make([]pair, tt.n)
			for i := range s {
				s[i] = pair{tt.sum(), loc(rng.Uint64N(1 << 40))}
			}
			want := slices.Clone(s)
			slices.SortFunc(want, comparePairs)
			sortPairs(s)
			for i := range s {
				if s[i] != want[i] {
					t.Fatalf("sortPairs: s[%d] = %v; want %v", i, s[i], want[i])
				}
			}
		})
	}
}

func TestSortMappings(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := make([]mapping, 200000)
	for i := range s {
		s[i] = mapping{dst: mkloc(rng.IntN(9000), rng.Int64N(65536)), src: mkloc(rng.IntN(9000), rng.Int64N(65536))}
	}
	want := slices.Clone(s)
	slices.SortFunc(want, func(a, b mapping) int {
		return cmp.Or(cmp.Compare(a.dst, b.dst), cmp.Compare(a.src, b.src))
	})
	sortMappings(s)
	if !slices.Equal(s, want) {
		t.Errorf("sortMappings differs from slices.SortFunc")
	}
	// Sorted but for the last entry, which belongs first, or before the
	// one before it (the same destination, a lower source): sorted again.
	n := len(s)
	for _, last := range []mapping{{dst: 0, src: 0}, {dst: s[n-2].dst, src: s[n-2].src - 1}} {
		s[n-1] = last
		want := slices.Clone(s)
		slices.SortFunc(want, func(a, b mapping) int {
			return cmp.Or(cmp.Compare(a.dst, b.dst), cmp.Compare(a.src, b.src))
		})
		sortMappings(s)
		if !slices.Equal(s, want) {
			t.Errorf("sortMappings with %v last differs from slices.SortFunc", last)
		}
	}
}

// BenchmarkSortPairs sorts distinct sums, and sums in groups of 50 (a
// block and its copies in two dozen snapshots, as a night of hourly
// snapshots regroups them).
func BenchmarkSortPairs(b *testing.B) {
	for _, n := range []int{1 << 16, 1 << 19, 1 << 22, 1 << 24} {
		for _, copies := range []int{1, 50} {
			rng := rand.New(rand.NewPCG(1, 2))
			orig := make([]pair, n)
			for i := range orig {
				orig[i] = pair{rng.Uint64N(uint64(n/copies)+1) * 0x9e3779b97f4a7c15, loc(rng.Uint64())}
			}
			s := make([]pair, n)
			name := fmt.Sprintf("%d/copies=%d", n, copies)
			b.Run("radix/"+name, func(b *testing.B) {
				for b.Loop() {
					copy(s, orig)
					sortPairs(s)
				}
			})
			b.Run("pdqsort/"+name, func(b *testing.B) {
				for b.Loop() {
					copy(s, orig)
					slices.SortFunc(s, comparePairs)
				}
			})
		}
	}
}
