package apply

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// space returns the bytes available to writers on f's filesystem
// (f_bavail) and its size, as statfs reports them. Tests replace it.
var space = statSpace

func statSpace(f *os.File) (avail, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, 0, fmt.Errorf("statfs: %w", err)
	}
	unit := int64(st.Frsize)
	if unit == 0 {
		unit = st.Bsize
	}
	return int64(st.Bavail) * unit, int64(st.Blocks) * unit, nil
}
