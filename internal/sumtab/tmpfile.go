package sumtab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// createUnnamed creates a file with no name (O_TMPFILE), 0600, in the
// directory of path, for writing the table at path: a table is gigabytes
// at scale, and a findsame killed while it writes one (by the OOM
// killer, kill -9, a power cut) leaves nothing behind, where a named
// temporary file would stay beside the index for good. Errors name it
// as path, "being written".
func createUnnamed(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), path+" (being written)"), nil
}

// createTemp creates the file a table is written to; tests take
// O_TMPFILE away through it.
var createTemp = createUnnamed

// create creates the file the table at path is written to: one with no
// name, or where the filesystem has no O_TMPFILE (NFS, say), a named
// temporary file (named), which a process killed while it writes leaves
// behind.
func create(path string) (f *os.File, named bool, err error) {
	if f, err = createTemp(path); err == nil {
		return f, false, nil
	}
	f, err = os.CreateTemp(filepath.Dir(path), tempPattern(path))
	return f, true, err
}

// install puts the file f written for the table at path (named, see
// create) in its place, once written whole: unless err (an error of the
// writing) says it was not, in which case it leaves nothing at path or
// beside it and returns err.
func install(f *os.File, named bool, path string, err error) error {
	tmp := "" // the temporary name renamed into place, once there is one
	if named {
		tmp = f.Name()
	}
	if err == nil && !named {
		// Named only now, under a temporary name, to be renamed over the
		// table before: a process killed until here left nothing.
		tmp, err = linkUnnamed(f, path)
	}
	if err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil && tmp != "" {
		os.Remove(tmp)
	}
	return err
}

// tempPattern is the pattern of the temporary names of a table at path.
func tempPattern(path string) string { return "." + filepath.Base(path) + "-*.tmp" }

// linkUnnamed gives the unnamed file f a temporary name beside path and
// returns it.
func linkUnnamed(f *os.File, path string) (string, error) {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	for range 100 {
		tmp := filepath.Join(filepath.Dir(path), strings.Replace(tempPattern(path), "*", strconv.FormatUint(rand.Uint64(), 36), 1))
		err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.ENOENT) {
			// No /proc: by the descriptor, which needs
			// CAP_DAC_READ_SEARCH (root has it).
			err = unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, tmp, unix.AT_EMPTY_PATH)
		}
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", &os.LinkError{Op: "link", Old: f.Name(), New: tmp, Err: err}
		}
		return tmp, nil
	}
	return "", fmt.Errorf("link %s: no free temporary name beside %s", f.Name(), path)
}

// LeftoverAge is how old a named temporary table must be for
// RemoveLeftovers to take it for the leftover of a run killed while it
// wrote it: a run writing one changes it all along.
const LeftoverAge = 24 * time.Hour

// RemoveLeftovers removes the named temporary files of the table at path
// and of its delta and kept extents (tempPattern) that are this user's, regular, and
// unchanged for LeftoverAge: what a run killed while it wrote a table
// left, before tables were written with no name, or where O_TMPFILE is
// missing. It returns how many it removed and their bytes.
func RemoveLeftovers(path string) (n int, size int64) {
	for _, p := range []string{path, path + ".delta", path + ExtentsSuffix} {
		names, _ := filepath.Glob(filepath.Join(filepath.Dir(p), tempPattern(p)))
		for _, name := range names {
			var st unix.Stat_t
			if unix.Lstat(name, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() ||
				time.Since(time.Unix(st.Mtim.Unix())) < LeftoverAge {
				continue
			}
			if os.Remove(name) == nil {
				n++
				size += st.Size
			}
		}
	}
	return n, size
}
