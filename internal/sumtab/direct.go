package sumtab

import (
	"errors"
	"fmt"
	"io"
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
	// release frees the buffers, once the goroutine is done (nil: done)
	release func()
	s       *sink // the goroutine's alone until done is closed
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

// hugePage is the size of a transparent huge page on x86-64 and arm64
// (with 4 KiB pages).
const hugePage = 2 << 20

// directBufs returns k buffers of directBuf bytes for direct reads or
// writes, aligned to directAlign, and the function that frees them (once
// nothing reads or writes them any more). The kernel pins every page of
// a direct transfer's buffer while it lasts: on 4 KiB pages, reading a
// 3.1 GB table cost 0.11 to 0.18 s of CPU, pinning each page, and 0.03
// to 0.04 s on 2 MiB pages. So the buffers are a mapping of their own,
// aligned to a huge page, asked to be backed by huge pages where the
// kernel allows it; where the mapping is refused, they come from the
// heap.
func directBufs(k int) ([][]byte, func()) {
	bs := make([][]byte, k)
	m, err := unix.Mmap(-1, 0, k*directBuf+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		for i := range bs {
			b := make([]byte, directBuf+directAlign)
			skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%directAlign) % directAlign
			bs[i] = b[skip : skip+directBuf : skip+directBuf]
		}
		return bs, func() {}
	}
	skip := (hugePage - int(uintptr(unsafe.Pointer(unsafe.SliceData(m))))%hugePage) % hugePage
	region := m[skip : skip+k*directBuf]
	_ = unix.Madvise(region, unix.MADV_HUGEPAGE) // a hint: refused, the pages are small
	for i := range bs {
		bs[i] = region[i*directBuf : (i+1)*directBuf : (i+1)*directBuf]
	}
	return bs, func() { _ = unix.Munmap(m) }
}

// writeFile writes to a file; tests refuse direct writes through it.
var writeFile = (*os.File).Write

// newDirect starts writing f at its offset 0.
func newDirect(f *os.File) *direct {
	bs, release := directBufs(2)
	d := &direct{buf: bs[0], todo: make(chan []byte), free: make(chan []byte, 1),
		done: make(chan struct{}), release: release, s: &sink{f: f}}
	d.free <- bs[1]
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
	if d.release != nil {
		d.release()
		d.release, d.buf = nil, nil
	}
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
func (s *sink) setDirect(on bool) error { return setDirect(s.f, on) }

// setDirect sets or clears O_DIRECT on f.
func setDirect(f *os.File, on bool) error {
	fd := f.Fd()
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

// readAhead reads a table's entries past the page cache (O_DIRECT), a
// buffer of directBuf at a time, on a goroutine of its own that reads the
// next buffers while the iterator handles the one before (and verifies
// their checksum, see Iter.fill). A large table is read once a run, whole
// (a re-run's regrouping streams it): written past the page cache (see
// direct), it is read from the disk in any case, and read through the
// cache it costs the filling of the cache, 2.3 s of system time for a
// 3.1 GB table on this project's virtual machine against 0.15 s read
// directly, while pushing out of it the index findsame reads. Where the
// filesystem takes the flag but refuses a direct read, the rest is read
// through the page cache.
type readAhead struct {
	full    chan aheadBuf // buffers read, in order; closed after the last or an error
	free    chan []byte   // buffers to read into
	quit    chan struct{} // closed by stop
	done    chan struct{} // closed when the goroutine ends
	held    []byte        // the buffer the iterator holds, if any
	stopped bool
	release func() // frees the buffers once stopped (nil: freed)
}

// aheadBuf is a buffer of whole entries read, or the error that ended
// the reading.
type aheadBuf struct {
	b   []byte
	err error
}

// aheadBufs is how many buffers a readAhead reads into: the one the
// iterator holds and the ones read ahead.
const aheadBufs = 3

// readAt reads from a file; tests refuse direct reads through it.
var readAt = (*os.File).ReadAt

// openDirect opens the file f is open on again, for reading past the
// page cache: a description of its own, so that f's reads stay as they
// are. Through /proc, the file f names now, whatever its path has
// become.
func openDirect(f *os.File) (*os.File, error) {
	return os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY|unix.O_DIRECT, 0)
}

// startAhead starts reading the n bytes of entries at off, a multiple
// of directAlign, of f, a file opened with O_DIRECT for the readAhead
// alone, which closes it.
func startAhead(f *os.File, off, n int64) *readAhead {
	ra := &readAhead{full: make(chan aheadBuf, aheadBufs), free: make(chan []byte, aheadBufs),
		quit: make(chan struct{}), done: make(chan struct{})}
	bs, release := directBufs(aheadBufs)
	ra.release = release
	for _, b := range bs {
		// Its pages faulted in here: a direct read into pages not yet
		// there, btrfs makes through the page cache.
		for i := 0; i < len(b); i += directAlign {
			b[i] = 0
		}
		ra.free <- b
	}
	go ra.run(f, off, n)
	return ra
}

func (ra *readAhead) run(f *os.File, off, n int64) {
	defer close(ra.done)
	defer f.Close()
	defer close(ra.full)
	direct := true
	for n > 0 {
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.quit:
			return
		}
		k := min(n, directBuf)
		// The last buffer is read to the end of its last block: the
		// bytes after the entries are not theirs.
		err := fill(f, b[:(k+directAlign-1)/directAlign*directAlign], off, int(k), &direct)
		if err != nil {
			err = fmt.Errorf("read table of sums: %w", err)
		}
		n -= k
		off += k
		select {
		case ra.full <- aheadBuf{b[:k], err}:
		case <-ra.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// fill reads into b from off of f, at least need bytes: directly while
// *direct, and through the page cache from the first direct read the
// filesystem refuses (EINVAL), or that stops short of a block's end.
func fill(f *os.File, b []byte, off int64, need int, direct *bool) error {
	got := 0
	for got < need {
		m, err := readAt(f, b[got:], off+int64(got))
		got += m
		switch {
		case err == nil && m == 0:
			return io.ErrUnexpectedEOF
		case err == nil:
		case errors.Is(err, io.EOF):
			if got < need {
				return io.ErrUnexpectedEOF
			}
		case *direct && errors.Is(err, unix.EINVAL):
			if err := setDirect(f, false); err != nil {
				return err
			}
			*direct = false
		default:
			return err
		}
	}
	return nil
}

// next returns the next buffer read; the one returned before is read
// into again.
func (ra *readAhead) next() ([]byte, error) {
	if ra.held != nil {
		ra.free <- ra.held
		ra.held = nil
	}
	ab, ok := <-ra.full
	if !ok {
		return nil, fmt.Errorf("read table of sums: %w", io.ErrUnexpectedEOF)
	}
	ra.held = ab.b
	return ab.b, ab.err
}

// stop ends the reading, waits for the goroutine to end and frees the
// buffers: no buffer it returned may be read after it.
func (ra *readAhead) stop() {
	if !ra.stopped {
		close(ra.quit)
		ra.stopped = true
	}
	<-ra.done
	if ra.release != nil {
		ra.release()
		ra.release, ra.held = nil, nil
	}
}
