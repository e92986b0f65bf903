package sumtab

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directBuf is the size of the writes a direct writer makes: a multiple
// of any device's logical block, and few enough writes that waiting for
// them costs little: with 1 MiB writes findsame took 2 to 5 s more user
// time at 400 million blocks, in a memory cgroup more than the direct
// writes saved. A writer holds two.
const directBuf = 4 << 20

// directAlign is the alignment of a direct write's offset and length;
// the tail of the file is written without O_DIRECT.
const directAlign = 4096

// direct writes a file in whole aligned writes that bypass the page
// cache (O_DIRECT) once it has written directAfter bytes, where the
// filesystem allows it, on a goroutine of its own: the disk writes one
// buffer while the next is filled, as the kernel's write-back would have
// it. A table is written once and read whole on a later run, if at all:
// at 400 million blocks it is 6 GB, and written through the page cache
// it cost findsame more system time than anything else on this project's
// virtual machine (a second or two a gigabyte, against a tenth written
// directly), while pushing out of the cache the index findsame reads. A
// small table (a night's delta, a small host's) goes through the cache,
// where writing it makes no one wait for the disk. Where O_DIRECT is
// refused (some network and FUSE filesystems), it writes through the
// page cache.
type direct struct {
	buf    []byte // being filled, aligned, directBuf long; filled to n
	n      int
	todo   chan []byte // buffers to write, in order; the last may be short
	free   chan []byte // buffers written, to fill again
	done   chan struct{}
	failed atomic.Bool // a write failed: the writer says why once done
	closed bool        // todo is closed
	s      *sink       // the goroutine's alone until done is closed
}

// sink is the writing side of a direct writer.
type sink struct {
	f       *os.File
	written int64 // bytes written
	on      bool  // O_DIRECT is set on f
	refused bool  // O_DIRECT was refused: not asked again
	err     error
}

// directAfter is how much of a file a direct writer writes through the
// page cache before it bypasses it (a variable for tests).
var directAfter int64 = 64 << 20

// aligned returns n bytes at an address aligned to directAlign (the
// collector does not move what it allocates).
func aligned(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%directAlign) % directAlign
	return b[skip : skip+n : skip+n]
}

// writeFile writes to a file; tests refuse direct writes through it.
var writeFile = (*os.File).Write

// newDirect starts writing f at its offset 0.
func newDirect(f *os.File) *direct {
	d := &direct{buf: aligned(directBuf), todo: make(chan []byte), free: make(chan []byte, 1),
		done: make(chan struct{}), s: &sink{f: f}}
	d.free <- aligned(directBuf)
	go func() {
		defer close(d.done)
		for b := range d.todo {
			if d.s.err == nil {
				if d.s.put(b); d.s.err != nil {
					d.failed.Store(true)
				}
			}
			if len(b) == directBuf {
				d.free <- b
			}
		}
	}()
	return d
}

func (d *direct) Write(p []byte) (int, error) {
	if d.closed || d.failed.Load() {
		return 0, d.stop()
	}
	total := len(p)
	for len(p) > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == len(d.buf) {
			d.todo <- d.buf
			d.buf, d.n = <-d.free, 0
			if d.failed.Load() {
				return total - len(p), d.stop()
			}
		}
	}
	return total, nil
}

func (d *direct) WriteString(s string) (int, error) { return d.Write([]byte(s)) }

// Flush writes what is buffered, waits for every write, and returns the
// first error. Nothing may be written after it.
func (d *direct) Flush() error {
	if !d.closed && d.n > 0 && !d.failed.Load() {
		d.todo <- d.buf[:d.n]
		d.n = 0
	}
	return d.stop()
}

// stop ends the writes (those handed over are done first) and returns
// the first error. Abandoning a writer, call it to end its goroutine.
func (d *direct) stop() error {
	if !d.closed {
		close(d.todo)
		d.closed = true
	}
	<-d.done
	return d.s.err
}

// put writes b: a whole buffer, directly once directAfter bytes are
// written; or the last part, its whole aligned blocks as the file is
// written, the rest through the page cache.
func (s *sink) put(b []byte) {
	if len(b) == directBuf {
		if !s.on && !s.refused && s.written >= directAfter {
			s.on = s.setDirect(true) == nil
			s.refused = !s.on
		}
		s.write(b)
		return
	}
	if s.on {
		if whole := len(b) / directAlign * directAlign; whole > 0 {
			if s.write(b[:whole]); s.err != nil {
				return
			}
			b = b[whole:]
		}
		if len(b) > 0 {
			if s.err = s.setDirect(false); s.err != nil {
				return
			}
			s.on = false
		}
	}
	if len(b) > 0 {
		s.write(b)
	}
}

// setDirect sets or clears O_DIRECT on the file.
func (s *sink) setDirect(on bool) error {
	fd := s.f.Fd()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
	return err
}

// write writes b, whose length is a multiple of directAlign unless
// O_DIRECT is off: directly if the filesystem takes it, else (EINVAL,
// as from a filesystem that took the flag but not the write) through
// the page cache from where the direct write stopped.
func (s *sink) write(b []byte) {
	n, err := writeFile(s.f, b)
	if err != nil && s.on && errors.Is(err, unix.EINVAL) {
		if s.err = s.setDirect(false); s.err != nil {
			return
		}
		s.on, s.refused = false, true
		var m int
		m, err = writeFile(s.f, b[n:])
		n += m
	}
	s.written += int64(n)
	s.err = err
}
