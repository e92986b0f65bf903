package scan

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/walk"
)

func writeRandom(t *testing.T, path string, seed uint64, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func openIndex(t *testing.T) *index.Index {
	t.Helper()
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// paths returns the inode of each path in the index.
func paths(t *testing.T, ix *index.Index) map[string]uint64 {
	t.Helper()
	m := make(map[string]uint64)
	err := ix.Files(context.Background(), func(f index.File) error {
		m[f.Path] = f.Ino
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func runScan(t *testing.T, ctx context.Context, ix *index.Index, roots ...string) (Stats, error) {
	t.Helper()
	return Run(ctx, ix, roots, Options{BlockSize: 4096, Error: func(path string, err error) { t.Logf("Error(%s, %v)", path, err) }})
}

// same compares the counts of two Stats, ignoring timing and what only
// progress shows (ToRead, ToPrune, Known).
func same(got, want Stats) bool {
	got.Elapsed, got.ToRead, got.WalkDone, got.ToPrune, got.Known = 0, 0, false, 0, 0
	return got == want
}

func TestPruneOnlyUnderRoots(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for i, p := range []string{"a/1", "a/2", "b/1", "b/2"} {
		writeRandom(t, filepath.Join(dir, p), uint64(i), 5000)
	}
	ix := openIndex(t)
	ctx := context.Background()
	if st, err := runScan(t, ctx, ix, a, b); err != nil || st.Hashed != 4 {
		t.Fatalf("first Run = %+v, %v; want 4 hashed", st, err)
	}
	for _, p := range []string{"a/1", "b/1"} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := runScan(t, ctx, ix, a)
	if want := (Stats{Seen: 1, Unchanged: 1, Pruned: 1}); err != nil || !same(st, want) {
		t.Errorf("Run(a) = %+v, %v; want %+v", st, err, want)
	}
	got := paths(t, ix)
	for p, want := range map[string]bool{"a/1": false, "a/2": true, "b/1": true, "b/2": true} {
		if _, ok := got[filepath.Join(dir, p)]; ok != want {
			t.Errorf("after Run(a): %s indexed = %v; want %v", p, ok, want)
		}
	}
}

func TestInterruptedPrunesNothing(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "1"), 1, 5000)
	writeRandom(t, filepath.Join(dir, "2"), 2, 5000)
	ix := openIndex(t)
	if _, err := runScan(t, context.Background(), ix, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "1")); err != nil {
		t.Fatal(err)
	}
	// An interrupted run prunes nothing, whenever the interrupt comes:
	// here before the walk starts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := Options{BlockSize: 4096}
	cancel()
	st, err := Run(ctx, ix, []string{dir}, o)
	if !errors.Is(err, context.Canceled) || st.Pruned != 0 || st.Hashed != 0 {
		t.Errorf("interrupted Run = %+v, %v; want nothing hashed or pruned, context.Canceled", st, err)
	}
	if got := paths(t, ix); len(got) != 2 {
		t.Errorf("after an interrupted Run the index holds %v; want both files", got)
	}
}

// TestSwap swaps two files' names: both are renamed in the index, neither
// is read.
func TestSwap(t *testing.T) {
	dir := t.TempDir()
	x, y, tmp := filepath.Join(dir, "x"), filepath.Join(dir, "y"), filepath.Join(dir, "tmp")
	writeRandom(t, x, 1, 5000)
	writeRandom(t, y, 2, 7000)
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	before := paths(t, ix)
	for _, mv := range [][2]string{{x, tmp}, {y, x}, {tmp, y}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 2, Unchanged: 2, Renamed: 2}); err != nil || !same(st, want) {
		t.Errorf("Run after swap = %+v, %v; want %+v", st, err, want)
	}
	after := paths(t, ix)
	if after[x] != before[y] || after[y] != before[x] || len(after) != 2 {
		t.Errorf("after swap index = %v; want x and y swapped from %v", after, before)
	}
}

func TestRunBadOptions(t *testing.T) {
	ix := openIndex(t)
	dir := t.TempDir()
	tests := []struct {
		o    Options
		want string
	}{
		{Options{BlockSize: 1000}, "block size 1000: want a power of two from 4KiB to 16MiB"},
		{Options{BlockSize: 4096, Exclude: []string{"["}}, `bad exclude pattern "[": syntax error in pattern`},
	}
	for _, tt := range tests {
		_, err := Run(context.Background(), ix, []string{dir}, tt.o)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Run(%+v) = %v; want %q", tt.o, err, tt.want)
		}
	}
	if bs, err := ix.BlockSize(); bs != 0 || err != nil {
		t.Errorf("block size after refused runs = %d, %v; want 0 (not set)", bs, err)
	}
}

