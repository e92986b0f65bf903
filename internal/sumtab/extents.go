package sumtab

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"iter"
	"os"

	"same/internal/fiemap"
)

// The extents kept beside a table (at the table's path + ExtentsSuffix) are
// the recorded extents of the files whose extents a run read from the
// index, as of a write sequence number: a re-run takes those of the
// files unchanged since from there, and reads from the index only those
// of the files changed. Reading every extent row through the database
// driver was a quarter of a re-run's CPU time.
//
// # Format of the kept extents
//
// All integers are little-endian.
//
//	magic     8 bytes, "SAMEEXT1"
//	hlen      uint32, then hlen bytes of JSON: the ExtentsHeader
//	refs      a uint64 count n, then n pairs of uint64 words: a file id
//	          and the id of the file whose extents are its
//	files     a uint64 count n, then for each file its id and its count k
//	          of extents (uint64 words), and k extents of 8 int64 words
//	          each: logical, physical, length, flags, disk start, disk
//	          length, generation, offset (see fiemap.Extent)
//	trailer   CRC-32C of all from hlen on uint32, magic "SAMEEND1"
//
// They are written and trusted as the table is: to a file with no name
// until whole, 0600, and only if this user's and written by no other.
const (
	// ExtentsSuffix follows the table's path in that of its kept extents.
	ExtentsSuffix = ".extents"
	extentsMagic  = "SAMEEXT1"
	// ExtentsVersion is the format's version: kept extents of another
	// are not used.
	ExtentsVersion = 1
	extentWords    = 8
)

// ExtentsHeader says what kept extents are as of.
type ExtentsHeader struct {
	Version int `json:"version"`
	// Key names the index they were read from (and its schema).
	Key string `json:"key"`
	// Seq is the index's write sequence number before the files were
	// read: the extents of a file changed after it (index.File.Changed >
	// Seq) may not be those kept.
	Seq int64 `json:"seq"`
}

// Extents are kept extents opened for reading.
type Extents struct {
	ExtentsHeader
	f    *os.File
	size int64
	br   *bufio.Reader
	r    io.Reader // br, summed into crc
	crc  hash.Hash32
}

// OpenExtents opens the kept extents at path and reads their header. A
// missing file gives an error satisfying errors.Is(err, fs.ErrNotExist).
func OpenExtents(path string) (*Extents, error) {
	f, size, err := openOurs(path)
	if err != nil {
		return nil, err
	}
	x := &Extents{f: f, size: size, crc: crc32.New(castagnoli)}
	x.br = bufio.NewReaderSize(f, 1<<20)
	x.r = io.TeeReader(x.br, x.crc)
	bad := func() (*Extents, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrFormat)
	}
	head := make([]byte, len(extentsMagic))
	if _, err := io.ReadFull(x.r, head); err != nil || string(head) != extentsMagic {
		return bad()
	}
	x.crc.Reset() // from hlen on
	var hlen uint32
	if err := binary.Read(x.r, binary.LittleEndian, &hlen); err != nil || int64(hlen) > x.size {
		return bad()
	}
	hj := make([]byte, hlen)
	if _, err := io.ReadFull(x.r, hj); err != nil {
		return bad()
	}
	if err := json.Unmarshal(hj, &x.ExtentsHeader); err != nil || x.Version != ExtentsVersion {
		return bad()
	}
	return x, nil
}

// Close closes the kept extents.
func (x *Extents) Close() error { return x.f.Close() }

// Read calls ref with each file whose extents are another's, then file
// with each file's own extents (es is reused after the call), and
// verifies the checksum at the end: on an error, whatever they were
// given must not be trusted.
func (x *Extents) Read(ref func(file, of int64), file func(id int64, es []fiemap.Extent)) error {
	err := x.read(ref, file)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = ErrFormat
	}
	if err != nil {
		return fmt.Errorf("%s: %w", x.f.Name(), err)
	}
	return nil
}

