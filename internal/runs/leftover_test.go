package runs

import "testing"

func TestLeftover(t *testing.T) {
	const M = 1 << 20
	for _, tt := range []struct {
		name string
		n    int64
		used []span
		want bool
	}{
		{"all referred to", 8 * M, []span{{0, 8 * M}}, false},
		{"bookends", 8 * M, []span{{7 * M, 8 * M}, {0, M}}, true},
		{"overlapping references", 8 * M, []span{{0, 4 * M}, {M, 7 * M}, {2 * M, 3 * M}}, false},
		{"a quarter unreferenced", 8 * M, []span{{0, 6 * M}}, true},
		{"less than a quarter", 8 * M, []span{{0, 6*M + 4096}}, false},
		{"less than the least gain", 128 << 10, []span{{0, 64<<10 + 4096}}, false},
		{"a reference past the end", 8 * M, []span{{0, M}, {4 * M, 12 * M}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := leftover(tt.n, tt.used, DefaultRewriteMin); got != tt.want {
				t.Errorf("leftover(%d, %v) = %v; want %v", tt.n, tt.used, got, tt.want)
			}
		})
	}
}
