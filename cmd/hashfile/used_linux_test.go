package main

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fstype"
	"same/internal/testfs"
)

// The estimate of a first run's work counts the space used on the
// filesystems the walk lists: a btrfs mounted on a directory of the
// machine's temporary filesystem (ext4), and not that filesystem, which
// the walk does not list.
func TestUsedSpace(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	writeFile(t, filepath.Join(mnt, "f"), randomBytes(1, 8<<20))
	testfs.Run(t, "btrfs", "filesystem", "sync", mnt)
	used := func(path string) (int64, bool) {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		var st unix.Statfs_t
		if err := unix.Fstatfs(fd, &st); err != nil {
			t.Fatal(err)
		}
		_, can := fstype.CanDedupe(fd)
		return int64(st.Blocks-st.Bfree) * st.Frsize, can
	}
	parent := filepath.Dir(mnt)
	for try := 0; ; try++ {
		onMnt, _ := used(mnt)
		want := onMnt
		if u, can := used(parent); can { // a temporary directory on btrfs or XFS
			want += u
		}
		got, gotMnt := usedSpace([]string{parent}), usedSpace([]string{mnt})
		if again, _ := used(mnt); again != onMnt && try < 3 {
			continue // the btrfs changed under the test: look again
		}
		if got != want || gotMnt != onMnt {
			t.Errorf("usedSpace(%s) = %d, usedSpace(%s) = %d; want %d and %d", parent, got, mnt, gotMnt, want, onMnt)
		}
		break
	}
}
