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
	} {
		if got := cli.Format(meter(tt.s, used)); got != tt.want {
			t.Errorf("meter(%+v) = %q; want %q", tt.s, got, tt.want)
		}
	}
}
