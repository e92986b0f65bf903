package runs

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"same/internal/fstype"
)

// buckets is a numbered set of lists of words, written in any order and
// read back one list at a time: the partitions of the pairs between the
// scan and grouping, and of the mappings between grouping and chaining.
// Each list is a temporary file under a directory, removed as soon as it
// is created so that nothing is left behind however the process ends
// (an interrupt, a kill); or, for a set of one list that fits in memory,
// a slice.
//
// A set of packed lists holds pairs (a sum and its location) in fewer
// bytes than their 16: the sum whole, the location as a step from the
// list's location before (see putPacked), about 9 to 10 bytes a pair
// where the scan writes them. The partitions of the sums, the largest
// of the temporary files, are packed; the mappings are not (their
// locations come in no order that steps would shorten).
type buckets struct {
	dir     string
	files   []*os.File
	per     int       // entries each list holds before they are written
	bufs    [][]words // entries not written yet, per list
	n       []int64   // entries per list
	written []int64   // bytes written per list
	use     *tempUse  // what all sets of lists hold on disk
	mem     []words   // the one list, when held in memory
	packed  bool
	packs   []packList
	chunk   []byte // packed bytes read back, a part at a time
}

// tempUse counts the bytes that sets of lists hold in temporary files:
// now, and at most.
type tempUse struct{ now, peak int64 }

func (u *tempUse) add(n int64) {
	if u != nil {
		u.now += n
		u.peak = max(u.peak, u.now)
	}
}

// packList is what a packed list holds besides its file. Its buffer is
// written into in place (no slice stored back for each pair, which
// would cost the collector's write barrier while it runs).
type packList struct {
	buf   []byte // pairs not written yet: buf[:n]
	n     int
	count int64 // pairs in buf
	last  loc   // the location of the last pair
	start loc   // the location before buf's first pair
	marks []packMark
}

// packMark is a place in a packed list from which it can be read: one
// about every markEvery bytes, so that two cores can read halves.
type packMark struct {
	off, before int64 // bytes and pairs before it
	prev        loc   // the location of the pair before it
}

var markEvery int64 = 1 << 20 // a variable for tests

// bucketBufs is the memory all lists of a set hold before they are
// written, at most; each holds from 4 to 32 KiB.
const bucketBufs = 8 << 20

// newBuckets makes n lists of temporary files in dir, counting what they
// hold in use.
func newBuckets(dir string, n int, use *tempUse) (*buckets, error) {
	per := max(256, min(2048, bucketBufs/16/n))
	b := &buckets{dir: dir, files: make([]*os.File, n), per: per, bufs: make([][]words, n), n: make([]int64, n),
		written: make([]int64, n), use: use}
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

// newPacked makes n packed lists of pairs in temporary files in dir.
func newPacked(dir string, n int, use *tempUse) (*buckets, error) {
	b, err := newBuckets(dir, n, use)
	if err != nil {
		return nil, err
	}
	b.packed, b.packs, b.chunk = true, make([]packList, n), make([]byte, packedChunk)
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
	if b.packed {
		l := &b.packs[k]
		if l.buf == nil {
			l.buf = make([]byte, b.per*16)
		}
		if l.n == 0 {
			l.start = l.last
		}
		l.count++
		if d := x.lo - uint64(l.last); x.lo >= uint64(l.last) && d < 64 {
			// The most common step, a few blocks on along the file: a
			// byte, written here rather than by putPacked.
			binary.LittleEndian.PutUint64(l.buf[l.n:], x.hi)
			l.buf[l.n+8] = byte(d << 1)
			l.n += 9
			l.last = loc(x.lo)
		} else {
			l.n = putPacked(l.buf, l.n, &l.last, x)
		}
		if l.n > len(l.buf)-maxPacked {
			return b.flush(k)
		}
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
	p := bytesOf(b.bufs[k])
	if b.packed {
		l := &b.packs[k]
		p = l.buf[:l.n]
		if m := len(l.marks); l.n > 0 && (m == 0 || b.written[k]-l.marks[m-1].off >= markEvery) {
			l.marks = append(l.marks, packMark{off: b.written[k], before: b.n[k] - l.count, prev: l.start})
		}
		l.n, l.count = 0, 0
	}
	if len(p) == 0 {
		return nil
	}
	if _, err := b.files[k].Write(p); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("write a temporary file in %s: %w: the sums and mappings that do not fit in -mem take up to 16 bytes a block there; free some space, or give -tmpdir another directory, or a larger -mem", b.dir, syscall.ENOSPC)
		}
		return fmt.Errorf("write a temporary file in %s: %w", b.dir, err)
	}
	b.bufs[k] = b.bufs[k][:0]
	b.written[k] += int64(len(p))
	b.use.add(int64(len(p)))
	return nil
}

// done writes what the lists hold in memory and frees their buffers.
func (b *buckets) done() error {
	for k := range b.bufs {
		if err := b.flush(k); err != nil {
			return err
		}
		b.bufs[k] = nil
		if b.packed {
			b.packs[k].buf = nil
		}
	}
	return nil
}

