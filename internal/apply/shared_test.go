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
