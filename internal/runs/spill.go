package runs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// buckets is a numbered set of lists of words, written in any order and
// read back one list at a time: the partitions of the pairs between the
// scan and grouping, and of the mappings between grouping and chaining.
// Each list is a temporary file under a directory, removed as soon as it
// is created so that nothing is left behind however the process ends
// (an interrupt, a kill); or, for a set of one list that fits in memory,
// a slice.
type buckets struct {
	dir   string
	files []*os.File
	per   int       // entries each list holds before they are written
	bufs  [][]words // entries not written yet, per list
	n     []int64   // entries per list
	mem   []words   // the one list, when held in memory
}

// bucketBufs is the memory all lists of a set hold before they are
// written, at most; each holds from 4 to 32 KiB.
const bucketBufs = 8 << 20

// newBuckets makes n lists of temporary files in dir.
func newBuckets(dir string, n int) (*buckets, error) {
	per := max(256, min(2048, bucketBufs/16/n))
	b := &buckets{dir: dir, files: make([]*os.File, n), per: per, bufs: make([][]words, n), n: make([]int64, n)}
	for k := range n {
		f, err := os.CreateTemp(dir, ".findsame-*.tmp")
		if err != nil {
			b.close()
			return nil, fmt.Errorf("create a temporary file in %s: %w", dir, err)
		}
		b.files[k] = f
		if err := os.Remove(f.Name()); err != nil {
			b.close()
			return nil, fmt.Errorf("create a temporary file in %s: %w", dir, err)
		}
	}
	return b, nil
}

// memBuckets makes one list held in memory, with room for n entries.
func memBuckets(n int64) *buckets {
	return &buckets{mem: make([]words, 0, n), n: make([]int64, 1)}
}

func (b *buckets) len() int { return len(b.n) }

// add appends x to list k.
func (b *buckets) add(k int, x words) error {
	b.n[k]++
	if b.files == nil {
		b.mem = append(b.mem, x)
		return nil
	}
	if b.bufs[k] == nil {
		b.bufs[k] = make([]words, 0, b.per)
	}
	b.bufs[k] = append(b.bufs[k], x)
	if len(b.bufs[k]) == b.per {
		return b.flush(k)
	}
	return nil
}

func (b *buckets) flush(k int) error {
	if len(b.bufs[k]) == 0 {
		return nil
	}
	if _, err := b.files[k].Write(bytesOf(b.bufs[k])); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("write a temporary file in %s: %w: the sums and mappings that do not fit in -mem take up to 16 bytes a block there; free some space, or give -tmpdir another directory, or a larger -mem", b.dir, syscall.ENOSPC)
		}
		return fmt.Errorf("write a temporary file in %s: %w", b.dir, err)
	}
	b.bufs[k] = b.bufs[k][:0]
	return nil
}

// done writes what the lists hold in memory and frees their buffers.
func (b *buckets) done() error {
	for k := range b.bufs {
		if err := b.flush(k); err != nil {
			return err
		}
		b.bufs[k] = nil
	}
	return nil
}

// read returns list k, read into buf (grown if it is too small), and
// drops the list from disk. For a list in memory, it returns that.
func (b *buckets) read(k int, buf []words) ([]words, error) {
	if b.files == nil {
		m := b.mem
		b.mem = nil
		return m, nil
	}
	n := int(b.n[k])
	if cap(buf) < n {
		buf = make([]words, n)
	}
	buf = buf[:n]
	if _, err := b.files[k].ReadAt(bytesOf(buf), 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read temporary file: %w", err)
	}
	b.files[k].Close()
	b.files[k] = nil
	return buf, nil
}

// scan calls fn with the entries of list k, a part at a time, without
// holding them all: for a list larger than memory allows.
func (b *buckets) scan(k int, buf []words, fn func([]words) error) error {
	buf = buf[:cap(buf)]
	for off := int64(0); off < b.n[k]; {
		n := min(int64(len(buf)), b.n[k]-off)
		part := buf[:n]
		if _, err := b.files[k].ReadAt(bytesOf(part), off*int64(unsafe.Sizeof(words{}))); err != nil && err != io.EOF {
			return fmt.Errorf("read temporary file: %w", err)
		}
		if err := fn(part); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// each calls fn with the entries of list k, a part at a time (all at once
// for a list in memory), leaving the list as it is.
func (b *buckets) each(k int, buf []words, fn func([]words) error) error {
	if b.files == nil {
		return fn(b.mem)
	}
	return b.scan(k, buf, fn)
}

// close removes what is left of the lists.
func (b *buckets) close() {
	for _, f := range b.files {
		if f != nil {
			f.Close()
		}
	}
	b.files, b.bufs, b.mem = nil, nil, nil
}

// bytesOf is the memory of s, as it is written to and read from files of
// this process alone (in the machine's byte order).
func bytesOf(s []words) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(words{})))
}
