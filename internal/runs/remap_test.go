package runs

import (
	"testing"

	"same/internal/fiemap"
)

// TestTrusted checks which recorded extents remap keeps for a file the
// last plan left alone: extent items with their generation, every one
// stored on its own recorded shared.
func TestTrusted(t *testing.T) {
	const shared = fiemap.FlagShared
	item := func(flags uint32, disk, gen int64) fiemap.Extent {
		return fiemap.Extent{Logical: 0, Physical: disk, Length: 4096, Flags: flags, DiskStart: disk, DiskLen: 4096, Gen: gen}
	}
	for _, tt := range []struct {
		name string
		ext  []fiemap.Extent
		want bool
	}{
		{"none", nil, false},
		{"shared items", []fiemap.Extent{item(shared, 1<<20, 7), item(shared|fiemap.FlagLast, 2<<20, 8)}, true},
		{"one not shared", []fiemap.Extent{item(shared, 1<<20, 7), item(fiemap.FlagLast, 2<<20, 8)}, false},
		{"FIEMAP's, no generation", []fiemap.Extent{item(shared, 1<<20, 0)}, false},
		{"a hole and inline data aside", []fiemap.Extent{item(0, 0, 7), item(shared, 1<<20, 7),
			{Logical: 8192, Length: 100, Flags: fiemap.FlagDataInline | fiemap.FlagNotAligned | fiemap.FlagLast}}, true},
	} {
		if got := trusted(tt.ext); got != tt.want {
			t.Errorf("%s: trusted = %v; want %v", tt.name, got, tt.want)
		}
	}
}