func (x *Extents) read(ref func(file, of int64), file func(id int64, es []fiemap.Extent)) error {
	var w [2]uint64
	word := func() (uint64, error) {
		err := binary.Read(x.r, binary.LittleEndian, w[:1])
		return w[0], err
	}
	n, err := word()
	if err != nil || n > uint64(x.size)/16 {
		return ErrFormat
	}
	for range n {
		if err := binary.Read(x.r, binary.LittleEndian, w[:]); err != nil {
			return err
		}
		ref(int64(w[0]), int64(w[1]))
	}
	if n, err = word(); err != nil || n > uint64(x.size)/16 {
		return ErrFormat
	}
	var es []fiemap.Extent
	var raw []byte
	for range n {
		if err := binary.Read(x.r, binary.LittleEndian, w[:]); err != nil {
			return err
		}
		id, k := int64(w[0]), w[1]
		if k > uint64(x.size)/(8*extentWords) {
			return ErrFormat
		}
		if size := int(k) * 8 * extentWords; cap(raw) < size {
			raw = make([]byte, size)
		} else {
			raw = raw[:size]
		}
		if _, err := io.ReadFull(x.r, raw); err != nil {
			return err
		}
		es = es[:0]
		for v := raw; len(v) > 0; v = v[8*extentWords:] {
			at := func(i int) int64 { return int64(binary.LittleEndian.Uint64(v[8*i:])) }
			es = append(es, fiemap.Extent{Logical: at(0), Physical: at(1), Length: at(2), Flags: uint32(at(3)),
				DiskStart: at(4), DiskLen: at(5), Gen: at(6), Offset: at(7)})
		}
		file(id, es)
	}
	want := x.crc.Sum32()
	var tr [4 + len(endMagic)]byte
	if _, err := io.ReadFull(x.r, tr[:]); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(tr[:]) != want || string(tr[4:]) != endMagic {
		return ErrFormat
	}
	if _, err := x.br.ReadByte(); err != io.EOF {
		return ErrFormat // bytes left over
	}
	return nil
}

// A Ref is a file whose extents are those of file Of.
type Ref struct{ File, Of int64 }

// WriteExtents writes the kept extents at path: refs, then the files'
// own extents in the order files gives them. Nothing is left at path
// or beside it on an error.
func WriteExtents(path string, h ExtentsHeader, refs []Ref, files iter.Seq2[int64, []fiemap.Extent]) error {
	if !littleEndian() {
		return ErrFormat
	}
	f, named, err := create(path)
	if err != nil {
		return fmt.Errorf("kept extents: %w", err)
	}
	if err := install(f, named, path, writeExtents(f, h, refs, files)); err != nil {
		return fmt.Errorf("kept extents: %w", err)
	}
	return nil
}

// writeExtents writes the kept extents to f (see WriteExtents).
func writeExtents(f *os.File, h ExtentsHeader, refs []Ref, files iter.Seq2[int64, []fiemap.Extent]) error {
	h.Version = ExtentsVersion
	hj, err := json.Marshal(h)
	if err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.WriteString(extentsMagic)
	w := io.MultiWriter(bw, crc)
	binary.Write(w, binary.LittleEndian, uint32(len(hj)))
	w.Write(hj)
	words := make([]uint64, 0, 2*len(refs))
	for _, r := range refs {
		words = append(words, uint64(r.File), uint64(r.Of))
	}
	binary.Write(w, binary.LittleEndian, uint64(len(refs)))
	binary.Write(w, binary.LittleEndian, words)
	// The count of files comes before them: they are counted first.
	var n uint64
	for range files {
		n++
	}
	binary.Write(w, binary.LittleEndian, n)
	var raw []byte
	for id, es := range files {
		raw = binary.LittleEndian.AppendUint64(raw[:0], uint64(id))
		raw = binary.LittleEndian.AppendUint64(raw, uint64(len(es)))
		for _, e := range es {
			for _, v := range [extentWords]int64{e.Logical, e.Physical, e.Length, int64(e.Flags), e.DiskStart, e.DiskLen, e.Gen, e.Offset} {
				raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
			}
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
	}
	binary.Write(bw, binary.LittleEndian, crc.Sum32())
	bw.WriteString(endMagic)
	return bw.Flush()
}
