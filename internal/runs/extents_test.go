package runs

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"same/internal/fiemap"
)

// groups, which looks keys up in slices for a few extents and in maps for
// more, groups as the rule says (groupsByRule, written plainly) on random
// files of both sizes: disk extents with pieces apart, FIEMAP pieces at
// equal distances, adjacent or not, and extents that stand alone.
func TestGroups(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		n := 1 + r.IntN(100)
		var f file
		var logical int64
		for range n {
			e := fiemap.Extent{Logical: logical, Length: bs * (1 + r.Int64N(4))}
			switch r.IntN(4) {
			case 0:
				e.DiskStart = bs * (1 + r.Int64N(5))
				e.Physical = e.DiskStart + bs*r.Int64N(3)
			case 1:
				e.Flags = fiemap.FlagEncoded
				e.Physical = bs * r.Int64N(100)
			default:
				e.Physical = logical + bs*r.Int64N(3)
			}
			if r.IntN(3) == 0 {
				logical += bs // a hole between
			}
			logical += e.Length
			f.extents = append(f.extents, e)
		}
		if got, want := groups(&f), groupsByRule(&f); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d, %d extents %+v:\ngroups %+v\nrule   %+v", round, n, f.extents, got, want)
		}
	}
	if got := groups(&file{}); got != nil {
		t.Errorf("no extents: %v", got)
	}
}

// groupsByRule is groups' rule as its comment states it.
func groupsByRule(f *file) [][]fiemap.Extent {
	var out [][]fiemap.Extent
	byDisk := make(map[int64]int)
	last := make(map[int64]int)
	for i, e := range f.extents {
		if e.DiskStart != 0 {
			g, ok := byDisk[e.DiskStart]
			if !ok {
				g = len(out)
				out = append(out, nil)
				byDisk[e.DiskStart] = g
			}
			out[g] = append(out[g], e)
			continue
		}
		if e.Flags&(fiemap.FlagEncoded|fiemap.FlagDataInline|fiemap.FlagUnwritten|fiemap.FlagDelalloc) != 0 {
			out = append(out, []fiemap.Extent{e})
			continue
		}
		d := e.Physical - e.Logical
		g, ok := last[d]
		adjacent := i > 0 && f.extents[i-1].End() == e.Logical && f.extents[i-1].Physical-f.extents[i-1].Logical == d
		if !ok || adjacent {
			g = len(out)
			out = append(out, nil)
		}
		out[g] = append(out[g], e)
		last[d] = g
	}
	return out
}
