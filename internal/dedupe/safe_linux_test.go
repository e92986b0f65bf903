package dedupe_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/fsys"
	"same/internal/testfs"
)

// swap exchanges a and b (renameat2 RENAME_EXCHANGE) over and over until
// the test ends.
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
			runtime.Gosched()
			if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange %s and %s: %v", a, b, err)
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// watchOpens watches path with inotify and returns a function that
// reports whether anything opened it since.
func watchOpens(t *testing.T, path string) func() bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN|unix.IN_ACCESS|unix.IN_CLOSE); err != nil {
		t.Fatal(err)
	}
	return func() bool {
		var buf [4096]byte
		n, err := unix.Read(fd, buf[:])
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
}

// TestOpenSwappedDirectory opens a plan path whose directory keeps
// trading places with a symlink to a directory outside, holding a secret
// file: Open never opens the secret, even with a plan that names the
// secret's identity under the inside path.
func TestOpenSwappedDirectory(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "d", "f")
	writeFile(t, path, []byte("mine  "))
	writeFile(t, filepath.Join(out, "f"), []byte("secret"))
	mine, secret := identity(t, path), identity(t, filepath.Join(out, "f"))
	if err := os.Symlink(out, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	swap(t, filepath.Join(root, "d"), filepath.Join(root, "link"))

	var opened, refused int
	for range 2000 {
		if f, err := dedupe.Open(path, secret); err == nil {
			f.Close()
			t.Fatalf("dedupe.Open(%s) opened the file outside", path)
		}
		f, err := dedupe.Open(path, mine)
		if err != nil {
			refused++
			continue
		}
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		f.Close()
		if st.Ino != mine.Ino {
			t.Fatalf("dedupe.Open(%s) opened inode %d; want %d", path, st.Ino, mine.Ino)
		}
		opened++
	}
	t.Logf("opened %d times, refused %d", opened, refused)
}

// TestOpenThroughSymlinkedDirectory opens plan paths that lead through a
// symlinked directory to a FIFO (a plain open of one with no writer
// hangs) and to /dev: each is refused, naming the symlink, and nothing is
// opened.
func TestOpenThroughSymlinkedDirectory(t *testing.T) {
	root, devs := t.TempDir(), t.TempDir()
	fifo := filepath.Join(devs, "null")
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"dir2": devs, "dev2": "/dev"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	opened := watchOpens(t, fifo)
	tests := []struct {
		path, err string
	}{
		{filepath.Join(root, "dir2", "null"), "path component " + filepath.Join(root, "dir2") + " is a symlink (too many levels of symbolic links)"},
		{filepath.Join(root, "dev2", "null"), "path component " + filepath.Join(root, "dev2") + " is a symlink (too many levels of symbolic links)"},
		{fifo, "is a FIFO"},
	}
	for _, tt := range tests {
		f, err := dedupe.Open(tt.path, fsys.Identity{})
		if f != nil {
			f.Close()
		}
		if err == nil || err.Error() != tt.err {
			t.Errorf("dedupe.Open(%s) = %v; want %q", tt.path, err, tt.err)
		}
		if !errors.Is(err, dedupe.ErrNotRegular) {
			t.Errorf("errors.Is(%v, dedupe.ErrNotRegular) = false; want true", err)
		}
	}
	if opened() {
		t.Errorf("the FIFO was opened")
	}
}

// TestRewriteSwappedParent rewrites a file whose directory is replaced,
// after the file was opened, by a symlink to another directory of the
// same filesystem, or by another directory: the unnamed copy is never
// made there.
func TestRewriteSwappedParent(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	ctx := context.Background()
	dir, out := filepath.Join(mnt, "d"), filepath.Join(mnt, "out")
	for _, d := range []string{dir, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "f")
	data := randomBytes(7, 2<<20)
	f := writeOpen(t, path, data)
	spans := []dedupe.Span{{Off: 0, Len: 512 << 10}}

	// Made outside: an unnamed file open in this process whose directory
	// is out.
	var outside []string
	dedupe.SetAfterCopy(func() {
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, out+"/") {
				outside = append(outside, l)
			}
		}
	})
	t.Cleanup(func() { dedupe.SetAfterCopy(nil) })

	// The directory is now a symlink to out.
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, dir); err != nil {
		t.Fatal(err)
	}
	_, _, err := dedupe.Rewrite(ctx, f, path, f, path, spans, 0)
	if want := "open " + dir + ": is a symlink (too many levels of symbolic links)"; err == nil || err.Error() != want {
		t.Errorf("Rewrite with its directory a symlink = %v; want %q", err, want)
	}

	// The directory is now another directory.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, data)
	if _, _, err := dedupe.Rewrite(ctx, f, path, f, path, spans, 0); !errors.Is(err, dedupe.ErrMoved) {
		t.Errorf("Rewrite with its directory replaced = %v; want ErrMoved", err)
	}

	// Back in place, while the directory keeps trading places with a
	// symlink to out.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".moved", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
	swap(t, dir, filepath.Join(mnt, "link"))
	done := 0
	errs := map[string]int{}
	for range 50 {
		_, _, err := dedupe.Rewrite(ctx, f, path, f, path, spans, 0)
		if err == nil {
			done++
		} else {
			errs[err.Error()]++
		}
	}
	t.Logf("%d of 50 rewrites done while the directory was swapped; errors %v", done, errs)
	if len(outside) > 0 {
		t.Errorf("the copy was made in %s: %q", out, outside)
	}
	got := make([]byte, len(data)+1)
	if n, _ := f.ReadAt(got, 0); n != len(data) || !bytes.Equal(got[:n], data) {
		t.Errorf("content changed")
	}
}

// BenchmarkOpen opens and closes a file three directories down: the
// lookup, the check and the reopen through /proc/self/fd.
func BenchmarkOpen(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "a", "b", "c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	writeFile(b, path, []byte("data"))
	id := identity(b, path)
	for b.Loop() {
		f, err := dedupe.Open(path, id)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
