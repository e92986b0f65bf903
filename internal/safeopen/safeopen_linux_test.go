package safeopen_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/safeopen"
)

// watchOpens watches path with inotify and returns a function that reports
// whether anything opened it since: an O_PATH descriptor is no open.
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

// both runs f with openat2 and with the component-by-component walk.
func both(t *testing.T, f func(t *testing.T)) {
	for _, use := range []bool{true, false} {
		name := "openat2"
		if !use {
			name = "components"
		}
		t.Run(name, func(t *testing.T) {
			defer safeopen.UseOpenat2(use)()
			f(t)
		})
	}
}

func TestLookup(t *testing.T) {
	both(t, func(t *testing.T) {
		dir := t.TempDir()
		out := t.TempDir()
		mustWrite(t, filepath.Join(dir, "d", "f"), "mine")
		mustWrite(t, filepath.Join(out, "f"), "secret")
		mustSymlink(t, out, filepath.Join(dir, "link"))
		mustSymlink(t, "f", filepath.Join(dir, "d", "flink"))
		if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}

		// A regular file opens; what is read is the file.
		h, err := safeopen.Lookup(filepath.Join(dir, "d", "f"))
		if err != nil {
			t.Fatalf("Lookup(d/f) = %v", err)
		}
		f, err := h.Open(unix.O_RDONLY)
		h.Close()
		if err != nil {
			t.Fatalf("Open(d/f) = %v", err)
		}
		b := make([]byte, 10)
		n, _ := f.Read(b)
		f.Close()
		if got := string(b[:n]); got != "mine" {
			t.Errorf("read %q; want %q", got, "mine")
		}

		// A symlink in the middle is refused and named.
		_, err = safeopen.Lookup(filepath.Join(dir, "link", "f"))
		var se *safeopen.SymlinkError
		if !errors.As(err, &se) || se.Path != filepath.Join(dir, "link") || !errors.Is(err, unix.ELOOP) {
			t.Errorf("Lookup(link/f) = %v; want a SymlinkError naming %s", err, filepath.Join(dir, "link"))
		}
		if want := "path component " + filepath.Join(dir, "link") + " is a symlink"; err == nil || err.Error() != want {
			t.Errorf("Lookup(link/f) = %v; want %q", err, want)
		}

		// A symlink at the end is returned as itself, and not opened.
		h, err = safeopen.Lookup(filepath.Join(dir, "d", "flink"))
		if err != nil {
			t.Fatalf("Lookup(d/flink) = %v", err)
		}
		if h.Stat.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("Lookup(d/flink).Stat.Mode = %#o; want a symlink", h.Stat.Mode)
		}
		if f, err := h.Open(unix.O_RDONLY); err == nil {
			f.Close()
			t.Errorf("Open of a symlink's handle = nil; want an error")
		}
		h.Close()

		// A FIFO with no writer: looked up, refused, never opened (a
		// plain open would hang).
		opened := watchOpens(t, filepath.Join(dir, "fifo"))
		h, err = safeopen.Lookup(filepath.Join(dir, "fifo"))
		if err != nil {
			t.Fatalf("Lookup(fifo) = %v", err)
		}
		if h.Stat.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("Lookup(fifo).Stat.Mode = %#o; want a FIFO", h.Stat.Mode)
		}
		if f, err := h.Open(unix.O_RDONLY); err == nil {
			f.Close()
			t.Errorf("Open of a FIFO's handle = nil; want an error")
		}
		h.Close()
		if opened() {
			t.Errorf("the FIFO was opened")
		}
		// The watch does see an open.
		if fd, err := unix.Open(filepath.Join(dir, "fifo"), unix.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			unix.Close(fd)
		}
		if !opened() {
			t.Errorf("inotify saw no open of the FIFO after opening it")
		}

		// Missing files and files in the way of a directory.
		if _, err := safeopen.Lookup(filepath.Join(dir, "nope")); !errors.Is(err, unix.ENOENT) {
			t.Errorf("Lookup(nope) = %v; want ENOENT", err)
		}
		if _, err := safeopen.Lookup(filepath.Join(dir, "d", "f", "x")); !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("Lookup(d/f/x) = %v; want ENOTDIR", err)
		}

		// The root, directories and relative paths.
		for _, p := range []string{"/", dir, "."} {
			h, err := safeopen.Lookup(p)
			if err != nil {
				t.Errorf("Lookup(%s) = %v", p, err)
				continue
			}
			d, err := h.Open(unix.O_RDONLY | unix.O_DIRECTORY)
			if err != nil {
				t.Errorf("Open(%s) = %v", p, err)
			} else {
				d.Close()
			}
			h.Close()
		}
	})
}

// TestOpenWithoutProc opens a handle as where /proc is not mounted: the
// path is looked up again and must still be the handle's inode.
func TestOpenWithoutProc(t *testing.T) {
	defer safeopen.WithoutProc()()
	both(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		mustWrite(t, path, "mine")
		h, err := safeopen.Lookup(path)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		f, err := h.Open(unix.O_RDONLY)
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		f.Close()

		// Replaced by another file: refused.
		if err := os.Rename(path, path+".old"); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, path, "other")
		if f, err := h.Open(unix.O_RDONLY); !errors.Is(err, safeopen.ErrReplaced) {
			if err == nil {
				f.Close()
			}
			t.Errorf("Open after the file was replaced = %v; want ErrReplaced", err)
		}

		// A directory is opened from its descriptor: the one looked
		// up, though another took its name since.
		sub := filepath.Join(dir, "sub")
		mustWrite(t, filepath.Join(sub, "mine"), "mine")
		d, err := safeopen.Lookup(sub)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := os.Rename(sub, sub+".old"); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(sub, "other"), "other")
		f, err = d.Open(unix.O_RDONLY)
		if err != nil {
			t.Fatalf("Open of a directory renamed = %v", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil || !slices.Equal(names, []string{"mine"}) {
			t.Errorf("the directory opened holds %q, %v; want [mine]", names, err)
		}
	})
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}
