package walk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"same/internal/fstype"
	"same/internal/fsys"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWalk(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, dir, map[string]int{
		"b":           10,
		"a/2":         20,
		"a/10":        30,
		"a/empty":     0,
		"a/skip.tmp":  40,
		"cache/inner": 50,
		"keep/cache":  60, // a file named like the excluded directory path's base
	})
	if err := os.Symlink("b", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	var got []string
	var sizes []int64
	skipped := map[string]string{}
	var dirs []string
	o := Options{
		Exclude: []string{"*.tmp", dir + "/cache"},
		Skipped: func(path, why string) { skipped[path] = why },
		Dir:     func(path string, _ *unix.Stat_t) { dirs = append(dirs, path) },
		Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
	}
	err := Walk(context.Background(), dir, o, func(e Entry) error {
		got = append(got, e.Path[len(dir)+1:])
		sizes = append(sizes, e.Size)
		var st unix.Stat_t
		if err := unix.Lstat(e.Path, &st); err != nil {
			t.Fatal(err)
		}
		if s := fsys.FromStat(&st); s != e.Stat {
			t.Errorf("%s: Stat = %+v; want %+v", e.Path, e.Stat, s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk = %v", err)
	}
	if want := []string{"a/10", "a/2", "b", "keep/cache"}; !slices.Equal(got, want) {
		t.Errorf("Walk met %q; want %q (name order)", got, want)
	}
	if want := []int64{30, 20, 10, 60}; !slices.Equal(sizes, want) {
		t.Errorf("sizes = %v; want %v", sizes, want)
	}
	wantSkipped := map[string]string{dir + "/a/empty": "empty", dir + "/link": "symlink", dir + "/fifo": "FIFO"}
	if len(skipped) != len(wantSkipped) {
		t.Errorf("skipped = %v; want %v", skipped, wantSkipped)
	}
	for p, why := range wantSkipped {
		if skipped[p] != why {
			t.Errorf("skipped[%s] = %q; want %q", p, skipped[p], why)
		}
	}
	if want := []string{dir, dir + "/a", dir + "/keep"}; !slices.Equal(dirs, want) {
		t.Errorf("Dir called for %q; want %q", dirs, want)
	}
}

// TestWalkOrderReadAhead walks more sibling directories, nested, than are
// read ahead: entries still come in name order, and each directory's Dir
// call before its entries.
func TestWalkOrderReadAhead(t *testing.T) {
	dir := t.TempDir()
	var want, wantDirs []string
	wantDirs = append(wantDirs, dir)
	for i := range 3 * readAhead {
		d := fmt.Sprintf("d%02d", i)
		wantDirs = append(wantDirs, filepath.Join(dir, d))
		for j := range 3 {
			if j == 1 {
				sub := fmt.Sprintf("%s/s%d", d, j)
				wantDirs = append(wantDirs, filepath.Join(dir, sub))
				name := sub + "/f"
				want = append(want, name)
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			name := fmt.Sprintf("%s/f%d", d, j)
			want = append(want, name)
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(want) // name order: f0, f2, then s1 and what it holds
	var got, order []string
	o := Options{
		Dir:   func(path string, _ *unix.Stat_t) { order = append(order, "dir "+path) },
		Error: func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
	}
	err := Walk(context.Background(), dir, o, func(e Entry) error {
		got = append(got, e.Path[len(dir)+1:])
		order = append(order, "file "+e.Path)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk = %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Walk met %q; want %q", got, want)
	}
	// Each directory is announced before anything in it, and after
	// everything that precedes it in name order.
	var wantOrder []string
	for _, d := range wantDirs {
		wantOrder = append(wantOrder, "dir "+d)
		for _, f := range want {
			if filepath.Dir(filepath.Join(dir, f)) == d {
				wantOrder = append(wantOrder, "file "+filepath.Join(dir, f))
			}
		}
	}
	slices.SortStableFunc(wantOrder, func(a, b string) int {
		return strings.Compare(a[strings.IndexByte(a, ' ')+1:], b[strings.IndexByte(b, ' ')+1:])
	})
	if !slices.Equal(order, wantOrder) {
		t.Errorf("callbacks in order %q; want %q", order, wantOrder)
	}
}

func TestWalkStops(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := Walk(context.Background(), dir, Options{}, func(Entry) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Errorf("Walk with fn failing = %v after %d calls; want %v after 1", err, n, stop)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Walk(ctx, dir, Options{}, func(Entry) error { t.Error("fn called after cancel"); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Walk with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestWalkMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "gone")
	var errs []error
	err := Walk(context.Background(), root, Options{Error: func(_ string, err error) { errs = append(errs, err) }},
		func(Entry) error { return nil })
	if err != nil {
		t.Errorf("Walk = %v; want nil (the error goes to Options.Error)", err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) || errs[0].Error() != "lstat "+root+": no such file or directory" {
		t.Errorf("errors = %v; want one, lstat %s: not exist", errs, root)
	}
}

func TestUnder(t *testing.T) {
	tests := []struct {
		path, root string
		want       bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", true},
		{"/ab", "/a", false},
		{"/a0", "/a", false},
		{"/a/b/c", "/a/b", true},
		{"/x", "/", true},
		{"/", "/", true},
	}
	for _, tt := range tests {
		if got := Under(tt.path, tt.root); got != tt.want {
			t.Errorf("Under(%q, %q) = %v; want %v", tt.path, tt.root, got, tt.want)
		}
	}
}

func TestCheckPatterns(t *testing.T) {
	if err := CheckPatterns([]string{"*.tmp", "/a/*/b", "x?"}); err != nil {
		t.Errorf("CheckPatterns(good) = %v; want nil", err)
	}
	err := CheckPatterns([]string{"ok", "a[", "b["})
	if want := `bad exclude pattern "a[": syntax error in pattern`; err == nil || err.Error() != want {
		t.Errorf("CheckPatterns(bad) = %v; want %q", err, want)
	}
}

// A directory removed after its parent was listed, before it is opened,
// is gone, as a file removed would be: not an error.
func TestWalkRemovedDirectory(t *testing.T) {
	root := t.TempDir()
	writeSized(t, root, map[string]int{"a/f": 1, "b/f": 1, "b/sub/f": 1, "c/f": 1})
	gone := filepath.Join(root, "b")
	Fault = func(path string) {
		if path == gone {
			if err := os.RemoveAll(gone); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { Fault = nil })
	var met []string
	o := Options{Error: func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) }}
	if err := Walk(context.Background(), root, o, func(e Entry) error {
		met = append(met, strings.TrimPrefix(e.Path, root+"/"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a/f", "c/f"}; !slices.Equal(met, want) {
		t.Errorf("met %q; want %q", met, want)
	}
}

// swap exchanges a and b (renameat2 RENAME_EXCHANGE) over and over until
// the test ends: a directory and a symlink trade names, atomically.
func swap(t *testing.T, a, b string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange %s and %s: %v", a, b, err)
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestWalkSwappedDirectory walks a tree in which a directory keeps
// trading places with a symlink to a directory outside the root: the walk
// never meets a file from outside.
func TestWalkSwappedDirectory(t *testing.T) {
	top := t.TempDir()
	root, out := filepath.Join(top, "root"), filepath.Join(top, "out")
	secrets := map[uint64]bool{}
	for _, name := range []string{"secret", "sub/secret", "f", "sub/f"} {
		p := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		secrets[st.Ino] = true
	}
	writeSized(t, root, map[string]int{"a/d/f": 4, "a/d/sub/f": 4, "a/e/f": 4})
	if err := os.Symlink(out, filepath.Join(root, "a", "link")); err != nil {
		t.Fatal(err)
	}
	swap(t, filepath.Join(root, "a", "d"), filepath.Join(root, "a", "link"))

	met, errs := 0, 0
	for range 300 {
		o := Options{Error: func(string, error) { errs++ }}
		err := Walk(context.Background(), root, o, func(e Entry) error {
			met++
			if !Under(e.Path, root) {
				t.Errorf("Walk met %s, outside %s", e.Path, root)
			}
			if secrets[e.Ino] || strings.HasSuffix(e.Path, "secret") {
				t.Errorf("Walk met %s, inode %d: a file outside the root", e.Path, e.Ino)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Walk = %v", err)
		}
	}
	t.Logf("%d entries met, %d errors (directories swapped while listed)", met, errs)
}

// TestWalkDescriptors walks a wide and deep tree and counts the
// descriptors open at each entry: at most one per level being walked and
// maxListings for the read-ahead.
func TestWalkDescriptors(t *testing.T) {
	root := t.TempDir()
	const depth, width = 6, 12
	var mk func(dir string, level int)
	mk = func(dir string, level int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if level == depth {
			return
		}
		n := 1
		if level >= depth-2 {
			n = width // wide near the bottom: many listings read ahead at once
		}
		for i := range n {
			mk(filepath.Join(dir, fmt.Sprintf("d%02d", i)), level+1)
		}
	}
	mk(root, 0)
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	base, most := count(), 0
	err := Walk(context.Background(), root, Options{Error: func(p string, err error) { t.Errorf("Error(%s, %v)", p, err) }},
		func(Entry) error {
			most = max(most, count()-base)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if limit := depth + 1 + maxListings; most > limit {
		t.Errorf("the walk held %d descriptors at once; want at most %d", most, limit)
	}
	if n := count() - base; n > 0 {
		t.Errorf("%d descriptors left open after the walk", n)
	}
}

// TestWalkRootThroughSymlink gives a root whose directory is a symlink:
// it is refused, naming the symlink, and nothing is met.
func TestWalkRootThroughSymlink(t *testing.T) {
	top := t.TempDir()
	if err := os.MkdirAll(filepath.Join(top, "real", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "real", "d", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(top, "link", "d")
	var errs []string
	err := Walk(context.Background(), root, Options{Error: func(_ string, err error) { errs = append(errs, err.Error()) }},
		func(e Entry) error { t.Errorf("Walk met %s", e.Path); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := "open " + root + ": path component " + filepath.Join(top, "link") + " is a symlink"
	if len(errs) != 1 || errs[0] != want {
		t.Errorf("errors = %q; want [%q]", errs, want)
	}
}

// BenchmarkWalk walks 20,000 small files in 100 directories of two
// levels: on a re-run of an unchanged tree, the walk is the work.
func BenchmarkWalk(b *testing.B) {
	root := b.TempDir()
	for i := range 10 {
		for j := range 10 {
			dir := filepath.Join(root, fmt.Sprintf("d%d", i), fmt.Sprintf("e%d", j))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for k := range 200 {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", k)), []byte("x"), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for b.Loop() {
		n := 0
		if err := Walk(context.Background(), root, Options{}, func(Entry) error { n++; return nil }); err != nil || n != 20000 {
			b.Fatalf("Walk = %v after %d entries; want nil after 20000", err, n)
		}
	}
}

// TestWalkPathOrder: files are met in the byte order of their paths, as
// an index of paths lists them: file "b.txt" and "b-c" before directory
// "b" ('-' and '.' sort before '/'), and "b0" after it.
func TestWalkPathOrder(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, dir, map[string]int{"b/x": 1, "b/y.d/z": 1, "b/y": 1, "b.txt": 1, "b-c": 1, "b0": 1, "a": 1, "b/y-1": 1})
	var got []string
	err := Walk(context.Background(), dir, Options{Error: func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) }},
		func(e Entry) error {
			got = append(got, e.Path)
			return nil
		})
	if err != nil {
		t.Fatalf("Walk = %v", err)
	}
	want := slices.Clone(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Walk met %q; want %q (path order)", got, want)
	}
	if len(got) != 8 {
		t.Errorf("Walk met %d files; want 8", len(got))
	}
}

// TestWalkListed checks that the files of a directory granted Listed, and
// of those below it, come as listed (path, device and inode number, no
// lstat, empty ones too), in the same order as stat'ed ones; that the
// others are stat'ed; and that what is not a regular file is skipped as
// before.
func TestWalkListed(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, dir, map[string]int{
		"a":         10,
		"l/b0":      20,
		"l/b.txt":   30,
		"l/b/c":     40,
		"l/empty":   0,
		"l/x/y/z":   50,
		"l/skip.go": 60,
		"m":         70,
	})
	if err := os.Symlink("b", filepath.Join(dir, "l/link")); err != nil {
		t.Fatal(err)
	}
	walkAll := func(listed func(string, *unix.Stat_t) bool) (paths []string, entries map[string]Entry, skipped map[string]string, asked []string) {
		entries, skipped = map[string]Entry{}, map[string]string{}
		o := Options{
			Exclude: []string{"*.go"},
			Skipped: func(path, why string) { skipped[path[len(dir)+1:]] = why },
			Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
		}
		if listed != nil {
			o.Listed = func(path string, st *unix.Stat_t) bool {
				asked = append(asked, strings.TrimPrefix(path[len(dir):], "/"))
				return listed(path, st)
			}
		}
		err := Walk(context.Background(), dir, o, func(e Entry) error {
			paths = append(paths, e.Path[len(dir)+1:])
			entries[e.Path[len(dir)+1:]] = e
			return nil
		})
		if err != nil {
			t.Fatalf("Walk = %v", err)
		}
		return paths, entries, skipped, asked
	}
	plain, stated, plainSkipped, _ := walkAll(nil)
	got, entries, skipped, asked := walkAll(func(path string, _ *unix.Stat_t) bool { return path == dir+"/l" })
	if want := []string{"a", "l/b.txt", "l/b/c", "l/b0", "l/x/y/z", "m"}; !slices.Equal(plain, want) {
		t.Errorf("walk without Listed met %q; want %q", plain, want)
	}
	if want := []string{"a", "l/b.txt", "l/b/c", "l/b0", "l/empty", "l/x/y/z", "m"}; !slices.Equal(got, want) {
		t.Errorf("walk with Listed met %q; want %q (the empty file as listed)", got, want)
	}
	// Asked of each directory whose parent was not granted it.
	if want := []string{"", "l"}; !slices.Equal(asked, want) {
		t.Errorf("Listed asked of %q; want %q", asked, want)
	}
	for _, p := range got {
		e := entries[p]
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		want := Entry{Path: e.Path, Stat: fsys.FromStat(&st), Nlink: uint64(st.Nlink)}
		if strings.HasPrefix(p, "l/") {
			want = Entry{Path: e.Path, Stat: fsys.Stat{Dev: uint64(st.Dev), Ino: st.Ino}, Listed: true}
		} else if e != stated[p] {
			t.Errorf("%s: %+v with Listed, %+v without", p, e, stated[p])
		}
		if e != want {
			t.Errorf("%s: %+v; want %+v", p, e, want)
		}
	}
	wantSkipped := map[string]string{"l/link": "symlink"}
	if !maps.Equal(skipped, wantSkipped) {
		t.Errorf("skipped with Listed %v; want %v", skipped, wantSkipped)
	}
	wantSkipped["l/empty"] = "empty"
	if !maps.Equal(plainSkipped, wantSkipped) {
		t.Errorf("skipped without Listed %v; want %v", plainSkipped, wantSkipped)
	}
}

// TestWalkFiles checks that a directory whose files Options.Files
// withholds hands over nothing but its subdirectories, which the walk
// enters as Enter says, the root included; and that Files is asked of
// each directory entered.
func TestWalkFiles(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, dir, map[string]int{
		"a":       10,
		"p/b":     20,
		"p/q/c":   30,
		"p/r/d":   40,
		"p/r/s/e": 50,
		"x/f":     60,
	})
	if err := os.Symlink("a", filepath.Join(dir, "p/link")); err != nil {
		t.Fatal(err)
	}
	var asked []string
	rel := func(path string) string { return strings.TrimPrefix(path[len(dir):], "/") }
	walked := func(files, enter func(string) bool) (paths, skipped []string) {
		asked = nil
		o := Options{
			Files: func(path string, _ *unix.Stat_t) bool {
				asked = append(asked, rel(path))
				return files(rel(path))
			},
			Enter:   func(path string, _ *unix.Stat_t) bool { return enter(rel(path)) },
			Skipped: func(path, _ string) { skipped = append(skipped, rel(path)) },
			Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
		}
		err := Walk(context.Background(), dir, o, func(e Entry) error {
			paths = append(paths, rel(e.Path))
			return nil
		})
		if err != nil {
			t.Fatalf("Walk = %v", err)
		}
		return paths, skipped
	}
	// Only below p/r: the root and p are gone through, x is not entered.
	paths, skipped := walked(func(d string) bool { return d == "p/r" || strings.HasPrefix(d, "p/r/") },
		func(d string) bool { return d == "p" || d == "p/r" || strings.HasPrefix(d, "p/r/") })
	if want := []string{"p/r/d", "p/r/s/e"}; !slices.Equal(paths, want) {
		t.Errorf("walk met %q; want %q", paths, want)
	}
	if len(skipped) != 0 {
		t.Errorf("skipped %q; want nothing (the symlink in p withheld)", skipped)
	}
	if want := []string{"", "p", "p/r", "p/r/s"}; !slices.Equal(asked, want) {
		t.Errorf("Files asked of %q; want %q", asked, want)
	}
	// Every directory's files but the root's.
	paths, _ = walked(func(d string) bool { return d != "" }, func(string) bool { return true })
	if want := []string{"p/b", "p/q/c", "p/r/d", "p/r/s/e", "x/f"}; !slices.Equal(paths, want) {
		t.Errorf("walk met %q; want %q", paths, want)
	}
}

func TestParseDirents(t *testing.T) {
	rec := func(ino uint64, typ uint8, name string, pad int) []byte {
		b := make([]byte, 19+len(name)+1+pad)
		binary.NativeEndian.PutUint64(b, ino)
		binary.NativeEndian.PutUint16(b[16:], uint16(len(b)))
		b[18] = typ
		copy(b[19:], name)
		return b
	}
	buf := slices.Concat(rec(1, unix.DT_DIR, ".", 4), rec(2, unix.DT_DIR, "..", 3), rec(7, unix.DT_REG, "file", 0), rec(9, unix.DT_LNK, "ln", 6))
	got, err := parseDirents(buf, nil)
	if want := []dirent{{"file", 7, unix.DT_REG}, {"ln", 9, unix.DT_LNK}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseDirents = %v, %v; want %v", got, err, want)
	}
	for _, bad := range [][]byte{buf[:10], slices.Concat(rec(7, unix.DT_REG, "file", 0)[:20])} {
		if _, err := parseDirents(bad, nil); err == nil {
			t.Errorf("parseDirents of %d bytes: no error", len(bad))
		}
	}
}

// writeSized writes each file of files below dir, its size bytes of zeros,
// with the directories it needs.
func writeSized(t *testing.T, dir string, files map[string]int) {
	t.Helper()
	for name, size := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The mounts the walk is given decide, by their types' names, what it
// leaves out where it meets their mount points, without looking at them:
// here directories of the temporary directory's own filesystem stand for
// an NFS share, a FUSE mount hidden by a btrfs mounted on it later, and an
// NFS share below a directory a btrfs was mounted on later. A root below
// a mount left out is skipped whole; with OneFS, a mount point left out
// is counted skipped, as any other filesystem's, and not told.
func TestWalkMounts(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, dir, map[string]int{"a": 10, "nfs/b": 10, "over/c": 10, "x/y/d": 10})
	ms := NewMounts([]fsys.Mount{
		{Point: "/", Type: "xfs", Dev: 1}, // XFS and btrfs are walked, whatever their name
		{Point: dir + "/nfs", Type: "nfs4", Dev: 42},
		{Point: dir + "/over", Type: "fuse.sshfs", Dev: 43},
		{Point: dir + "/over", Type: "btrfs", Dev: 44},
		{Point: dir + "/x/y", Type: "nfs", Dev: 45},
		{Point: dir + "/x", Type: "btrfs", Dev: 46},
	}, true)
	if want := (Mount{Type: "nfs4", Dev: 42, Skip: true}); ms.at[dir+"/nfs"] != want {
		t.Errorf("NewMounts: %s = %+v; want %+v", dir+"/nfs", ms.at[dir+"/nfs"], want)
	}
	for _, p := range []string{dir + "/x/y"} {
		if m, ok := ms.at[p]; ok {
			t.Errorf("NewMounts: %s = %+v; want it hidden by a later mount above it", p, m)
		}
	}
	walk := func(root string, oneFS bool) (found []string, told, skipped map[string]string) {
		told, skipped = map[string]string{}, map[string]string{}
		o := Options{
			Mounts: ms,
			OneFS:  oneFS,
			Unwalked: func(path, fsType string, dev uint64, pseudo bool) {
				told[path] = fmt.Sprint(fsType, " ", dev, " ", pseudo)
			},
			Skipped: func(path, why string) { skipped[path] = why },
			Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
		}
		if err := Walk(context.Background(), root, o, func(e Entry) error {
			found = append(found, strings.TrimPrefix(e.Path, dir+"/"))
			return nil
		}); err != nil {
			t.Fatalf("Walk(%s) = %v", root, err)
		}
		return found, told, skipped
	}
	found, told, skipped := walk(dir, false)
	if want := []string{"a", "over/c", "x/y/d"}; !slices.Equal(found, want) {
		t.Errorf("found %q; want %q", found, want)
	}
	if want := map[string]string{dir + "/nfs": "nfs4 42 false"}; !maps.Equal(told, want) || len(skipped) != 0 {
		t.Errorf("told %v, skipped %v; want %v and nothing skipped", told, skipped, want)
	}
	found, told, skipped = walk(dir+"/nfs/b", false)
	if want := map[string]string{dir + "/nfs/b": "nfs4 42 false"}; len(found) != 0 || !maps.Equal(told, want) || len(skipped) != 1 {
		t.Errorf("a root below: found %q, told %v, skipped %v; want nothing found, %v told and the root skipped", found, told, skipped, want)
	}
	found, told, skipped = walk(dir, true)
	if want := map[string]string{dir + "/nfs": "on another filesystem"}; !slices.Equal(found, []string{"a", "over/c", "x/y/d"}) || len(told) != 0 || !maps.Equal(skipped, want) {
		t.Errorf("with OneFS: found %q, told %v, skipped %v; want a, over/c, x/y/d, nothing told, %v", found, told, skipped, want)
	}
}

// In a filesystem the walk does not list (the temporary directory's, as
// an ext4 is not listed with DedupeOnly), it goes only toward the mount
// points below of filesystems it lists, and enters them: here an XFS two
// levels down, and one below a FUSE mount; the rest of the directory, a
// FUSE mount with nothing listed below among it, is not met.
func TestWalkTowardMounts(t *testing.T) {
	dir := t.TempDir()
	if f, err := os.Open(dir); err != nil {
		t.Fatal(err)
	} else if _, can := fstype.CanDedupe(int(f.Fd())); f.Close() == nil && can {
		t.Skip("the temporary directory's filesystem can deduplicate: it would be listed")
	}
	writeSized(t, dir, map[string]int{"a": 10, "deep/er/xfs/b": 10, "deep/c": 10, "other/d": 10, "fuse/xfs/e": 10, "fuse/f": 10, "fuse2/g": 10})
	ms := NewMounts([]fsys.Mount{
		{Point: "/", Type: "ext4", Dev: 1},
		{Point: dir + "/deep/er/xfs", Type: "xfs", Dev: 2},
		{Point: dir + "/fuse", Type: "fuse.sshfs", Dev: 3},
		{Point: dir + "/fuse/xfs", Type: "xfs", Dev: 4},
		{Point: dir + "/fuse2", Type: "fuse.sshfs", Dev: 5},
	}, true)
	if got, want := ms.toward(dir), []string{"deep", "fuse"}; !slices.Equal(got, want) {
		t.Errorf("toward(%s) = %q; want %q", dir, got, want)
	}
	var dirs []string
	told := map[string]string{}
	o := Options{
		DedupeOnly: true,
		Mounts:     ms,
		Dir:        func(path string, _ *unix.Stat_t) { dirs = append(dirs, strings.TrimPrefix(path, dir)) },
		Unwalked:   func(path, fsType string, dev uint64, pseudo bool) { told[strings.TrimPrefix(path, dir)] = fsType },
		Error:      func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
	}
	var found []string
	if err := Walk(context.Background(), dir, o, func(e Entry) error { found = append(found, e.Path); return nil }); err != nil {
		t.Fatal(err)
	}
	// What lies on the temporary directory's filesystem is not listed,
	// so the stand-ins for XFS are entered and found empty.
	if want := []string{"", "/deep", "/deep/er", "/deep/er/xfs", "/fuse", "/fuse/xfs"}; !slices.Equal(dirs, want) || len(found) != 0 {
		t.Errorf("entered %q, found %q; want %q and nothing found", dirs, found, want)
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(dir, &sf); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"": fstype.Name(int64(sf.Type))}; !maps.Equal(told, want) {
		t.Errorf("told %v; want %v: the root's filesystem, and not /fuse2, which the walk does not meet", told, want)
	}
}

// TestMountsListed: where the filesystems that a walk of a root lists are
// found, as the mounts say.
func TestMountsListed(t *testing.T) {
	ms := NewMounts([]fsys.Mount{
		{Point: "/", Type: "ext4", Dev: 1},
		{Point: "/srv", Type: "btrfs", Dev: 2},
		{Point: "/srv/share", Type: "nfs4", Dev: 3},
		{Point: "/srv/share/xfs", Type: "xfs", Dev: 4},
		{Point: "/srv2", Type: "xfs", Dev: 5},
		{Point: "/proc", Type: "proc", Dev: 6},
	}, true)
	for root, want := range map[string][]string{
		"/":          {"/srv", "/srv/share/xfs", "/srv2"},
		"/srv":       {"/srv", "/srv/share/xfs"},
		"/srv/a":     {"/srv/a"},
		"/srv/share": {"/srv/share/xfs"},
		"/home":      nil,
		"/proc/1":    nil,
	} {
		if got := ms.Listed(root); !slices.Equal(got, want) {
			t.Errorf("Listed(%s) = %q; want %q", root, got, want)
		}
	}
	if got := (*Mounts)(nil).Listed("/x"); !slices.Equal(got, []string{"/x"}) {
		t.Errorf("Listed of no mounts = %q; want the root", got)
	}
}

// A directory of more entries than bigDir is walked from sorted runs in a
// temporary file, and the walk meets what it met with the directory held
// in memory, in the same order, with the same things skipped and left
// out: a directory "b" after the file "b.txt", an excluded name, an empty
// file, a symbolic link, the files below a subdirectory. Where no
// temporary file can be made, the directory is held in memory, as before.
func TestWalkBigDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"b/x": 1, "b/y.d/z": 1, "b.txt": 1, "b-c": 1, "b0": 1, "a": 1, "skip.tmp": 1, "empty": 0}
	for i := range 700 {
		files[fmt.Sprintf("f%04d", (i*7919)%1000)] = 1 + i%3
	}
	writeSized(t, dir, files)
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	walkAll := func(tempDir string) []string {
		var got []string
		o := Options{
			Exclude: []string{"*.tmp"},
			Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
			Skipped: func(path, why string) { got = append(got, "skipped "+path+": "+why) },
			TempDir: tempDir,
		}
		err := Walk(context.Background(), dir, o, func(e Entry) error {
			got = append(got, fmt.Sprintf("%s %d", e.Path, e.Size))
			return nil
		})
		if err != nil {
			t.Fatalf("Walk = %v", err)
		}
		return got
	}
	want := walkAll(t.TempDir())
	if len(want) != len(files)-2+2 { // less the excluded and empty files, plus the two skipped
		t.Fatalf("Walk met %d entries; want %d", len(want), len(files))
	}
	defer func(b, c int) { bigDir, chunk = b, c }(bigDir, chunk)
	for _, tt := range []struct {
		big, chunk int
		tempDir    string
	}{
		{64, 50, t.TempDir()},
		{100, 1, t.TempDir()},
		{64, 7, filepath.Join(dir, "no such directory")},
	} {
		bigDir, chunk = tt.big, tt.chunk
		if got := walkAll(tt.tempDir); !slices.Equal(got, want) {
			t.Errorf("bigDir %d, chunk %d, temporary files in %s: Walk met\n%q\nwant\n%q", tt.big, tt.chunk, tt.tempDir, got, want)
		}
	}
}

// spill sorts a directory's entries in runs of bigDir and merges them in
// path order, whatever the batches read hold.
func TestSpill(t *testing.T) {
	dir := t.TempDir()
	files := make(map[string]int)
	for i := range 500 {
		files[fmt.Sprintf("n%03d", (i*37)%500)] = 1
	}
	for _, d := range []string{"n100", "n2", "n30"} {
		files[d+"/x"] = 1
		delete(files, d)
	}
	writeSized(t, dir, files)
	defer func(b int) { bigDir = b }(bigDir)
	bigDir = 40
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	first, more, err := readDirentsUpTo(fd, nil, bigDir)
	if err != nil || !more {
		t.Fatalf("readDirentsUpTo = %d entries, %v, %v; want more", len(first), more, err)
	}
	s, readErr, err := spill(fd, t.TempDir(), first, func(e *dirent) bool { return e.name != "n007" })
	if err != nil || readErr != nil {
		t.Fatalf("spill: %v, %v", readErr, err)
	}
	defer s.close()
	if len(s.runs) < 500/40 {
		t.Errorf("%d runs; want at least %d", len(s.runs), 500/40)
	}
	var got []string
	var ents []dirent
	for {
		if ents = s.next(7, ents); len(ents) == 0 {
			break
		}
		for _, e := range ents {
			k := e.name
			if e.typ == unix.DT_DIR {
				k += "/"
			}
			got = append(got, k)
		}
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	var want []string
	for i := range 500 {
		name := fmt.Sprintf("n%03d", i)
		if name != "n007" && name != "n100" {
			want = append(want, name)
		}
	}
	want = append(want, "n100/", "n2/", "n30/")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("merged %d entries %q...; want %d %q...", len(got), got[:min(len(got), 12)], len(want), want[:12])
	}
}

// compareKeys puts a directory's name where its path, with a slash after
// it, goes: after the file "b.txt" ('.' < '/') and before "b0".
func TestCompareKeys(t *testing.T) {
	ents := []dirent{{name: "b0"}, {name: "b", typ: unix.DT_DIR}, {name: "b.txt"}, {name: "b-c"}, {name: "a"}, {name: "bb", typ: unix.DT_DIR}, {name: "ba"}}
	slices.SortFunc(ents, compareKeys)
	var got []string
	for _, e := range ents {
		got = append(got, e.name)
	}
	if want := []string{"a", "b-c", "b.txt", "b", "b0", "ba", "bb"}; !slices.Equal(got, want) {
		t.Errorf("sorted %q; want %q", got, want)
	}
}

// A large directory whose spill fails partway is read whole again; the
// mount points in it that the walk leaves out are told of once all the
// same, and with OneFS counted skipped once.
func TestSpillFailsPartway(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"m1/x": 1, "m2/y": 1}
	for i := range 200 {
		files[fmt.Sprintf("f%03d", i)] = 1
	}
	writeSized(t, dir, files)
	ms := NewMounts([]fsys.Mount{
		{Point: "/", Type: "xfs", Dev: 1},
		{Point: dir + "/m1", Type: "nfs4", Dev: 42},
		{Point: dir + "/m2", Type: "fuse.sshfs", Dev: 43},
	}, true)
	defer func(b int) { bigDir = b }(bigDir)
	bigDir = 64
	t.Cleanup(func() { spillFault = nil })
	for _, oneFS := range []bool{false, true} {
		for _, fail := range []int{0, 1, 3} { // the run whose write fails (0: none)
			runs := 0
			spillFault = func() error {
				if runs++; runs == fail {
					return unix.ENOSPC
				}
				return nil
			}
			var told []string
			met := 0
			o := Options{
				Mounts: ms,
				OneFS:  oneFS,
				Unwalked: func(path, fsType string, dev uint64, pseudo bool) {
					told = append(told, "unwalked "+path)
				},
				Skipped: func(path, why string) { told = append(told, "skipped "+path+": "+why) },
				Error:   func(path string, err error) { t.Errorf("Error(%s, %v)", path, err) },
				TempDir: t.TempDir(),
			}
			if err := Walk(context.Background(), dir, o, func(e Entry) error {
				met++
				return nil
			}); err != nil {
				t.Fatalf("Walk = %v", err)
			}
			want := []string{"unwalked " + dir + "/m1", "unwalked " + dir + "/m2"}
			if oneFS {
				want = []string{"skipped " + dir + "/m1: on another filesystem", "skipped " + dir + "/m2: on another filesystem"}
			}
			slices.Sort(told)
			if met != 200 || !slices.Equal(told, want) || runs < max(fail, 3*(1-min(fail, 1))) {
				t.Errorf("OneFS %v, run %d of %d failing: met %d files, told %q; want 200, %q", oneFS, fail, runs, met, told, want)
			}
		}
	}
}
