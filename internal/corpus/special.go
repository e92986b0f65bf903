//go:build linux

package corpus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Special adds special entries under dir/special: a FIFO ("fifo"), a
// character device with the numbers of /dev/zero ("zero", 1:5), a unix
// socket ("socket", bound and closed), a symbolic link to the largest
// regular file under dir ("link-to-big"), one to /dev/zero
// ("link-to-dev-zero"), an empty file ("empty") and two hard links to the
// largest file ("hardlink-1", "hardlink-2"). When dir holds no regular
// file, it first writes a 4 MiB one ("special/big").
//
// Making the device needs CAP_MKNOD (root, outside some containers):
// without it Special makes everything else and returns an error wrapping
// fs.ErrPermission.
func Special(dir string) error {
	big, err := largestFile(dir)
	if err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	sp := filepath.Join(dir, "special")
	if err := os.MkdirAll(sp, 0o755); err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	if big == "" {
		big = filepath.Join(sp, "big")
		t := &tree{root: dir, w: newWriter()}
		if err := t.writeStream(filepath.Join("special", "big"), 0x5bec1a1, 4<<20); err != nil {
			return fmt.Errorf("special entries: %w", err)
		}
	}
	target, err := filepath.Rel(sp, big)
	if err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	steps := []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"socket", makeSocket},
		{"link-to-big", func(p string) error { return os.Symlink(target, p) }},
		{"link-to-dev-zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"empty", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"hardlink-1", func(p string) error { return os.Link(big, p) }},
		{"hardlink-2", func(p string) error { return os.Link(big, p) }},
	}
	for _, s := range steps {
		path := filepath.Join(sp, s.name)
		if err := s.make(path); err != nil {
			return fmt.Errorf("special entry %s: %w", path, err)
		}
	}
	path := filepath.Join(sp, "zero")
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		return fmt.Errorf("special entry %s: mknod: %w", path, err)
	}
	return nil
}

// makeSocket leaves a unix socket file at path: bound, never listened on,
// closed. A path too long for sockaddr_un is reached through the
// directory's descriptor in /proc/self/fd.
func makeSocket(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	name := path
	if len(name) >= 100 {
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return err
		}
		defer d.Close()
		name = fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path))
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// largestFile returns the largest regular file under dir (the first in
// lexical order among equals), or "" when there is none.
func largestFile(dir string) (string, error) {
	var best string
	var bestSize int64 = -1
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > bestSize {
			best, bestSize = path, fi.Size()
		}
		return nil
	})
	return best, err
}
