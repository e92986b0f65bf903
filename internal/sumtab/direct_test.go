package sumtab

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"

	"same/internal/testfs"

	"golang.org/x/sys/unix"
)

// writePieces writes data through a direct writer in pieces of random
// sizes, flushes it, and returns the writer and what the file holds.
func writePieces(t *testing.T, data []byte, seed uint64) (*direct, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := newDirect(f)
	r := rand.New(rand.NewPCG(seed, 1))
	for p := data; len(p) > 0; {
		n := min(len(p), 1+r.IntN(3*directAlign))
		if r.IntN(8) == 0 {
			n = min(len(p), directBuf+r.IntN(directBuf))
		}
		if _, err := d.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return d, got
}

// setDirectAfter sets directAfter for the test.
func setDirectAfter(t *testing.T, n int64) {
	old := directAfter
	directAfter = n
	t.Cleanup(func() { directAfter = old })
}

func TestDirect(t *testing.T) {
	for _, after := range []int64{0, directBuf} {
		setDirectAfter(t, after)
		testDirect(t)
	}
}

func testDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, size := range []int{0, 1, directAlign - 1, directAlign, directAlign + 1,
		directBuf - 1, directBuf, directBuf + 1, 3*directBuf + 12345, 4 * directBuf} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		_, got := writePieces(t, data, uint64(size))
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes written, %d read back, first difference at %d", size, len(got), firstDiff(got, data))
		}
	}
}

// TestDirectBypassesCache checks that what is written after directAfter
// leaves nothing in the page cache, and what is written before it does,
// where the test's filesystem takes O_DIRECT (a tmpfs takes the flag but
// keeps its files in the cache all the same).
func TestDirectBypassesCache(t *testing.T) {
	setDirectAfter(t, 2*directBuf)
	size := 4*directBuf + 100
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	d := newDirect(f)
	if _, err := d.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if onTmpfs(t, filepath.Dir(path)) {
		t.Logf("%s is a tmpfs: what is cached is not looked at", filepath.Dir(path))
		return
	}
	if cached := cachedPages(t, path, 2*directBuf, 4*directBuf); cached != 0 {
		t.Errorf("%d of the %d pages written directly are in the page cache", cached, 2*directBuf/os.Getpagesize())
	}
	if cached := cachedPages(t, path, 0, 2*directBuf); cached == 0 {
		t.Errorf("none of the %d pages written before directAfter are in the page cache", 2*directBuf/os.Getpagesize())
	}
}

