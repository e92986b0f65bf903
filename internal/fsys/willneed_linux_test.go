//go:build linux

package fsys_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
)

// mappedFile writes size random bytes to a new file, syncs them, and
// returns the file open with a mapping of it that touches no page.
func mappedFile(t *testing.T, size int) (*os.File, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Fsync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return f, m
}

// resident counts the pages of m[off:off+n] in the page cache, as
// mincore(2) sees them.
func resident(t *testing.T, m []byte, off, n int) int64 {
	t.Helper()
	vec := make([]byte, n/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[off])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	var c int64
	for _, v := range vec {
		c += int64(v & 1)
	}
	return c
}

// WillNeed reads the whole range ahead, not only the first read-ahead
// window of it, which is all one POSIX_FADV_WILLNEED of a large range
// reads: of a 32 MiB file dropped from the page cache, every page is
// cached again without being read.
func TestWillNeed(t *testing.T) {
	const size = 32 << 20
	f, m := mappedFile(t, size)
	fd := int(f.Fd())
	pages := int64(size / os.Getpagesize())
	// Read-ahead is a hint: where memory is short (other tests beside
	// this one), the kernel may skip a page or reclaim one read. Each of
	// three attempts asks for every page; one must get them all, where
	// a single POSIX_FADV_WILLNEED gets an eighth of them or less.
	var got []int64
	for range 3 {
		// Clean pages of the file alone are dropped; a page that stays
		// (the kernel may keep some) only makes the test easier.
		if err := unix.Fadvise(fd, 0, size, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		if r := resident(t, m, 0, size); r == pages {
			t.Skip("the page cache kept the file: nothing to read ahead")
		}
		fsys.WillNeed(fd, 0, size)
		// The reads run on their own; wait for them, not for a time.
		deadline := time.Now().Add(10 * time.Second)
		for resident(t, m, 0, size) < pages && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		r := resident(t, m, 0, size)
		if r == pages {
			return
		}
		got = append(got, r*int64(os.Getpagesize()))
	}
	t.Errorf("after WillNeed of %d bytes, three times, %v bytes were cached", size, got)
}

// Cached counts the pages of a range in the page cache as mincore sees
// them, with cachestat and, as on kernels before 6.5, without; DontNeed
// drops them.
func TestCachedDontNeed(t *testing.T) {
	t.Run("cachestat", testCachedDontNeed)
	t.Run("mincore", func(t *testing.T) {
		fsys.WithoutCachestat(t)
		testCachedDontNeed(t)
	})
}

func testCachedDontNeed(t *testing.T) {
	const size = 8 << 20
	f, m := mappedFile(t, size)
	fd := int(f.Fd())
	page := os.Getpagesize()
	fsys.DontNeed(fd, 0, size)
	if r := resident(t, m, 0, size); r != 0 {
		t.Fatalf("after DontNeed of the whole file, %d pages are cached", r)
	}
	if c, ok := fsys.Cached(fd, 0, size); !ok || c != 0 {
		t.Errorf("Cached of a file dropped from the cache = %d pages, %v; want 0, true", c, ok)
	}
	if _, err := f.ReadAt(make([]byte, 3<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, size}, {0, 1 << 20}, {1 << 20, 3 << 20}, {4 << 20, 4 << 20}, {1<<20 + 4096, 8192}} {
		want := resident(t, m, r[0], r[1])
		if c, ok := fsys.Cached(fd, int64(r[0]), int64(r[1])); c != want || !ok {
			t.Errorf("Cached(%d, %d) = %d pages, %v; mincore sees %d", r[0], r[1], c, ok, want)
		}
	}
	if c, _ := fsys.Cached(fd, 1<<20, 3<<20); c != 3<<20/int64(page) {
		t.Errorf("Cached of the 3 MiB just read = %d pages; want %d", c, 3<<20/page)
	}
	fsys.DontNeed(fd, 1<<20, 3<<20)
	if r := resident(t, m, 1<<20, 3<<20); r != 0 {
		t.Errorf("after DontNeed of the range read, %d of its pages are cached", r)
	}
}
