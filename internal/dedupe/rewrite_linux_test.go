package dedupe_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/testfs"
)

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeOpen writes data to a new file at path and opens it, to be closed
// when the test ends.
func writeOpen(t testing.TB, path string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// physicalAt returns the disk offset of file offset off of f.
func physicalAt(t *testing.T, f *os.File, off int64) int64 {
	t.Helper()
	ext, err := fiemap.Extents(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if e.Logical <= off && off < e.End() {
			return e.Physical + off - e.Logical
		}
	}
	t.Fatalf("offset %d is not mapped", off)
	return 0
}

// TestRewrite copies two spans of a file's extent and shares them back:
// the content is the same, the spans now live elsewhere, the rest stays.
func TestRewrite(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	path := filepath.Join(mnt, "f")
	data := randomBytes(1, 2<<20+1000)
	f := writeOpen(t, path, data)
	before := []int64{physicalAt(t, f, 0), physicalAt(t, f, 1<<20), physicalAt(t, f, 2<<20)}
	spans := []dedupe.Span{{Off: 0, Len: 512 << 10}, {Off: 2 << 20, Len: 1000}}

	written, shared, err := dedupe.Rewrite(context.Background(), f, path, f, path, spans, 0)
	if err != nil || written != 512<<10+1000 || shared != written {
		t.Fatalf("Rewrite = %d written, %d shared, %v; want %d, %d, nil", written, shared, err, 512<<10+1000, 512<<10+1000)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("content changed")
	}
	after := []int64{physicalAt(t, f, 0), physicalAt(t, f, 1<<20), physicalAt(t, f, 2<<20)}
	if after[0] == before[0] || after[2] == before[2] {
		t.Errorf("rewritten spans still at their old disk offsets: before %v, after %v", before, after)
	}
	if after[1] != before[1] {
		t.Errorf("the range not rewritten moved: before %v, after %v", before, after)
	}
}

// TestRewriteBatches rewrites many spans with a 1 MiB chunk, so that
// small spans share a write-back, adjacent ones are one piece and a long
// one is cut: every span moves, the rest stays, the content is the same.
func TestRewriteBatches(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	path := filepath.Join(mnt, "f")
	const kib, mib = 1 << 10, 1 << 20
	data := randomBytes(4, 6*mib)
	f := writeOpen(t, path, data)
	spans := []dedupe.Span{
		{Off: 0, Len: 64 * kib}, {Off: 64 * kib, Len: 64 * kib}, // adjacent
		{Off: 256 * kib, Len: 4 * kib},
		{Off: mib, Len: 2*mib + 512*kib}, // longer than a chunk
		{Off: 5 * mib, Len: 4 * kib},
	}
	moved := []int64{0, 64 * kib, 256 * kib, mib, 2 * mib, 3*mib + 508*kib, 5 * mib}
	stayed := []int64{128 * kib, 512 * kib, 3*mib + 512*kib, 5*mib + 4*kib}
	at := func(offs []int64) []int64 {
		var p []int64
		for _, off := range offs {
			p = append(p, physicalAt(t, f, off))
		}
		return p
	}
	movedBefore, stayedBefore := at(moved), at(stayed)
	var want int64
	for _, s := range spans {
		want += s.Len
	}

	written, shared, err := dedupe.Rewrite(context.Background(), f, path, f, path, spans, mib)
	if err != nil || written != want || shared != want {
		t.Fatalf("Rewrite = %d written, %d shared, %v; want %d, %d, nil", written, shared, err, want, want)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("content changed")
	}
	for i, p := range at(moved) {
		if p == movedBefore[i] {
			t.Errorf("offset %d, in a rewritten span, is still at disk offset %d", moved[i], p)
		}
	}
	for i, p := range at(stayed) {
		if p != stayedBefore[i] {
			t.Errorf("offset %d, outside every span, moved from disk offset %d to %d", stayed[i], stayedBefore[i], p)
		}
	}
}

// TestRewriteWriterBetweenCopyAndSwap changes the file after the copy was
// made: the swap finds the bytes differ, shares nothing that differs, and
// the writer's data stays.
func TestRewriteWriterBetweenCopyAndSwap(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	path := filepath.Join(mnt, "f")
	data := randomBytes(2, 1<<20)
	f := writeOpen(t, path, data)
	news := randomBytes(3, 4096)
	want := append([]byte(nil), data...)
	copy(want[8192:], news)
	dedupe.SetAfterCopy(func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close()
		if _, err := w.WriteAt(news, 8192); err != nil {
			t.Error(err)
		}
	})
	defer dedupe.SetAfterCopy(nil)

	_, shared, err := dedupe.Rewrite(context.Background(), f, path, f, path, []dedupe.Span{{Off: 0, Len: 1 << 20}}, 0)
	if !errors.Is(err, dedupe.ErrDiffers) {
		t.Fatalf("Rewrite = %v; want ErrDiffers", err)
	}
	if shared != 0 {
		t.Errorf("shared %d bytes; want 0 (one call covers the range, and it differs)", shared)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the file does not hold what the writer wrote")
	}
}

