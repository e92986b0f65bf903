package fsys_test

import (
	"testing"

	"same/internal/fsys"
)

func TestTime(t *testing.T) {
	for _, tt := range []struct {
		ns   int64
		want string
	}{
		{0, "1970-01-01T00:00:00Z"},
		{1796159723341364358, "2026-12-01T21:15:23.341364358Z"}, // beyond 2^53
		{1718000100000000000, "2024-06-10T06:15:00Z"},
		{-1, "1969-12-31T23:59:59.999999999Z"},
	} {
		if got := fsys.Time(tt.ns); got != tt.want {
			t.Errorf("Time(%d) = %q; want %q", tt.ns, got, tt.want)
		}
		if ns, err := fsys.ParseTime(tt.want); err != nil || ns != tt.ns {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", tt.want, ns, err, tt.ns)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-06-10", "3000-01-01T00:00:00Z"} {
		if ns, err := fsys.ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = %d; want an error", bad, ns)
		}
	}
}
