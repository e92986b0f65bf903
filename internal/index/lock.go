package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInUse says another run holds the writer's lock of an index.
var ErrInUse = errors.New("in use by another run")

// Lock is the writer's lock of an index (see LockWriter).
type Lock struct{ f *os.File }

// LockWriter takes the writer's lock of the index at path, which one
// hashfile at a time holds while it runs, from before it opens the index
// (which may migrate it) until after it closes it: an exclusive flock(2)
// of the file beside it named INDEX-lock (0600), which holds the holder's
// pid. Two runs on one index (a night's run that lasts into the next,
// started by cron) would otherwise both walk and read, and the second
// would fail with SQLITE_BUSY after waiting for the first's commits.
// While another process holds it, LockWriter fails at once with ErrInUse,
// naming that process. Where the filesystem has no such locks, it takes
// none. It creates the index's directory, 0700, where missing, as Open
// would.
func LockWriter(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock index: %w", err)
	}
	lockPath := path + "-lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock index: %w", err)
	}
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		holder := "another process"
		if b, _ := os.ReadFile(lockPath); len(b) > 0 {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "process " + strconv.Itoa(pid)
				if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
					holder = strings.TrimSpace(string(comm)) + ", pid " + strconv.Itoa(pid)
				}
			}
		}
		f.Close()
		return nil, fmt.Errorf("index %s is %w (%s): run again once it ends", path, ErrInUse, holder)
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
		f.Close()
		return &Lock{}, nil
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("lock index %s: %w", lockPath, err)
	}
	// Who holds it, for the message of the next one that tries.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
