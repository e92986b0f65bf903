package sumtab

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directBuf is the size of the writes a direct writer makes: a multiple
// of any device's logical block.
const directBuf = 1 << 20

// directAlign is the alignment of a direct write's offset and length;
// the tail of the file is written without O_DIRECT.
const directAlign = 4096

// direct writes a file in whole aligned writes that bypass the page
// cache (O_DIRECT) once it has written directAfter bytes, where the
// filesystem allows it. A table is written once and read whole on a
// later run, if at all: at 400 million blocks it is 6 GB, and written
// through the page cache it cost findsame more system time than
// anything else (on a virtual machine, a second or two a gigabyte,
// against a tenth written directly), while pushing out of the cache the
// index findsame reads. A small table (a night's delta, a small host's)
// goes through the cache, where writing it costs no wait for the disk.
// Where O_DIRECT is refused (some network and FUSE filesystems), it
// writes through the page cache.
type direct struct {
	f       *os.File
	buf     []byte // aligned, directBuf long; filled to n
	n       int
	written int64 // bytes written, a multiple of directBuf until Flush
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
	d := &direct{f: f, buf: aligned(directBuf)}
	d.maybeDirect()
	return d
}

// maybeDirect sets O_DIRECT once directAfter bytes are written, unless
// it was refused.
func (d *direct) maybeDirect() {
	if !d.on && !d.refused && d.written >= directAfter {
		d.on = d.setDirect(true) == nil
		d.refused = !d.on
	}
}

// setDirect sets or clears O_DIRECT on the file.
func (d *direct) setDirect(on bool) error {
	fd := int(d.f.Fd())
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl)
	return err
}

func (d *direct) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	total := len(p)
	for len(p) > 0 {
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == len(d.buf) {
			d.maybeDirect()
			if d.write(d.buf); d.err != nil {
				return total - len(p), d.err
			}
			d.n = 0
		}
	}
	return total, nil
}

func (d *direct) WriteString(s string) (int, error) { return d.Write([]byte(s)) }

// write writes b, whose length is a multiple of directAlign unless
// O_DIRECT is off: directly if the filesystem takes it, else (EINVAL,
// as from a filesystem that took the flag but not the write) through
// the page cache from where the direct write stopped.
func (d *direct) write(b []byte) {
	n, err := writeFile(d.f, b)
	if err != nil && d.on && errors.Is(err, unix.EINVAL) {
		if d.err = d.setDirect(false); d.err != nil {
			return
		}
		d.on, d.refused = false, true
		var m int
		m, err = writeFile(d.f, b[n:])
		n += m
	}
	d.written += int64(n)
	d.err = err
}

// Flush writes what is buffered: its whole aligned blocks directly, the
// rest through the page cache. Nothing may be written after it.
func (d *direct) Flush() error {
	if d.err != nil {
		return d.err
	}
	if d.on {
		if whole := d.n / directAlign * directAlign; whole > 0 {
			if d.write(d.buf[:whole]); d.err != nil {
				return d.err
			}
			d.n = copy(d.buf, d.buf[whole:d.n])
		}
		if d.n > 0 {
			if d.err = d.setDirect(false); d.err != nil {
				return d.err
			}
			d.on = false
		}
	}
	if d.n > 0 {
		d.write(d.buf[:d.n])
		d.n = 0
	}
	return d.err
}