// TestDirectRefused: a filesystem that takes the flag but refuses the
// writes (EINVAL) gets the rest through the page cache, whole.
func TestDirectRefused(t *testing.T) {
	setDirectAfter(t, 0)
	writes := 0
	writeFile = func(f *os.File, b []byte) (int, error) {
		fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if fl&unix.O_DIRECT != 0 {
			if writes++; writes > 1 {
				// Part of the write done, then refused.
				n, _ := f.Write(b[:directAlign])
				return n, unix.EINVAL
			}
		}
		return f.Write(b)
	}
	defer func() { writeFile = (*os.File).Write }()
	r := rand.New(rand.NewPCG(3, 3))
	data := make([]byte, 5*directBuf+777)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	d, got := writePieces(t, data, 5)
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes written, %d read back, first difference at %d", len(data), len(got), firstDiff(got, data))
	}
	if d.s.on || writes < 2 {
		t.Fatalf("O_DIRECT on %v after %d direct writes: the refusal was not met", d.s.on, writes)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// cachedPages counts the pages of path's bytes from off to end that are
// in the page cache.
func cachedPages(t *testing.T, path string, off, end int) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, end, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (end+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	cached := 0
	for _, v := range vec[off/page:] {
		cached += int(v & 1)
	}
	return cached
}

// TestTableLeavesCache: a table written leaves its entries after
// directAfter out of the page cache, but for the tail written last.
func TestTableLeavesCache(t *testing.T) {
	setDirectAfter(t, directBuf)
	path := filepath.Join(t.TempDir(), "index.db-sums")
	want := writeEntries(t, path, 4*directBuf/EntrySize)
	if onTmpfs(t, filepath.Dir(path)) {
		t.Logf("%s is a tmpfs: what is cached is not looked at", filepath.Dir(path))
	} else if cached := cachedPages(t, path, directBuf, 4*directBuf); cached != 0 {
		t.Errorf("%d pages of the table's second to fourth buffers are in the page cache", cached)
	}
	if got, err := readEntries(path); err != nil || !slices.Equal(got, want) {
		t.Fatalf("%d entries read back of %d: %v", len(got), len(want), err)
	}
}

// writeEntries writes a table of n entries at path, and returns them.
func writeEntries(t *testing.T, path string, n int) []Entry {
	t.Helper()
	w, err := Create(path, Header{Key: "k", Seq: 2, Nonce: 9})
	if err != nil {
		t.Fatal(err)
	}
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Sum: uint64(i) * 7, File: uint32(i % 13), Block: uint32(i)}
	}
	if err := w.Add(es...); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(Sets{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return es
}

// readEntries reads every entry of the table at path.
func readEntries(path string) ([]Entry, error) {
	tb, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	var got []Entry
	it := tb.Iter()
	defer it.Close()
	for b := it.Batch(); b != nil; b = it.Batch() {
		got = append(got, b...)
	}
	return got, it.Err()
}

// onTmpfs reports whether dir is on a tmpfs, which takes O_DIRECT but
// keeps its files in the page cache all the same.
func onTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	return testfs.Magic(t, dir) == unix.TMPFS_MAGIC
}

// TestDirectFails: a write that fails (a full disk) is the error of a
// later Write or of Flush, and the writer's goroutine ends either way.
func TestDirectFails(t *testing.T) {
	setDirectAfter(t, 0)
	writes := 0
	writeFile = func(f *os.File, b []byte) (int, error) {
		if writes++; writes == 3 {
			return 0, unix.ENOSPC
		}
		return f.Write(b)
	}
	defer func() { writeFile = (*os.File).Write }()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := newDirect(f)
	var werr error
	for range 8 {
		if _, werr = d.Write(make([]byte, directBuf)); werr != nil {
			break
		}
	}
	if ferr := d.Flush(); !errors.Is(ferr, unix.ENOSPC) || (werr != nil && !errors.Is(werr, unix.ENOSPC)) {
		t.Fatalf("Write: %v, Flush: %v; want %v", werr, ferr, unix.ENOSPC)
	}
	if writes != 3 {
		t.Errorf("%d writes: the writer went on after the failure", writes)
	}
	select {
	case <-d.done:
	default:
		t.Error("the writer's goroutine is still running")
	}
	// Abandoned before Flush, as Writer.Abort does.
	d = newDirect(f)
	d.Write(make([]byte, 3*directBuf+5))
	d.stop()
	select {
	case <-d.done:
	default:
		t.Error("the abandoned writer's goroutine is still running")
	}
}

// TestReadAhead: a table of directAfter bytes or more is read past the
// page cache, a buffer ahead, and its entries come back whole and in
// order, in tables of whole buffers and with a tail.
func TestReadAhead(t *testing.T) {
	setDirectAfter(t, directBuf)
	dir := t.TempDir()
	for _, n := range []int{directBuf / EntrySize, 4*directBuf/EntrySize + 5} {
		path := filepath.Join(dir, "index.db-sums")
		want := writeEntries(t, path, n)
		testfs.DropCache(t, path)
		got, before, after := readPastCache(t, path)
		if !slices.Equal(got, want) {
			t.Fatalf("%d entries read of %d", len(got), len(want))
		}
		if onTmpfs(t, dir) {
			t.Logf("%s is a tmpfs: what is cached is not looked at", dir)
		} else if after != before {
			t.Errorf("%d entries: %d pages of the entries are in the page cache after reading, %d before", n, after, before)
		}
	}
}