// read returns list k, read into buf (grown if it is too small), and
// drops the list from disk. For a list in memory, it returns that.
func (b *buckets) read(k int, buf []words) ([]words, error) {
	ws, err := b.whole(k, buf)
	if err != nil {
		return nil, err
	}
	if b.files == nil {
		b.mem = nil
	} else {
		b.drop(k)
	}
	return ws, nil
}

// whole returns list k, read into buf (grown if it is too small), leaving
// the list as it is. For a list in memory, it returns that.
func (b *buckets) whole(k int, buf []words) ([]words, error) {
	if b.files == nil {
		return b.mem, nil
	}
	n := int(b.n[k])
	if cap(buf) < n {
		buf = make([]words, n)
	}
	buf = buf[:n]
	if b.packed {
		if err := b.unpackAll(k, buf); err != nil {
			return nil, err
		}
	} else if _, err := b.files[k].ReadAt(bytesOf(buf), 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read temporary file: %w", err)
	}
	return buf, nil
}

// sortedMappings returns list k of mappings, read into buf (grown if it
// is too small) and sorted by destination, then source (sortMappings),
// and leaves the list so sorted where it can, so that read returns it
// sorted and its sort costs a look (see radixSort). One sort of a whole
// list costs less than sorting it a part at a time and then whole: 14.3
// million mappings of a night with hourly snapshots took 0.81 s in parts
// of 65,536 and 0.30 s whole. Not for packed lists.
//
// On disk the sorted list is written over the list, where the
// filesystem writes data in place (ext4, XFS, tmpfs): there, writing
// over what was just written needs no room. A filesystem that copies on
// write (btrfs) may need room for a second copy, which a full disk does
// not have, and a write cut short would leave the list neither sorted nor
// whole: there the list is left as it was, and its reader sorts it.
// Written into a file of its own instead, which then replaced the list,
// the hourly night's findsame took 0.3 s more than written over it.
func (b *buckets) sortedMappings(k int, buf []words) ([]mapping, error) {
	ws, err := b.whole(k, buf)
	if err != nil {
		return nil, err
	}
	maps := mappingsOf(ws)
	sortMappings(maps)
	if b.files == nil || !writesInPlace(b.files[k]) {
		return maps, nil
	}
	if _, err := b.files[k].WriteAt(bytesOf(ws), 0); err != nil {
		return nil, fmt.Errorf("write a temporary file in %s: %w", b.dir, err)
	}
	return maps, nil
}

// writesInPlace reports whether f's filesystem writes over a file's data
// in place, without room of its own (a variable for tests).
var writesInPlace = func(f *os.File) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return false
	}
	switch int64(st.Type) {
	case fstype.Ext4, fstype.XFS, fstype.Tmpfs, fstype.Ramfs:
		return true
	}
	return false
}

