package fsys

import (
	"testing"

	"golang.org/x/sys/unix"
)

// WithoutCachestat makes Cached find no cachestat(2), as on kernels
// before 6.5, until t ends.
func WithoutCachestat(t testing.TB) {
	old := cachestat
	cachestat = func(uint, *unix.CachestatRange, *unix.Cachestat_t, uint) error { return unix.ENOSYS }
	t.Cleanup(func() { cachestat = old })
}
