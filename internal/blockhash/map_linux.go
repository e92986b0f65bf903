package blockhash

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime/debug"

	"same/internal/fsys"

	"golang.org/x/sys/unix"
)

// Data regions from mapMin bytes up are hashed through mmap, in windows of
// mapWindow bytes: the pages are hashed where they lie in the page cache,
// not copied into a buffer first, and the next window is read ahead
// (willNeed) while one is hashed. Smaller ones are read, which costs less
// than setting up a mapping.
const (
	mapMin    = 1 << 20
	mapWindow = 16 << 20
)

// Files of at most readWhole bytes are read whole, without looking for
// holes first: on many small files the two seeks that find a file's data
// cost more than reading the zeros of the rare hole in one (the kernel
// fills a hole's pages without reading the disk).
const readWhole = 64 << 10

// HashFile hashes the first size bytes of f, which the caller has just
// fstat'ed, and appends their Sums to sums. It returns the appended slice
// and the number of bytes covered, size when it is done.
//
// Holes, found with SEEK_DATA and SEEK_HOLE, are not read: their blocks are
// zero (files of at most readWhole bytes are read whole, holes and all).
// Zero blocks at the end of the file, holes or written zeros, are not
// appended: the Sums stop at the last block that is not zero, and the
// blocks after it are zero. So a sparse file costs what its data costs,
// whatever its size, up to its last data block; a hole before that costs
// SumSize bytes a block.
//
// ctx is checked between windows of at most mapWindow bytes, and
// h.Progress, if set, is told of every window done. A file that shrinks
// under it gives ErrShrunk; a file that grows is hashed up to size, so the
// caller's second fstat is what tells it changed.
func (h *Reader) HashFile(ctx context.Context, f *os.File, size int64, sums []byte) ([]byte, int64, error) {
	base := len(sums)
	bs := int64(h.bs)
	fd := int(f.Fd())
	var done, zeros int64 // bytes covered; zero blocks not appended yet
	hashed := func(read, skipped int64) {
		done += read + skipped
		if h.Progress != nil {
			h.Progress(read, skipped)
		}
	}
	canMap := true
	for done < size {
		if err := ctx.Err(); err != nil {
			return trimZero(sums, base), done, err
		}
		start, end := done, size
		if size > readWhole {
			start, end = dataAfter(fd, done, size)
		}
		// Whole blocks of hole are zero blocks; a block partly data is
		// hashed with its data.
		if skip := (start - done) / bs * bs; skip > 0 {
			zeros += skip / bs
			hashed(0, skip)
			continue
		}
		end = min((end+bs-1)/bs*bs, size)
		sums = appendZero(sums, zeros, int((end-done+bs-1)/bs)*SumSize)
		zeros = 0
		for done < end {
			if err := ctx.Err(); err != nil {
				return trimZero(sums, base), done, err
			}
			var n int64
			var err error
			if canMap && end-done >= mapMin {
				win := int64(max(mapWindow/h.bs, 1) * h.bs)
				n = min(win, end-done)
				if done == start {
					willNeed(fd, done, n)
				}
				if next := done + n; next < end {
					willNeed(fd, next, min(win, end-next))
				}
				sums, err = h.sumWindow(f, done, n, sums)
				if errors.Is(err, errNoMap) {
					canMap = false // not mappable (some filesystems): read it
					continue
				}
			} else {
				n = min(int64(len(h.buf)), end-done)
				sums, err = h.sumRead(f, done, n, sums)
			}
			if err != nil {
				return trimZero(sums, base), done, err
			}
			hashed(n, 0)
		}
	}
	return trimZero(sums, base), done, nil
}

// dataAfter returns the first data region of fd at or after off, cut at
// size: [size, size) when the rest is a hole. Where SEEK_DATA is not
// supported the rest is data.
func dataAfter(fd int, off, size int64) (start, end int64) {
	start, err := unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO): // nothing but hole up to EOF
		return size, size
	case err != nil:
		return off, size
	case start >= size:
		return size, size
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil || end > size {
		end = size
	}
	return start, end
}

// willNeed asks the kernel to read n bytes of fd at off into the page
// cache (fsys.WillNeed), and returns without waiting. HashFile asks for
// the next window before it maps the current one: the disk reads the next
// window while this one is hashed, rather than the two taking turns, and a
// window comes in large requests, not as MAP_POPULATE's faults read it
// around one page at a time.
func willNeed(fd int, off, n int64) { fsys.WillNeed(fd, off, n) }

// errNoMap says a window could not be mapped.
var errNoMap = errors.New("cannot map")

// sumWindow appends the Sums of the n bytes of f at off, through mmap.
func (h *Reader) sumWindow(f *os.File, off, n int64, sums []byte) ([]byte, error) {
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return sums, errNoMap
	}
	sums, err = h.sumMapped(m, sums)
	if uerr := unix.Munmap(m); err == nil && uerr != nil {
		err = &os.PathError{Op: "munmap", Path: f.Name(), Err: uerr}
	}
	return sums, err
}

// sumRead appends the Sums of the n bytes of f at off, read into h.buf.
func (h *Reader) sumRead(f *os.File, off, n int64, sums []byte) ([]byte, error) {
	b := h.buf[:n]
	got, err := f.ReadAt(b, off)
	if got < len(b) {
		if err == nil || err == io.EOF {
			err = ErrShrunk
		}
		return sums, err
	}
	return h.sum(b, sums), nil
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
