package walk

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A directory of more than bigDir entries is not held in memory: a user
// who makes millions of files in one directory would otherwise have the
// walk (root's, every night) hold them all, names and lstat results, a
// few hundred bytes each. Its entries are read bigDir at a time, each
// batch sorted in path order (see pathOrder) and written to a temporary
// file, and the sorted runs merged as the walk goes, chunk entries at a
// time lstat'ed and walked. The walk meets them in the order it would
// have had them all in memory. Variables, for tests.
var (
	bigDir = 1 << 17
	chunk  = 4096
)

// spillFault, when set (by tests), is called before each sorted run is
// written; an error it returns is taken for the write's.
var spillFault func() error

// spilled is the listing of a large directory, in sorted runs in a
// temporary file (see bigDir).
type spilled struct {
	f    *os.File
	runs runHeap
	err  error // reading a run failed
}

// appendRecord appends e as a run holds it: the length of its key
// (uvarint), its key (its name, with a slash after it for a directory:
// see compareKeys), its inode number and its type (DT_*).
func appendRecord(b []byte, e dirent) []byte {
	n := len(e.name)
	if e.typ == unix.DT_DIR {
		n++
	}
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, e.name...)
	if e.typ == unix.DT_DIR {
		b = append(b, '/')
	}
	b = binary.LittleEndian.AppendUint64(b, e.ino)
	return append(b, e.typ)
}

// compareKeys compares the places of a and b in path order (see
// pathOrder): their names, a directory's with a slash after it.
func compareKeys(a, b dirent) int {
	n := min(len(a.name), len(b.name))
	if c := strings.Compare(a.name[:n], b.name[:n]); c != 0 {
		return c
	}
	return cmp.Compare(keyByte(a, n), keyByte(b, n))
}

// keyByte is the byte at i, at most len(e.name), of e's name with a
// slash after it if it is a directory; -1 past its end.
func keyByte(e dirent, i int) int {
	switch {
	case i < len(e.name):
		return int(e.name[i])
	case e.typ == unix.DT_DIR:
		return '/'
	}
	return -1
}

// tempFile returns a file for a directory's runs in dir (os.TempDir()
// when ""), nameless where the filesystem allows (O_TMPFILE), else
// removed as soon as made: nothing is left behind, whatever ends the run.
func tempFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(listing)"), nil
	}
	f, err := os.CreateTemp(dir, ".hashfile-listing-*.tmp")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// spill writes first, the entries of the directory open at fd read so
// far, and the rest of them, in sorted runs of at most bigDir entries,
// to a temporary file in dir, each entry kept by keep (which may resolve
// an unknown type). readErr is an error reading the directory (what was
// read is spilled); err, one writing the file, after which nothing of
// it is kept.
func spill(fd int, dir string, first []dirent, keep func(*dirent) bool) (s *spilled, readErr, err error) {
	f, err := tempFile(dir)
	if err != nil {
		return nil, nil, err
	}
	s = &spilled{f: f}
	bw := bufio.NewWriterSize(f, 1<<20)
	var off int64
	var buf []byte
	ents, more := first, true
	for {
		kept := ents[:0]
		for _, e := range ents {
			if keep(&e) {
				kept = append(kept, e)
			}
		}
		// A read may hold more than bigDir: a batch of getdents is not
		// cut.
		for rest := kept; len(rest) > 0; {
			batch := rest[:min(len(rest), bigDir)]
			rest = rest[len(batch):]
			slices.SortFunc(batch, compareKeys)
			if spillFault != nil {
				if err := spillFault(); err != nil {
					f.Close()
					return nil, nil, err
				}
			}
			var n int64
			for _, e := range batch {
				buf = appendRecord(buf[:0], e)
				if _, err := bw.Write(buf); err != nil {
					f.Close()
					return nil, nil, err
				}
				n += int64(len(buf))
			}
			s.runs = append(s.runs, &run{r: bufio.NewReaderSize(io.NewSectionReader(f, off, n), 64<<10), left: len(batch)})
			off += n
		}
		if !more || readErr != nil {
			break
		}
		ents, more, readErr = readDirentsUpTo(fd, ents[:0], bigDir)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, nil, err
	}
	for _, r := range s.runs {
		if !r.next() {
			s.err = r.err
		}
	}
	s.runs = slices.DeleteFunc(s.runs, func(r *run) bool { return r.done })
	heap.Init(&s.runs)
	return s, readErr, nil
}

// next returns up to n entries of s, the next in path order; none at the
// end or after an error (s.err).
func (s *spilled) next(n int, out []dirent) []dirent {
	out = out[:0]
	for len(out) < n && len(s.runs) > 0 && s.err == nil {
		r := s.runs[0]
		out = append(out, r.cur)
		if r.next() {
			heap.Fix(&s.runs, 0)
		} else {
			if r.err != nil {
				s.err = r.err
			}
			heap.Pop(&s.runs)
		}
	}
	return out
}

func (s *spilled) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// run is a sorted run of a spilled directory, cur its entry at hand.
type run struct {
	r    *bufio.Reader
	left int // entries not yet read
	cur  dirent
	key  string // cur's (see compareKeys)
	buf  []byte
	done bool
	err  error
}

var errShortRun = errors.New("listing spilled: run cut short")

// next reads the run's next entry into cur, reporting false at its end
// or on an error (err).
func (r *run) next() bool {
	if r.left == 0 {
		r.done = true
		return false
	}
	r.left--
	n, err := binary.ReadUvarint(r.r)
	if err == nil && n > 1<<16 {
		err = errShortRun
	}
	if err == nil {
		r.buf = slices.Grow(r.buf[:0], int(n)+9)[:n+9]
		_, err = io.ReadFull(r.r, r.buf)
	}
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = errShortRun
		}
		r.err, r.done = err, true
		return false
	}
	b := r.buf
	r.key = string(b[:n])
	r.cur = dirent{name: strings.TrimSuffix(r.key, "/"), ino: binary.LittleEndian.Uint64(b[n:]), typ: b[n+8]}
	return true
}

type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