// scan calls fn with the entries of list k, a part at a time, without
// holding them all: for a list larger than memory allows.
func (b *buckets) scan(k int, buf []words, fn func([]words) error) error {
	buf = buf[:cap(buf)]
	if b.packed {
		return b.unpack(k, buf, fn)
	}
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

// drop removes list k from disk.
func (b *buckets) drop(k int) {
	b.files[k].Close()
	b.files[k] = nil
	b.use.add(-b.written[k])
	b.written[k] = 0
}

// close removes what is left of the lists.
func (b *buckets) close() {
	for k, f := range b.files {
		if f != nil {
			b.drop(k)
		}
	}
	b.files, b.bufs, b.mem, b.packs, b.chunk = nil, nil, nil, nil, nil
}

// maxPacked is the most bytes one packed pair takes: the sum, and two
// varints of at most 34 bits.
const maxPacked = 8 + 5 + 5

// putPacked writes pair x (sum, location) into p at n, packed, and
// returns where it ends (p must have room for maxPacked bytes): the sum's
// 8 bytes, then the location as a step from *last, the location before
// it, which it sets to x's, as varints. A step on along the same file is
// the number of blocks shifted left by one: a byte for fewer than 64
// blocks, two for fewer than 8,192. Any other step (to another file, or
// back) is the difference of the files, zigzagged, shifted left and with
// the low bit set, then the block: a byte or two each for most files.
func putPacked(p []byte, n int, last *loc, x words) int {
	binary.LittleEndian.PutUint64(p[n:], x.hi)
	n += 8
	at, prev := loc(x.lo), *last
	*last = at
	if at.file() == prev.file() && at >= prev {
		return n + binary.PutUvarint(p[n:], uint64(at-prev)<<1)
	}
	n += binary.PutUvarint(p[n:], zigzag(int64(at.file())-int64(prev.file()))<<1|1)
	return n + binary.PutUvarint(p[n:], uint64(at.block()))
}

// readPacked reads one pair packed by putPacked from p, given the
// location before it; it returns the pair and the bytes it took, or 0
// for a pair cut short or too large.
func readPacked(p []byte, last loc) (words, int) {
	if len(p) < 9 {
		return words{}, 0
	}
	x := words{hi: binary.LittleEndian.Uint64(p)}
	v, n := binary.Uvarint(p[8:])
	if n <= 0 {
		return words{}, 0
	}
	if v&1 == 0 {
		x.lo = uint64(last) + v>>1
		return x, 8 + n
	}
	w, m := binary.Uvarint(p[8+n:])
	if m <= 0 {
		return words{}, 0
	}
	x.lo = uint64(mkloc(last.file()+int(unzigzag(v>>1)), int64(w)))
	return x, 8 + n + m
}

func zigzag(d int64) uint64   { return uint64(d<<1) ^ uint64(d>>63) }
func unzigzag(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

// packedChunk is how many packed bytes are read back at a time.
const packedChunk = 1 << 20

// unpack calls fn with the pairs of packed list k, decoded into buf
// len(buf) at a time (the last part shorter).
func (b *buckets) unpack(k int, buf []words, fn func([]words) error) error {
	return unpackRange(b.files[k], 0, b.written[k], b.n[k], 0, b.chunk, buf, fn)
}

// unpackAll decodes packed list k into buf, which holds as many pairs:
// its halves on two cores, from the mark nearest its middle.
func (b *buckets) unpackAll(k int, buf []words) error {
	marks, size := b.packs[k].marks, b.written[k]
	none := func([]words) error { return nil }
	i, _ := slices.BinarySearchFunc(marks, size/2, func(m packMark, off int64) int { return cmp.Compare(m.off, off) })
	i = min(i, len(marks)-1)
	if i <= 0 || runtime.GOMAXPROCS(0) < 2 {
		return b.unpack(k, buf, none)
	}
	m, f := marks[i], b.files[k]
	var second error
	var wg sync.WaitGroup
	wg.Go(func() {
		second = unpackRange(f, m.off, size-m.off, int64(len(buf))-m.before, m.prev, make([]byte, packedChunk), buf[m.before:], none)
	})
	first := unpackRange(f, 0, m.off, m.before, 0, b.chunk, buf[:m.before], none)
	wg.Wait()
	return cmp.Or(first, second)
}

// unpackRange calls fn with the count pairs packed in the size bytes of
// f from start, the first a step from prev, decoded into buf len(buf) at a
// time (the last part shorter), reading chunk's length at a time.
func unpackRange(f *os.File, start, size, count int64, prev loc, chunk []byte, buf []words, fn func([]words) error) error {
	if count == 0 {
		return nil
	}
	if len(buf) == 0 {
		return errors.New("unpack a temporary file: no room")
	}
	var off int64          // bytes of the range read
	have, at, n := 0, 0, 0 // bytes in chunk; the first not decoded; pairs in buf
	for left := count; left > 0; {
		if have-at < maxPacked && off < size { // a pair may lie across the chunk's end
			have = copy(chunk, chunk[at:have])
			at = 0
			m, err := f.ReadAt(chunk[have:min(int64(len(chunk)), int64(have)+size-off)], start+off)
			if err != nil && err != io.EOF {
				return fmt.Errorf("read temporary file: %w", err)
			}
			if m == 0 {
				return fmt.Errorf("read temporary file: %d bytes missing of %d", size-off, size)
			}
			have += m
			off += int64(m)
		}
		// Decode what the chunk holds whole, without looking at the file.
		stop := have - maxPacked // the last byte a pair may start at
		if off == size {
			stop = have - 1
		}
		for left > 0 && at <= stop {
			var x words
			p := chunk[at:have]
			// Steps on along the file of one byte and of two, read here.
			if len(p) >= 10 && p[8]&0x81 == 0 {
				prev += loc(p[8] >> 1)
				x = words{binary.LittleEndian.Uint64(p), uint64(prev)}
				at += 9
			} else if len(p) >= 10 && p[8]&0x81 == 0x80 && p[9] < 0x80 {
				prev += loc((uint64(p[8]&0x7f) | uint64(p[9])<<7) >> 1)
				x = words{binary.LittleEndian.Uint64(p), uint64(prev)}
				at += 10
			} else {
				var w int
				if x, w = readPacked(p, prev); w == 0 {
					return fmt.Errorf("read temporary file: a pair cut short at byte %d of %d", off-int64(have-at), size)
				}
				at += w
				prev = loc(x.lo)
			}
			buf[n] = x
			n++
			left--
			if n == len(buf) {
				if err := fn(buf); err != nil {
					return err
				}
				n = 0
			}
		}
		if left > 0 && off == size && at >= have {
			return fmt.Errorf("read temporary file: %d pairs missing of %d", left, count)
		}
	}
	if n > 0 {
		return fn(buf[:n])
	}
	return nil
}

// bytesOf is the memory of s, as it is written to and read from files of
// this process alone (in the machine's byte order).
func bytesOf(s []words) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(words{})))
}