// TestNoCOWBackfill: files recorded before the index kept the NOCOW
// attribute (nocow NULL) and devices without their filesystem ID get both
// on the next run, which reads no file data; files recorded since have
// them from the start.
func TestNoCOWBackfill(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"a", "sub/b"} {
		writeRandom(t, filepath.Join(dir, name), uint64(i), 10000)
	}
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	check := func(when string, want int8) {
		t.Helper()
		err := ix.Files(ctx, func(f index.File) error {
			if f.NoCOW != want {
				t.Errorf("%s: %s has NoCOW %d; want %d", when, f.Path, f.NoCOW, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("first run", index.NoCOWUnset)
	if _, err := ix.DB().Exec("UPDATE files SET nocow = NULL"); err != nil {
		t.Fatal(err)
	}
	check("as an older index", index.NoCOWUnknown)
	st, err := runScan(t, ctx, ix, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hashed != 0 || st.BytesRead != 0 || st.Unchanged != 2 {
		t.Errorf("run on the older index: %+v; want 2 files unchanged, none hashed or read", st)
	}
	check("after the run", index.NoCOWUnset)
}

// A 1 TiB sparse file holding 2 MiB of data costs what its data costs: its
// holes are not read (nor counted as to be read), and the index holds the sums of its data blocks and
// of the hole between them, not of the hole at its end.
func TestSparseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		f.Close()
		t.Skipf("cannot make a 1 TiB sparse file in %s: %v", dir, err)
	}
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{9}).Read(data)
	for _, off := range []int64{0, 64 << 20} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	ix := openIndex(t)
	st, err := runScan(t, context.Background(), ix, dir)
	if err != nil || st.Hashed != 1 || st.BytesRead != 2<<20 || st.ToRead != 2<<20 {
		t.Fatalf("Run = %+v, %v; want 1 file hashed, 2 MiB to read and read", st, err)
	}
	var stored int
	err = ix.ScanSums(context.Background(), func(_ []int64, _ int, sums []byte) error {
		stored += len(sums)
		return nil
	})
	if want := (65 << 20) / 4096 * 8; err != nil || stored != want {
		t.Errorf("index holds %d bytes of sums, %v; want %d (up to the last data block)", stored, err, want)
	}
}

// TestHashReplaced hashes files whose path changed since the walk listed
// them: a directory of the path now a symlink to a directory outside, the
// file another inode, a FIFO. None is read, and the FIFO is not opened.
func TestHashReplaced(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	path := filepath.Join(root, "d", "f")
	writeRandom(t, path, 1, 8192)
	writeRandom(t, filepath.Join(out, "f"), 2, 8192)
	listed := func(p string) fsys.Stat {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return fsys.FromStat(&st)
	}
	mine, secret := listed(path), listed(filepath.Join(out, "f"))
	r, err := blockhash.NewReader(4096)
	if err != nil {
		t.Fatal(err)
	}
	try := func(id fsys.Stat, want string) {
		t.Helper()
		j := job{path: path, id: id}
		if _, _, _, n, _, err := hash(context.Background(), r, nil, j); err == nil || err.Error() != want || n != 0 {
			t.Errorf("hash(%s) = %d bytes read, %v; want 0, %q", path, n, err, want)
		}
		if _, ok := readAttr(context.Background(), nil, j); ok {
			t.Errorf("readAttr(%s) = ok; want not", path)
		}
	}

	// d is now a symlink to out, where f is another user's file.
	d := filepath.Join(root, "d")
	if err := os.Rename(d, d+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, d); err != nil {
		t.Fatal(err)
	}
	symlinked := "open " + path + ": path component " + d + " is a symlink"
	try(mine, symlinked)
	try(secret, symlinked) // an index that recorded the outside file under this path

	// f is now another file.
	os.Remove(d)
	os.Rename(d+".moved", d)
	os.Rename(path, path+".old")
	writeRandom(t, path, 3, 8192)
	try(mine, path+": "+walk.ErrReplaced.Error())

	// f is now a FIFO, which a plain open would wait on.
	os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	try(mine, path+": no longer a regular file")
	if n, _ := unix.Read(fd, make([]byte, 4096)); n > 0 {
		t.Errorf("the FIFO was opened")
	}
}

// A root given twice, or under another root, is walked once: its files
// are not hard links of themselves.
func TestRootsOverlap(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "a"), 1, 5000)
	writeRandom(t, filepath.Join(dir, "sub", "b"), 2, 5000)
	ix := openIndex(t)
	st, err := runScan(t, context.Background(), ix, dir, filepath.Join(dir, "sub"), dir)
	if err != nil || st.Seen != 2 || st.Hashed != 2 || st.Links != 0 {
		t.Errorf("Run = %+v, %v; want 2 files seen and hashed, no hard links", st, err)
	}
}
