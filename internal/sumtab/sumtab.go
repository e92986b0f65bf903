// Package sumtab holds the table of sums findsame keeps between runs, so
// that a run after a small change regroups only what changed, and the
// extents it read from the index (see Extents), so that such a run reads
// from the index only those of the files changed.
//
// A table is a file of entries, each a block sum with the index's file id
// and block number that hold it, sorted by sum: the sums findsame grouped,
// as the index held them at one write sequence number (index.WriteSeq).
// With it are the sets a re-run needs to know what it may trust: the
// files the table covers, the files that were left unsettled (a block
// they share with another file was not stored once yet), the files the
// run's plan named (whose extents applying it changes) or that it found
// changed or gone since they were hashed, in a delta, the files whose
// entries in the base table are void, the rank of each file that was
// the source of a group (so that a group that lost a member ranked
// below its source keeps it), and the aliases: files
// that hold another's sums block for block (a file of a snapshot, as the
// index records it), whose entries are that file's, not stored again.
//
// A base table is written by a full run; a delta, by a run that regrouped
// what changed, holds the entries of the files changed since the base and
// names the base it extends by its nonce. A delta whose base was replaced
// is not used. Tables are written to a file with no name (O_TMPFILE, see
// createUnnamed; a named temporary file where the filesystem has none),
// past the page cache where the filesystem allows (see direct), then
// named and renamed into place, so that a reader finds the old table or
// the new one whole and a process killed while it writes leaves nothing;
// a large table's entries are read past the page cache too (see
// readAhead). The entries carry a checksum that Iter verifies, and the
// header, sets, ranks and aliases one that Open verifies: a table damaged
// on disk is never trusted. Tables are created 0600, like the index: the
// sums say what the files hold.
// Open refuses a table another user owns or others may write: one made
// by someone else could hide groups from the plan.
//
// # Format
//
// All integers are little-endian.
//
//	magic     8 bytes, "SAMESUM1"
//	hlen      uint32, then hlen bytes of JSON: the Header, and spaces
//	          up to a multiple of 4096 bytes from the start of the file
//	entries   16 bytes each: sum uint64, file uint32, block uint32
//	sets      Files, Unsettled, Named, Superseded: each a uint64 count n of
//	          words, then n uint64 words of a bitmap by file id
//	ranks     a uint64 count n, then n pairs of uint64 words, a file id
//	          and its rank, by file id: the files that were the source
//	          of a group
//	aliases   a uint64 count n, then n uint64 words, each a file id
//	          (high 32 bits) and the id whose entries are its (low 32)
//	trailer   entries uint64, CRC-32C of the entries uint32, the offset
//	          of the sets uint64, CRC-32C of the header's JSON and of all
//	          from the sets to the trailer uint32, magic "SAMEEND1"
package sumtab

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"unsafe"
)

const (
	magic    = "SAMESUM1"
	endMagic = "SAMEEND1"
	// Version is the format's version: a table of another is not used.
	Version = 5
	// EntrySize is the size of one entry on disk.
	EntrySize   = 16
	trailerSize = 8 + 4 + 8 + 4 + 8
)

// Entry is one block sum and where the index holds it.
type Entry struct {
	Sum   uint64
	File  uint32 // the index's file id
	Block uint32
}

// The build fails here if Entry stops being laid out as on disk (on a
// little-endian machine, which Open and Create check).
var _ = [1]struct{}{}[unsafe.Sizeof(Entry{})-EntrySize]