// readPastCache reads every entry of the table at path, which must be
// read past the page cache, and returns them with how many pages of the
// entries were in the page cache before and after the reading.
func readPastCache(t *testing.T, path string) (got []Entry, before, after int) {
	t.Helper()
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	end := int(tb.sets)
	// Open's reads of the header bring a few pages in.
	before = cachedPages(t, path, directAlign, end)
	it := tb.Iter()
	defer it.Close()
	if it.ra == nil {
		t.Fatalf("%s: not read past the page cache", path)
	}
	for b := it.Batch(); b != nil; b = it.Batch() {
		got = append(got, b...)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return got, before, cachedPages(t, path, directAlign, end)
}

// TestReadAheadRefused: a filesystem that takes O_DIRECT but refuses a
// read (EINVAL) has the rest read through the page cache, whole.
func TestReadAheadRefused(t *testing.T) {
	setDirectAfter(t, 0)
	path := filepath.Join(t.TempDir(), "index.db-sums")
	want := writeEntries(t, path, 3*directBuf/EntrySize+77)
	reads, refused := 0, 0
	readAt = func(f *os.File, b []byte, off int64) (int, error) {
		fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if fl&unix.O_DIRECT != 0 {
			if reads++; reads > 1 {
				// Part of the read done, then refused.
				refused++
				n, _ := f.ReadAt(b[:directAlign], off)
				return n, unix.EINVAL
			}
		}
		return f.ReadAt(b, off)
	}
	defer func() { readAt = (*os.File).ReadAt }()
	got, err := readEntries(path)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%d entries read of %d: %v", len(got), len(want), err)
	}
	if refused != 1 {
		t.Errorf("%d direct reads refused; want 1, then none asked for", refused)
	}
}

// TestReadAheadFails: a read that fails, or entries that do not match
// their checksum, end the iteration with the error, and an iteration
// closed before its end ends its goroutine and closes its file.
func TestReadAheadFails(t *testing.T) {
	setDirectAfter(t, 0)
	path := filepath.Join(t.TempDir(), "index.db-sums")
	want := writeEntries(t, path, 4*directBuf/EntrySize+3)

	reads := 0
	readAt = func(f *os.File, b []byte, off int64) (int, error) {
		if reads++; reads == 3 {
			return 0, unix.EIO
		}
		return f.ReadAt(b, off)
	}
	got, err := readEntries(path)
	readAt = (*os.File).ReadAt
	if err == nil || err.Error() != "read table of sums: input/output error" || len(got) != 2*directBuf/EntrySize {
		t.Errorf("%d entries read, then %v; want %d, then read table of sums: input/output error", len(got), err, 2*directBuf/EntrySize)
	}

	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(good)
	bad[directAlign+2*directBuf+5] ^= 1 // an entry of the third buffer
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readEntries(path); !errors.Is(err, ErrFormat) || err.Error() != "table of sums: checksum: "+ErrFormat.Error() || len(got) != len(want) {
		t.Errorf("%d entries read of a damaged table, then %v; want %d, then table of sums: checksum: %v", len(got), err, len(want), ErrFormat)
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}

	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	it := tb.Iter()
	if b := it.Batch(); !slices.Equal(b, want[:len(b)]) || len(b) == 0 {
		t.Fatalf("first batch of %d entries differs", len(b))
	}
	it.Close()
	select {
	case <-it.ra.done:
	default:
		t.Fatal("the reader's goroutine is still running")
	}
	// Its buffers are freed: nothing is read from them any more.
	if b := it.Batch(); b != nil || it.Err() == nil || it.Err().Error() != "table of sums: read no further" {
		t.Errorf("after Close: %d entries, then %v; want none, then table of sums: read no further", len(b), it.Err())
	}
	it.Close() // twice is fine
}