// TestRewriteReadOnly: a directory where no file can be made (a read-only
// snapshot, here a read-only mount) gives a clear error and changes
// nothing.
func TestRewriteReadOnly(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	path := filepath.Join(mnt, "f")
	if err := os.WriteFile(path, randomBytes(4, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "mount", "-o", "remount,ro", mnt)
	defer testfs.Run(t, "mount", "-o", "remount,rw", mnt)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _, err = dedupe.Rewrite(context.Background(), f, path, f, path, []dedupe.Span{{Off: 0, Len: 4096}}, 0)
	if want := "open O_TMPFILE in " + mnt + ": read-only file system"; err == nil || err.Error() != want {
		t.Errorf("Rewrite = %v; want %q", err, want)
	}
}

// TestRewriteNextTo rewrites a span of a file in a read-only snapshot,
// whose directory can hold no copy, with the copy made next to a file of
// a writable subvolume of the same filesystem: the snapshot's file then
// refers to storage of its own there, with the same content, and the
// snapshot stays read-only.
func TestRewriteNextTo(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live := filepath.Join(mnt, "live")
	testfs.Run(t, "btrfs", "subvolume", "create", live)
	data := randomBytes(5, 1<<20)
	if err := os.WriteFile(filepath.Join(live, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	anchorPath := filepath.Join(live, "anchor")
	anchor := writeOpen(t, anchorPath, []byte("x"))
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap"))
	path := filepath.Join(mnt, "snap", "f")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	liveF, err := os.Open(filepath.Join(live, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer liveF.Close()
	if physicalAt(t, f, 0) != physicalAt(t, liveF, 0) {
		t.Fatal("the snapshot's file does not share its extent with live's")
	}

	spans := []dedupe.Span{{Off: 0, Len: 64 << 10}}
	_, _, err = dedupe.Rewrite(context.Background(), f, path, f, path, spans, 0)
	if want := "open O_TMPFILE in " + filepath.Dir(path) + ": read-only file system"; err == nil || err.Error() != want {
		t.Fatalf("Rewrite next to itself = %v; want %q", err, want)
	}
	written, shared, err := dedupe.Rewrite(context.Background(), f, path, anchor, anchorPath, spans, 0)
	if err != nil || written != 64<<10 || shared != 64<<10 {
		t.Fatalf("Rewrite next to %s = %d written, %d shared, %v; want %d, %d, nil", anchorPath, written, shared, err, 64<<10, 64<<10)
	}
	if physicalAt(t, f, 0) == physicalAt(t, liveF, 0) {
		t.Error("the snapshot's span still shares live's extent")
	}
	if physicalAt(t, f, 64<<10) != physicalAt(t, liveF, 64<<10) {
		t.Error("the rest of the snapshot's file no longer shares live's extent")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the snapshot's file changed")
	}
	if out := testfs.Run(t, "btrfs", "property", "get", "-ts", filepath.Join(mnt, "snap"), "ro"); !bytes.Contains([]byte(out), []byte("ro=true")) {
		t.Errorf("the snapshot is no longer read-only: %s", out)
	}
	ents, err := os.ReadDir(live)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Errorf("live holds %d entries, want 2 (f, anchor): the copy was left behind", len(ents))
	}
}

// TestRewriteNoCOW rewrites a span of a file with the NOCOW attribute in
// a directory without it, of a file without it in a directory with it, of
// a file written while the filesystem was mounted with nodatasum (no
// checksums, but not NOCOW) and of a file with checksums while it is so
// mounted: btrfs shares storage only between files that both keep
// checksums of their data or both do not, and a new file takes its
// directory's attribute and the mount's checksums, so the copy must take
// the file's. Each span moves, the content, the attribute and the
// checksums stay.
func TestRewriteNoCOW(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	nocow := filepath.Join(mnt, "nocow")
	if err := os.WriteFile(nocow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "chattr", "+C", nocow)
	dir := filepath.Join(mnt, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cow := filepath.Join(dir, "cow")
	if err := os.WriteFile(cow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "chattr", "+C", dir)
	nosum, sum := filepath.Join(mnt, "nosum"), filepath.Join(mnt, "sum")
	files := map[string]*os.File{sum: writeOpen(t, sum, randomBytes(9, 256<<10))}
	testfs.Run(t, "mount", "-o", "remount,nodatasum", mnt)
	files[nosum] = writeOpen(t, nosum, randomBytes(10, 256<<10))
	for i, c := range []struct {
		path, mount string
		nosum       bool
	}{
		{nocow, "datasum", true},
		{cow, "datasum", false},
		{nosum, "datasum", true},
		{sum, "nodatasum", false},
	} {
		testfs.Run(t, "mount", "-o", "remount,"+c.mount, mnt)
		f := files[c.path]
		if f == nil {
			f = writeOpen(t, c.path, randomBytes(uint64(7+i), 256<<10))
		}
		data, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		ino := st.Sys().(*syscall.Stat_t).Ino
		if no, err := fiemap.NoDataSum(f, ino); err != nil || no != c.nosum {
			t.Fatalf("%s: NoDataSum = %v, %v; want %v", c.path, no, err, c.nosum)
		}
		attr := testfs.Run(t, "lsattr", c.path)
		before := physicalAt(t, f, 0)
		written, shared, err := dedupe.Rewrite(context.Background(), f, c.path, f, c.path, []dedupe.Span{{Off: 0, Len: 64 << 10}}, 0)
		if err != nil || written != 64<<10 || shared != 64<<10 {
			t.Errorf("%s (mounted %s): Rewrite = %d written, %d shared, %v; want %d, %d, nil", c.path, c.mount, written, shared, err, 64<<10, 64<<10)
			continue
		}
		if physicalAt(t, f, 0) == before {
			t.Errorf("%s: the span is still at its old disk offset", c.path)
		}
		if got, err := os.ReadFile(c.path); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: content changed (%v)", c.path, err)
		}
		if got := testfs.Run(t, "lsattr", c.path); got != attr {
			t.Errorf("%s: attributes %q, were %q", c.path, got, attr)
		}
		if no, err := fiemap.NoDataSum(f, ino); err != nil || no != c.nosum {
			t.Errorf("%s: NoDataSum after = %v, %v; want %v", c.path, no, err, c.nosum)
		}
	}
}

// BenchmarkRewrite rewrites 32 MiB of a 64 MiB file whose pages are
// cached, in 256 spans of 128 KiB (a file mostly deduplicated): the copy,
// its write-back and the share back. (Two goroutines copying a batch at
// once, each into an unnamed file of its own, took as long: btrfs's
// buffered writes into one subvolume contend for its metadata
// reservations.)
func BenchmarkRewrite(b *testing.B) {
	mnt := testfs.Mount(b, "btrfs", "1G")
	path := filepath.Join(mnt, "f")
	f := writeOpen(b, path, randomBytes(7, 64<<20))
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	var spans []dedupe.Span
	for off := int64(0); off < 64<<20; off += 256 << 10 {
		spans = append(spans, dedupe.Span{Off: off, Len: 128 << 10})
	}
	b.SetBytes(32 << 20)
	for b.Loop() {
		if _, _, err := dedupe.Rewrite(context.Background(), f, path, f, path, spans, 0); err != nil {
			b.Fatal(err)
		}
	}
}
