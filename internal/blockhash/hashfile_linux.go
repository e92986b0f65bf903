package blockhash

import (
	"context"
	"errors"
	"io"
	"os"

	"same/internal/fsys"

	"golang.org/x/sys/unix"
)

// Data regions from aheadMin bytes up are read in windows of aheadWindow
// bytes, each asked of the kernel (fsys.WillNeed, which does not wait)
// before the one before it is hashed, so that the disk reads a window
// while the CPU hashes the other, in large requests.
// Every region is read into the Reader's buffer (1 MiB) and hashed there.
// Hashing the pages where they lie in the page cache (mmap) spares the
// kernel's copy, but each page's first touch then costs a TLB miss and
// the mapping's set-up and tear-down: on the virtual machines measured
// (docs/BENCHMARKS.md, "hashfile"), cached data hashed at 1.3 to 1.5 GB/s
// mapped and 2.3 to 2.7 GB/s read.
const (
	aheadMin    = 1 << 20
	aheadWindow = 16 << 20
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
// ctx is checked between reads of the Reader's buffer, and h.Progress, if
// set, is told of every read. A file that shrinks
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
		win := int64(max(aheadWindow/h.bs, 1) * h.bs)
		ahead := end-done >= aheadMin
		if ahead {
			fsys.WillNeed(fd, done, min(win, end-done))
		}
		for next := done; done < end; {
			if err := ctx.Err(); err != nil {
				return trimZero(sums, base), done, err
			}
			if ahead && done >= next {
				// The window after the one about to be hashed.
				if next = min(done+win, end); next < end {
					fsys.WillNeed(fd, next, min(win, end-next))
				}
			}
			n := min(int64(len(h.buf)), end-done)
			var err error
			sums, err = h.sumRead(f, done, n, sums)
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

// ErrShrunk says a file became shorter while it was hashed.
var ErrShrunk = errors.New("file shrank while being read")