// Header says what a table is as of.
type Header struct {
	Version int `json:"version"`
	// Key names what the table depends on beyond the index's rows: the
	// index it was made for and the options of the run that wrote it. A
	// table of another key is not used.
	Key string `json:"key"`
	// Seq is the index's write sequence number the table is as of: files
	// changed after it (index.File.Changed > Seq) are not in it as they
	// are now.
	Seq int64 `json:"seq"`
	// Nonce names a base table; Base is, in a delta, the nonce of the
	// base it extends (0 in a base).
	Nonce uint64 `json:"nonce"`
	Base  uint64 `json:"base,omitempty"`
	// Volumes holds, by volume, what the files' entries depend on beyond
	// their rows (whether it is read-only, for one): a re-run regroups
	// the files of a volume whose value changed.
	Volumes map[string]string `json:"volumes,omitempty"`
	// Entries is the number of entries.
	Entries int64 `json:"-"`
}

// An Alias is a file whose entries are those of file Of, block for block:
// each entry of Of stands for one of File too.
type Alias struct{ File, Of uint32 }

// Set is a set of file ids, a bitmap.
type Set []uint64

// Has reports whether id is in s.
func (s Set) Has(id int64) bool {
	w := uint64(id) / 64
	return id >= 0 && w < uint64(len(s)) && s[w]&(1<<(uint64(id)%64)) != 0
}

// Add adds id to s.
func (s *Set) Add(id int64) {
	w := int(uint64(id) / 64)
	if w >= len(*s) {
		*s = append(*s, make([]uint64, w+1-len(*s))...)
	}
	(*s)[w] |= 1 << (uint64(id) % 64)
}

// Sets are the sets of file ids a table holds.
type Sets struct {
	Files      Set // files whose sums the table (with its base) holds
	Unsettled  Set // files left unsettled by the run that wrote it
	Named      Set // files the plan of the run that wrote it named, or that it found changed or gone
	Superseded Set // in a delta: files whose entries in the base are void
}

func (s *Sets) all() []*Set { return []*Set{&s.Files, &s.Unsettled, &s.Named, &s.Superseded} }

// Table is a table opened for reading.
type Table struct {
	Header
	Sets
	// Aliases are the files whose entries are another's, as of this
	// table (in a delta, all of them, not only those since the base).
	Aliases []Alias
	f       *os.File
	sets    int64  // where the sets start
	crc     uint32 // the entries' checksum
	ranks   int64  // where the ranks start, and how many there are
	nranks  uint64
}

// A Rank is the rank of a file that was the source of a group, as the
// run that wrote the table ranked it.
type Rank struct {
	File uint32
	Rank uint64
}

// ErrNotOurs marks a table that another user owns, or that others may
// write.
var ErrNotOurs = errors.New("not owned by this user, or writable by others: not used")

// ErrFormat marks a file that is not a whole table of this version.
var ErrFormat = errors.New("not a table of sums of this version")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openOurs opens the file at path, a table or kept extents, and returns
// it with its size: only if it is a regular file of this user that
// others may not write. One made by someone else could hide duplicates
// from the plan (a table says which groups need no look), or give it
// extents that are not the files'.
func openOurs(path string) (*os.File, int64, error) {
	if !littleEndian() {
		return nil, 0, fmt.Errorf("%s: %w", path, ErrFormat)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, 0, err
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", path, ErrNotOurs)
	}
	return f, st.Size, nil
}

