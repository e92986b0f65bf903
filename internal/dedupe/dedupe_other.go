//go:build !linux

package dedupe

import (
	"context"
	"os"
	"syscall"

	"same/internal/fsys"
)

// Open returns ErrUnsupported: FIDEDUPERANGE is Linux-only.
func Open(path string, want fsys.Identity) (*os.File, error) {
	return nil, ErrUnsupported
}

// OpenStat returns ErrUnsupported.
func OpenStat(path string, want fsys.Identity) (*os.File, fsys.Stat, error) {
	return nil, fsys.Stat{}, ErrUnsupported
}

// Recheck returns ErrUnsupported.
func Recheck(f *os.File, want fsys.Identity) (fsys.Stat, error) {
	return fsys.Stat{}, ErrUnsupported
}

// IdentityOf returns ErrUnsupported.
func IdentityOf(path string) (fsys.Identity, error) { return fsys.Identity{}, ErrUnsupported }

// Range reports every destination as failed with ErrUnsupported.
func Range(ctx context.Context, src *os.File, srcOff, length int64, dsts []Dest, chunk int64) []Outcome {
	out := make([]Outcome, len(dsts))
	for i := range out {
		out[i] = Outcome{Status: Failed, Err: ErrUnsupported}
	}
	return out
}

// ErrnoName returns "".
func ErrnoName(err error) string { return "" }

// Rewrite is not available on this platform.
func Rewrite(ctx context.Context, f *os.File, path string, at *os.File, atPath string, spans []Span, chunk int64) (int64, int64, error) {
	return 0, 0, ErrUnsupported
}

// Explain returns errno.
func Explain(errno syscall.Errno) error { return errno }
