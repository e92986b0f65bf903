package index

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInUse says another run holds the writer's lock of an index.
var ErrInUse = errors.New("in use by another run")

// LockWriter takes the writer's lock of the index, which one hashfile at a
// time holds until it closes the index: an exclusive flock(2) of the file
// beside it named INDEX-lock (0600), which holds the holder's pid. Two
// runs on one index (a night's run that lasts into the next, started by
// cron) would otherwise both walk and read, and the second would fail
// with SQLITE_BUSY after waiting for the first's commits. While another
// process holds it, LockWriter fails at once with ErrInUse, naming that
// process. Where the filesystem has no such locks, it takes none.
func (ix *Index) LockWriter() error {
	path := ix.path + "-lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("lock index: %w", err)
	}
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		holder := "another process"
		if b, _ := os.ReadFile(path); len(b) > 0 {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "process " + strconv.Itoa(pid)
				if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
					holder = strings.TrimSpace(string(comm)) + ", pid " + strconv.Itoa(pid)
				}
			}
		}
		f.Close()
		return fmt.Errorf("index %s is %w (%s): run again once it ends", ix.path, ErrInUse, holder)
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
		f.Close()
		return nil
	case err != nil:
		f.Close()
		return fmt.Errorf("lock index %s: %w", path, err)
	}
	// Who holds it, for the message of the next one that tries.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	ix.lock = f
	return nil
}
