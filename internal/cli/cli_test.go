package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"4096", 4096, false},
		{"4K", 4096, false},
		{"4k", 4096, false},
		{"4KiB", 4096, false},
		{"128KB", 128 << 10, false},
		{"16M", 16 << 20, false},
		{"1GiB", 1 << 30, false},
		{"", 0, true},
		{"-1", 0, true},
		{"4X", 0, true},
		{"99999999999T", 0, true},
	} {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("x"), 1},
		{Usagef("bad"), 2},
		{fmt.Errorf("run: %w", ErrPartial), 3},
		{fmt.Errorf("walk: %w", context.Canceled), 130},
	} {
		if got := Status(tt.err); got != tt.want {
			t.Errorf("Status(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {3 << 30, "3.0 GiB"}} {
		if got := Bytes(tt.n); got != tt.want {
			t.Errorf("Bytes(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}
