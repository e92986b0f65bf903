package safeopen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
)

// Handle is an O_PATH descriptor of a file reached with no symlink
// followed. It opens nothing until Open is called.
type Handle struct {
	fd   int
	path string
	// Stat is what fstat(2) said of the descriptor at lookup.
	Stat unix.Stat_t
}

// SymlinkError says that a directory of a path is a symlink, which a
// lookup does not follow. It unwraps to ELOOP.
type SymlinkError struct {
	// Path is the path up to and including the symlink, or "" when the
	// lookup failed on one that was gone when it was looked for.
	Path string
}

func (e *SymlinkError) Error() string {
	if e.Path == "" {
		return "a directory of the path is a symlink"
	}
	return "path component " + e.Path + " is a symlink"
}

func (e *SymlinkError) Unwrap() error { return unix.ELOOP }

// ErrReplaced is the error of Open when the name it opened again (without
// /proc) leads to another file than the handle's.
var ErrReplaced = errors.New("replaced while being opened")

// procFD is where a process's descriptors are, as magic links; tests
// point it where there is nothing, as without /proc.
var procFD = "/proc/self/fd/"

// noOpenat2 is set once the kernel answers openat2 with ENOSYS, and by
// tests to exercise the component-by-component lookup.
var noOpenat2 atomic.Bool

// Lookup returns an O_PATH descriptor of path, reached without following
// a symlink in any component. A symlink at the end is returned as itself:
// Stat says S_IFLNK. Errors are bare errnos or a *SymlinkError; they do not
// repeat path.
func Lookup(path string) (*Handle, error) {
	fd, err := open(path, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	h := &Handle{fd: fd, path: path}
	// Asking no server: see fsys.Lstat.
	if _, _, err := fsys.Lstat(fd, "", &h.Stat); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fstat: %w", err)
	}
	return h, nil
}

// Fd returns the O_PATH descriptor, valid until Close: a directory
// handle's descriptor serves as the dirfd of *at system calls.
func (h *Handle) Fd() int { return h.fd }

// Close closes the descriptor.
func (h *Handle) Close() error { return unix.Close(h.fd) }

// Open opens the handle's file with flags (O_RDONLY, O_DIRECTORY,
// O_NOATIME, ...; O_CLOEXEC and O_NOCTTY are added) if it is a regular
// file or a directory, and refuses anything else without opening it. The
// file opened is the handle's inode: it is reopened through
// /proc/self/fd. Without /proc, the path is looked up again in the same
// way and opened non-blocking, and a different inode there is
// ErrReplaced. O_NOATIME, which only the file's owner or CAP_FOWNER may
// ask, is dropped where the caller may not.
func (h *Handle) Open(flags int) (*os.File, error) {
	f, err := h.open(flags)
	if errors.Is(err, unix.EPERM) && flags&unix.O_NOATIME != 0 {
		return h.open(flags &^ unix.O_NOATIME)
	}
	return f, err
}

func (h *Handle) open(flags int) (*os.File, error) {
	switch h.Stat.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
	default:
		return nil, fmt.Errorf("not a regular file or directory (mode %#o)", h.Stat.Mode)
	}
	flags |= unix.O_CLOEXEC | unix.O_NOCTTY
	if h.Stat.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags |= unix.O_DIRECTORY
	}
	fd, err := Reopen(h.fd, flags)
	if err == nil {
		// The descriptor's own file: no check needed.
		return os.NewFile(uintptr(fd), h.path), nil
	}
	if err != unix.ENOENT || flags&unix.O_DIRECTORY != 0 {
		return nil, err
	}
	// No /proc.
	fd, err = open(h.path, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if _, _, err := fsys.Lstat(fd, "", &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fstat: %w", err)
	}
	if st.Dev != h.Stat.Dev || st.Ino != h.Stat.Ino {
		unix.Close(fd)
		return nil, ErrReplaced
	}
	return os.NewFile(uintptr(fd), h.path), nil
}

// Reopen opens the file of fd, an O_PATH descriptor, with flags (add
// O_CLOEXEC), through its magic link in /proc/self/fd: the inode the
// descriptor names, whatever is mounted on or renamed to its name since,
// asking only for the permission flags need. Without /proc it opens a
// directory (flags hold O_DIRECTORY) as "." from the descriptor, which
// asks for search permission too, and answers ENOENT for anything else.
func Reopen(fd, flags int) (int, error) {
	out, err := unix.Open(procFD+strconv.Itoa(fd), flags, 0)
	for err == unix.EINTR {
		out, err = unix.Open(procFD+strconv.Itoa(fd), flags, 0)
	}
	if err == unix.ENOENT && flags&unix.O_DIRECTORY != 0 {
		out, err = unix.Openat(fd, ".", flags, 0)
		for err == unix.EINTR {
			out, err = unix.Openat(fd, ".", flags, 0)
		}
	}
	return out, err
}

// resolve is what openat2 is told: no symlink, magic (/proc) or not.
const resolve = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// open opens path with flags, following no symlink: the last component is
// opened with flags|O_NOFOLLOW, every other one is checked to be a
// directory first.
func open(path string, flags int) (int, error) {
	if path == "" {
		return -1, unix.ENOENT
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NOCTTY // openat2 refuses it with O_PATH
	}
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &how)
		for err == unix.EINTR {
			fd, err = unix.Openat2(unix.AT_FDCWD, path, &how)
		}
		switch {
		case err == nil:
			return fd, nil
		case err == unix.ENOSYS:
			noOpenat2.Store(true)
		case err == unix.ELOOP && flags&unix.O_PATH != 0:
			// With O_PATH|O_NOFOLLOW a final symlink is returned, so
			// the symlink is a directory of the path.
			return -1, symlinkIn(path)
		default:
			return -1, err
		}
	}
	return walk(path, flags)
}

// walk opens path one component at a time, relative to the directory
// before it, with no symlink followed.
func walk(path string, flags int) (int, error) {
	start, walked := ".", ""
	if filepath.IsAbs(path) {
		start, walked = "/", "/"
	}
	fd, err := unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	comps := strings.Split(path, "/")
	last := len(comps) - 1
	for last > 0 && comps[last] == "" {
		last--
	}
	for i, c := range comps[:last+1] {
		if c == "" {
			continue
		}
		walked = filepath.Join(walked, c)
		if i == last {
			next, err := unix.Openat(fd, c, flags, 0)
			unix.Close(fd)
			return next, err
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
		var st unix.Stat_t
		if _, _, err := fsys.Lstat(fd, "", &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			unix.Close(fd)
			return -1, &SymlinkError{Path: walked}
		default:
			unix.Close(fd)
			return -1, unix.ENOTDIR
		}
	}
	if flags&unix.O_PATH == 0 { // path was "/"
		next, err := unix.Openat(fd, ".", flags, 0)
		unix.Close(fd)
		return next, err
	}
	return fd, nil
}

// symlinkIn names the first directory of path that is a symlink now: the
// lookup that failed does not say which one it met.
func symlinkIn(path string) error {
	dir := filepath.Dir(filepath.Clean(path))
	var prefixes []string
	for p := dir; ; p = filepath.Dir(p) {
		prefixes = append(prefixes, p)
		if p == "/" || p == "." {
			break
		}
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if unix.Lstat(prefixes[i], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return &SymlinkError{Path: prefixes[i]}
		}
	}
	return &SymlinkError{}
}
