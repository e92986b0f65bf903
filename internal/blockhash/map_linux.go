package blockhash

import (
	"errors"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// Files from mapMin bytes up are hashed through mmap, in windows of
// mapWindow bytes: the pages are hashed where they lie in the page cache,
// not copied into a buffer first. Smaller files are read, which costs less
// than setting up a mapping.
const (
	mapMin    = 1 << 20
	mapWindow = 16 << 20
)

// HashFile hashes the first size bytes of f, which the caller has just
// fstat'ed, and appends their Sums to sums. It returns the appended slice
// and the number of bytes hashed. A file that shrinks under it gives
// ErrShrunk; a file that grows is hashed up to size, so the caller's
// second fstat is what tells it changed.
func (h *Reader) HashFile(f *os.File, size int64, sums []byte) ([]byte, int64, error) {
	if size < mapMin {
		return h.Hash(f, sums)
	}
	window := int64(max(mapWindow/h.bs, 1) * h.bs)
	var total int64
	for total < size {
		n := min(window, size-total)
		m, err := unix.Mmap(int(f.Fd()), total, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			if total == 0 {
				// Not mappable (some filesystems, some special files):
				// read it.
				return h.Hash(f, sums)
			}
			return sums, total, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
		}
		sums, err = h.sumMapped(m, sums)
		if uerr := unix.Munmap(m); err == nil && uerr != nil {
			err = &os.PathError{Op: "munmap", Path: f.Name(), Err: uerr}
		}
		if err != nil {
			return sums, total, err
		}
		total += n
	}
	return sums, total, nil
}

// sumMapped appends the Sums of m's blocks. A page past the end of a file
// truncated meanwhile raises SIGBUS; with the goroutine set to panic on
// faults, that panic is recovered here and reported as ErrShrunk.
func (h *Reader) sumMapped(m []byte, sums []byte) (out []byte, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			out, err = sums, ErrShrunk
		}
	}()
	return h.sum(m, sums), nil
}

// ErrShrunk says a file became shorter while it was hashed.
var ErrShrunk = errors.New("file shrank while being read")
