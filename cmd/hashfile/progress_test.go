package main

import (
	"testing"
	"time"

	"same/internal/cli"
	"same/internal/scan"
)

// Until the walk ends, the total is an estimate: the bytes queued or the
// space used on the roots' filesystems, whichever is more; then it is the
// bytes queued.
func TestMeter(t *testing.T) {
	const used = 10 << 30
	for _, tt := range []struct {
		s    scan.Stats
		want string
	}{
		{scan.Stats{Seen: 10, Hashed: 4, BytesRead: 1 << 30, ToRead: 2 << 30, Elapsed: 2 * time.Second},
			"hashing: 1.0 GiB of ~10.0 GiB (~10%), 512.0 MiB/s, ETA ~18s, 10 files, 4 hashed"},
		{scan.Stats{Seen: 10, Hashed: 4, BytesRead: 1 << 30, ToRead: 12 << 30, Elapsed: 2 * time.Second},
			"hashing: 1.0 GiB of ~12.0 GiB (~8%), 512.0 MiB/s, ETA ~22s, 10 files, 4 hashed"},
		{scan.Stats{Seen: 10, Hashed: 4, BytesRead: 1 << 30, ToRead: 2 << 30, WalkDone: true, Elapsed: 2 * time.Second},
			"hashing: 1.0 GiB of 2.0 GiB (50%), 512.0 MiB/s, ETA 2s, 10 files, 4 hashed"},
		// A re-run walks against the files met last time.
		{scan.Stats{Seen: 250000, Hashed: 3, BytesRead: 12 << 10, Known: 1000000, Elapsed: 2 * time.Second},
			"walking: 250.0k of ~1.0M files (~25%), 125.0k files/s, ETA ~6s, 3 hashed, 12.0 KiB read"},
		{scan.Stats{Seen: 1000100, Known: 1000000, Elapsed: 8 * time.Second},
			"walking: 1.0M of ~1.0M files (~100%), 125.0k files/s, 0 hashed, 0 B read"},
		{scan.Stats{Seen: 10, Hashed: 4, BytesRead: 1 << 30, ToRead: 2 << 30, WalkDone: true, Known: 10, Elapsed: 2 * time.Second},
			"hashing: 1.0 GiB of 2.0 GiB (50%), 512.0 MiB/s, ETA 2s, 10 files, 4 hashed"},
		// Then it prunes what is gone; the phase's time is the Progress's.
		{scan.Stats{WalkDone: true, Pruned: 2000, ToPrune: 8000, Elapsed: time.Hour},
			"pruning: 2000 of 8000 files (25%)"},
	} {
		if got := cli.Format(meter(tt.s, used)); got != tt.want {
			t.Errorf("meter(%+v) = %q; want %q", tt.s, got, tt.want)
		}
	}
}
