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

// WillNeed reads the whole range ahead, not only the first read-ahead
// window of it, which is all one POSIX_FADV_WILLNEED of a large range
// reads: of a 32 MiB file dropped from the page cache, every page is
// cached again without being read.
func TestWillNeed(t *testing.T) {
	const size = 32 << 20
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
	defer f.Close()
	fd := int(f.Fd())
	if err := unix.Fsync(fd); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	resident := func() int {
		t.Helper()
		vec := make([]byte, size/os.Getpagesize())
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
			t.Fatal(errno)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n * os.Getpagesize()
	}
	// Clean pages of the file alone are dropped; a page that stays (the
	// kernel may keep some) only makes the test easier.
	if err := unix.Fadvise(fd, 0, size, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if r := resident(); r == size {
		t.Skip("the page cache kept the file: nothing to read ahead")
	}
	fsys.WillNeed(fd, 0, size)
	// The reads run on their own; wait for them, not for a time.
	deadline := time.Now().Add(30 * time.Second)
	for resident() < size && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := resident(); r < size {
		t.Errorf("after WillNeed of %d bytes, %d are cached", size, r)
	}
}
