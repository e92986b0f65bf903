//go:build linux

package corpus

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
)

// fillBlock fills b, at most BlockSize bytes, with the start of block idx
// of stream seed.
func fillBlock(b []byte, seed, idx uint64) {
	var p rand.PCG
	p.Seed(seed, splitmix(idx))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], p.Uint64())
	}
	if i < len(b) {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], p.Uint64())
		copy(b[i:], tail[:])
	}
}

// splitmix scrambles a block index so that neighbouring blocks start
// their generators from unrelated states.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// writer writes one file at a time through a buffer, with plain write(2)
// calls only: never copy_file_range or a reflink, which would share
// storage between the copies that are meant to be deduplicated.
type writer struct {
	f   *os.File
	buf []byte
	off int64 // file offset after what is buffered
	err error
}

func newWriter() *writer {
	return &writer{buf: make([]byte, 0, 1<<20)}
}

func (w *writer) create(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w.f, w.buf, w.off, w.err = f, w.buf[:0], 0, nil
	return nil
}

// data appends n bytes of stream seed, from the start of block first.
func (w *writer) data(seed uint64, first, n int64) {
	for b := first; n > 0; b++ {
		k := int(min(n, BlockSize))
		if len(w.buf)+k > cap(w.buf) {
			w.flush()
		}
		l := len(w.buf)
		w.buf = w.buf[:l+k]
		fillBlock(w.buf[l:], seed, uint64(b))
		w.off += int64(k)
		n -= int64(k)
	}
}

// zeros appends n explicit zero bytes.
func (w *writer) zeros(n int64) {
	for n > 0 {
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
		k := min(n, int64(cap(w.buf)-len(w.buf)))
		l := len(w.buf)
		w.buf = w.buf[:l+int(k)]
		clear(w.buf[l:])
		w.off += k
		n -= k
	}
}

// hole skips n bytes, leaving a hole.
func (w *writer) hole(n int64) {
	w.flush()
	if w.err == nil {
		_, w.err = w.f.Seek(n, io.SeekCurrent)
	}
	w.off += n
}

func (w *writer) flush() {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

// close flushes the buffer, extends the file over a trailing hole and
// closes it, returning the first error.
func (w *writer) close() error {
	w.flush()
	if w.err == nil {
		w.err = w.f.Truncate(w.off)
	}
	if err := w.f.Close(); w.err == nil {
		w.err = err
	}
	w.f = nil
	return w.err
}