// Open opens the table at path and reads its header and sets. A missing
// file gives an error satisfying errors.Is(err, fs.ErrNotExist).
func Open(path string) (*Table, error) {
	f, _, err := openOurs(path)
	if err != nil {
		return nil, err
	}
	t := &Table{f: f}
	if err := t.readMeta(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func (t *Table) readMeta() error {
	st, err := t.f.Stat()
	if err != nil {
		return err
	}
	head := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(t.f, head); err != nil || string(head[:len(magic)]) != magic {
		return ErrFormat
	}
	hlen := int64(binary.LittleEndian.Uint32(head[len(magic):]))
	if hlen > 256<<20 || st.Size() < int64(len(head))+hlen+trailerSize {
		return ErrFormat
	}
	hj := make([]byte, hlen)
	if _, err := io.ReadFull(t.f, hj); err != nil {
		return ErrFormat
	}
	if err := json.Unmarshal(hj, &t.Header); err != nil || t.Version != Version {
		return ErrFormat
	}
	tr := make([]byte, trailerSize)
	if _, err := t.f.ReadAt(tr, st.Size()-trailerSize); err != nil || string(tr[24:]) != endMagic {
		return ErrFormat
	}
	t.Entries = int64(binary.LittleEndian.Uint64(tr))
	t.crc = binary.LittleEndian.Uint32(tr[8:])
	t.sets = int64(binary.LittleEndian.Uint64(tr[12:]))
	wantMeta := binary.LittleEndian.Uint32(tr[20:])
	start := int64(len(head)) + hlen
	if t.Entries < 0 || t.Entries > st.Size()/EntrySize || t.sets != start+t.Entries*EntrySize || t.sets > st.Size()-trailerSize {
		return ErrFormat
	}
	// All that follows the entries is read, the ranks too, to verify
	// its checksum with the header's.
	meta := crc32.New(castagnoli)
	meta.Write(hj)
	metaLen := st.Size() - trailerSize - t.sets
	r := bufio.NewReader(io.TeeReader(io.NewSectionReader(t.f, t.sets, metaLen), meta))
	at := t.sets
	for _, s := range t.Sets.all() {
		var n uint64
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil || n > uint64(st.Size()) {
			return ErrFormat
		}
		*s = make(Set, n)
		if err := binary.Read(r, binary.LittleEndian, []uint64(*s)); err != nil {
			return ErrFormat
		}
		at += 8 + 8*int64(n)
	}
	// The ranks are read when asked for (Ranks): a re-run keeps only
	// those of the files lost and marks the others.
	if err := binary.Read(r, binary.LittleEndian, &t.nranks); err != nil || t.nranks > uint64(st.Size())/16 {
		return ErrFormat
	}
	t.ranks = at + 8
	if _, err := io.CopyN(io.Discard, r, int64(16*t.nranks)); err != nil {
		return ErrFormat
	}
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || n > uint64(st.Size())/8 {
		return ErrFormat
	}
	words := make([]uint64, n)
	if err := binary.Read(r, binary.LittleEndian, words); err != nil {
		return ErrFormat
	}
	if _, err := r.ReadByte(); err != io.EOF || meta.Sum32() != wantMeta {
		return ErrFormat // bytes left over, or damaged
	}
	t.Aliases = make([]Alias, n)
	for i, w := range words {
		t.Aliases[i] = Alias{File: uint32(w >> 32), Of: uint32(w)}
	}
	return nil
}

// Ranks calls fn with the rank of each file that was the source of a
// group as of the table, in file id order.
func (t *Table) Ranks(fn func(Rank)) error {
	r := io.NewSectionReader(t.f, t.ranks, 16*int64(t.nranks))
	w := make([]uint64, 2*min(t.nranks, 1<<12))
	for left := t.nranks; left > 0; {
		batch := w[:2*min(left, uint64(len(w)/2))]
		if err := binary.Read(r, binary.LittleEndian, batch); err != nil {
			return fmt.Errorf("table of sums: ranks: %w", err)
		}
		for i := 0; i < len(batch); i += 2 {
			fn(Rank{File: uint32(batch[i]), Rank: batch[i+1]})
		}
		left -= uint64(len(batch) / 2)
	}
	return nil
}

// Close closes the table.
func (t *Table) Close() error { return t.f.Close() }

// Iter reads the entries in order.
type Iter struct {
	r     *io.SectionReader
	ra    *readAhead // if set, what r would read, read past the page cache
	rest  []byte     // of the buffer ra read last, not in buf yet
	store []Entry    // what r reads into
	buf   []Entry    // the entries returned last, or to return
	i     int
	left  int64 // entries not in buf yet
	crc   uint32
	want  uint32
	err   error
	ended bool // the last entry was returned and the checksum verified
}

// iterBatch is how many entries Batch returns at most: few enough that
// they are still in the processor's cache when their checksum is taken,
// after the caller handled them. Taken as each buffer read arrives, from
// memory, the checksum of a 3.1 GB table cost 0.34 to 0.59 s of a
// re-run's CPU time.
const iterBatch = 32 << 10

// Iter returns an iterator over the table's entries; Close it when done.
// At the end it verifies their checksum: a table damaged on disk gives
// an error wrapping ErrFormat (Err), after its entries were returned.
// The entries of a table of directAfter bytes or more are read past the
// page cache, as they were written (see readAhead), where the filesystem
// allows it.
func (t *Table) Iter() *Iter {
	start, n := t.sets-t.Entries*EntrySize, t.Entries*EntrySize
	it := &Iter{r: io.NewSectionReader(t.f, start, n), left: t.Entries, want: t.crc}
	if n >= directAfter && start%directAlign == 0 {
		if f, err := openDirect(t.f); err == nil {
			it.ra = startAhead(f, start, n)
		}
	}
	return it
}

// Close ends the reading, if not at its end already. The iterator
// returns no entry after it.
func (it *Iter) Close() {
	if it.ra != nil {
		it.ra.stop() // its buffers are freed
	}
	it.buf, it.rest, it.i, it.left = nil, nil, 0, 0
	if it.err == nil && !it.ended {
		it.err = errors.New("table of sums: read no further")
	}
}

// Next returns the next entry, or false at the end or on an error.
func (it *Iter) Next() (Entry, bool) {
	if it.i >= len(it.buf) && !it.fill() {
		return Entry{}, false
	}
	e := it.buf[it.i]
	it.i++
	return e, true
}

// Batch returns the entries that Next would return next, at most
// iterBatch (at least one), or nil at the end or on an error. The slice
// is valid until the next call of Next or Batch.
func (it *Iter) Batch() []Entry {
	if it.i >= len(it.buf) && !it.fill() {
		return nil
	}
	b := it.buf[it.i:]
	it.i = len(it.buf)
	return b
}

// fill takes the checksum of the entries returned last, reads the next
// into buf, and reports whether there were any; after the last, it
// verifies the checksum.
func (it *Iter) fill() bool {
	if it.err != nil {
		return false
	}
	it.crc = crc32.Update(it.crc, castagnoli, bytesOf(it.buf))
	it.buf, it.i = nil, 0
	if it.left == 0 {
		if it.crc != it.want {
			it.err = fmt.Errorf("table of sums: checksum: %w", ErrFormat)
		}
		it.ended = true
		return false
	}
	if it.ra != nil {
		if len(it.rest) == 0 {
			b, err := it.ra.next()
			if err != nil {
				it.err = err
				return false
			}
			it.rest = b
		}
		k := min(len(it.rest), iterBatch*EntrySize)
		it.buf = unsafe.Slice((*Entry)(unsafe.Pointer(unsafe.SliceData(it.rest))), k/EntrySize)
		it.rest = it.rest[k:]
		it.left -= int64(len(it.buf))
		return true
	}
	if it.store == nil {
		it.store = make([]Entry, min(it.left, iterBatch))
	}
	b := it.store[:min(int64(len(it.store)), it.left)]
	if _, err := io.ReadFull(it.r, bytesOf(b)); err != nil {
		it.err = fmt.Errorf("read table of sums: %w", err)
		return false
	}
	it.left -= int64(len(b))
	it.buf = b
	return true
}

// Err returns the error that ended the iteration, if any.
func (it *Iter) Err() error { return it.err }

func bytesOf(s []Entry) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*EntrySize)
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// Writer writes a table: Add the entries in order, then Commit.
type Writer struct {
	path  string
	f     *os.File
	named bool // f has a name (no O_TMPFILE where the table is)
	w     *direct
	h     Header
	start int64       // where the entries start
	crc   uint32      // the entries'
	meta  hash.Hash32 // the header's and what follows the entries
	last  uint64
	err   error
}

// NewNonce returns a nonce for a new base table.
func NewNonce() uint64 { return rand.Uint64() | 1 }

// Create starts writing a table that Commit puts at path, in a temporary
// file beside it until then.
func Create(path string, h Header) (*Writer, error) {
	if !littleEndian() {
		return nil, ErrFormat
	}
	f, named, err := create(path)
	if err != nil {
		return nil, fmt.Errorf("table of sums: %w", err)
	}
	h.Version = Version
	w := &Writer{path: path, f: f, named: named, w: newDirect(f), h: h, meta: crc32.New(castagnoli)}
	hj, err := json.Marshal(h)
	if err != nil {
		w.Abort()
		return nil, err
	}
	// Spaces after the JSON put the entries at a multiple of directAlign,
	// where a reader reads them past the page cache (see Iter).
	if pad := (directAlign - (len(magic)+4+len(hj))%directAlign) % directAlign; pad > 0 {
		hj = append(hj, bytes.Repeat([]byte{' '}, pad)...)
	}
	w.meta.Write(hj)
	w.w.WriteString(magic)
	binary.Write(w.w, binary.LittleEndian, uint32(len(hj)))
	w.w.Write(hj)
	w.start = int64(len(magic) + 4 + len(hj))
	return w, nil
}

// Add appends entries, which must come in order of sum.
func (w *Writer) Add(es ...Entry) error {
	if w.err != nil {
		return w.err
	}
	if len(es) == 0 {
		return nil
	}
	if es[0].Sum < w.last {
		w.err = errors.New("entries out of order")
		return w.err
	}
	w.last = es[len(es)-1].Sum
	raw := bytesOf(es)
	w.crc = crc32.Update(w.crc, castagnoli, raw)
	w.h.Entries += int64(len(es))
	_, w.err = w.w.Write(raw)
	return w.err
}

// Delta reports whether the table written is a delta.
func (w *Writer) Delta() bool { return w.h.Base != 0 }

// Abort abandons the table: nothing is left at path or beside it.
func (w *Writer) Abort() {
	w.w.stop()
	w.f.Close()
	if w.named {
		os.Remove(w.f.Name())
	}
}

// Commit writes the sets, the ranks (in file id order) and the aliases,
// and renames the table into place.
func (w *Writer) Commit(sets Sets, ranks []Rank, aliases []Alias) error {
	if w.err != nil {
		w.Abort()
		return fmt.Errorf("table of sums: %w", w.err)
	}
	off := w.start + w.h.Entries*EntrySize
	mw := io.MultiWriter(w.w, w.meta)
	for _, s := range sets.all() {
		binary.Write(mw, binary.LittleEndian, uint64(len(*s)))
		binary.Write(mw, binary.LittleEndian, []uint64(*s))
	}
	rw := make([]uint64, 0, 2*len(ranks))
	for _, r := range ranks {
		rw = append(rw, uint64(r.File), r.Rank)
	}
	binary.Write(mw, binary.LittleEndian, uint64(len(ranks)))
	binary.Write(mw, binary.LittleEndian, rw)
	words := make([]uint64, len(aliases))
	for i, a := range aliases {
		words[i] = uint64(a.File)<<32 | uint64(a.Of)
	}
	binary.Write(mw, binary.LittleEndian, uint64(len(words)))
	binary.Write(mw, binary.LittleEndian, words)
	binary.Write(w.w, binary.LittleEndian, uint64(w.h.Entries))
	binary.Write(w.w, binary.LittleEndian, w.crc)
	binary.Write(w.w, binary.LittleEndian, uint64(off))
	binary.Write(w.w, binary.LittleEndian, w.meta.Sum32())
	w.w.WriteString(endMagic)
	if err := install(w.f, w.named, w.path, w.w.Flush()); err != nil {
		return fmt.Errorf("table of sums: %w", err)
	}
	return nil
}
