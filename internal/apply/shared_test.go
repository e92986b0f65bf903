package apply

import (
	"testing"

	"same/internal/fiemap"
)

func TestSharesStorage(t *testing.T) {
	const m = 1 << 20
	src := []fiemap.Extent{{Logical: 0, Physical: 10 * m, Length: 2 * m}, {Logical: 2 * m, Physical: 50 * m, Length: m}}
	tests := []struct {
		name       string
		dst        []fiemap.Extent
		soff, doff int64
		n          int64
		want       bool
	}{
		{"same storage, one extent", []fiemap.Extent{{Logical: 0, Physical: 10 * m, Length: 2 * m}}, 0, 0, 2 * m, true},
		{"same storage across the source's extents", []fiemap.Extent{{Logical: m, Physical: 11 * m, Length: m}, {Logical: 2 * m, Physical: 50 * m, Length: m}}, m, m, 2 * m, true},
		{"at another offset", []fiemap.Extent{{Logical: 4 * m, Physical: 10*m + 4096, Length: m}}, 4096, 4 * m, m, true},
		{"elsewhere", []fiemap.Extent{{Logical: 0, Physical: 20 * m, Length: 2 * m}}, 0, 0, 2 * m, false},
		{"shared in part", []fiemap.Extent{{Logical: 0, Physical: 10 * m, Length: m}, {Logical: m, Physical: 30 * m, Length: m}}, 0, 0, 2 * m, false},
		{"a hole in the destination", []fiemap.Extent{{Logical: 0, Physical: 10 * m, Length: m}}, 0, 0, 2 * m, false},
		{"compressed", []fiemap.Extent{{Logical: 0, Physical: 10 * m, Length: 2 * m, Flags: fiemap.FlagEncoded}}, 0, 0, 2 * m, false},
		{"nothing", nil, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sharesStorage(src, tt.soff, tt.dst, tt.doff, tt.n); got != tt.want {
				t.Errorf("sharesStorage = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestLooks: every destination is looked at until lookMisses looks in a
// row found nothing shared, then one in lookEvery, and every one again
// from a look that finds one shared.
func TestLooks(t *testing.T) {
	var l looks
	var got []bool
	want := func(n int, shared bool) {
		for range n {
			w := l.want()
			got = append(got, w)
			if w {
				l.saw(shared)
			}
		}
	}
	want(lookMisses+3*lookEvery, false)
	var looked int
	for i, w := range got {
		if w {
			looked++
		}
		if i < lookMisses && !w {
			t.Fatalf("destination %d of the first %d not looked at", i, lookMisses)
		}
		if i >= lookMisses && w != ((i-lookMisses+1)%lookEvery == 0) {
			t.Fatalf("destination %d looked at: %v; want one in %d after %d misses", i, w, lookEvery, lookMisses)
		}
	}
	if looked != lookMisses+3 {
		t.Errorf("looked at %d of %d; want %d", looked, len(got), lookMisses+3)
	}
	// A look that finds storage shared: every destination looked at again.
	got = got[:0]
	for !l.want() {
	}
	l.saw(true)
	want(lookMisses, false)
	for i, w := range got {
		if !w {
			t.Fatalf("destination %d after a look that found one shared not looked at", i)
		}
	}
	if l.want() {
		t.Errorf("the destination after %d more misses looked at; want one in %d", lookMisses, lookEvery)
	}
}
