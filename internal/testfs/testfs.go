//go:build linux

package testfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"same/internal/fsimg"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Root reports whether the process can loop-mount filesystems.
func Root() bool {
	return os.Geteuid() == 0
}

// Mount returns the mountpoint of a new fstype ("btrfs", "xfs", "xfs16k":
// XFS with 16 KiB blocks, or "ext4") filesystem of the given size ("512M", "2G"; XFS needs at least 300M) on a
// loop-mounted sparse image. It is unmounted and removed when the test and
// its subtests finish, however they end. Without root the test is skipped,
// or failed when the environment variable CI is true.
func Mount(t testing.TB, fstype, size string) string {
	t.Helper()
	requireRoot(t, fstype, Root(), os.Getenv("CI"))
	script, err := fsimg.Script()
	if err != nil {
		t.Fatal(err)
	}
	dir := imageDir(t)
	image := filepath.Join(dir, fstype+".img")
	mnt := filepath.Join(dir, "mnt")

	// Registered before mounting, so a half-done mount is undone too. It
	// runs before the removal of dir, which was registered earlier.
	t.Cleanup(func() {
		out, err := exec.Command(script, "umount", mnt, image).CombinedOutput()
		if err != nil {
			t.Errorf("fsimg umount %s: %v\n%s", mnt, err, out)
		}
	})
	var stderr bytes.Buffer
	cmd := exec.Command(script, "mount", fstype, size, image, mnt)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fsimg mount %s %s: %v\n%s", fstype, size, err, stderr.Bytes())
	}
	imagesMu.Lock()
	images[mnt] = image
	imagesMu.Unlock()
	return mnt
}

var (
	imagesMu sync.Mutex
	images   = make(map[string]string) // mountpoint -> image, of Mount
)

// imageOf returns the image of the filesystem Mount made at mnt, failing
// the test (in the name of caller) if Mount made none there.
func imageOf(t testing.TB, caller, mnt string) string {
	t.Helper()
	imagesMu.Lock()
	image := images[mnt]
	imagesMu.Unlock()
	if image == "" {
		t.Fatalf("%s(%s): not mounted by Mount", caller, mnt)
	}
	return image
}

// Remount unmounts the filesystem Mount made at mnt and mounts it again
// on a new loop device, as a reboot would: while it is unmounted, a tmpfs
// and a loop device are taken and held, so that the device numbers the
// filesystem (and each btrfs subvolume) gets are not the ones it had. A
// mount elsewhere (tests of other packages mount at the same time) can
// take the device number it had and let it go just before it is mounted
// again; so it is mounted again up to three times, and it fails the test
// if the st_dev of mnt did not change.
func Remount(t testing.TB, mnt string) {
	t.Helper()
	image := imageOf(t, "Remount", mnt)
	var before unix.Stat_t
	if err := unix.Stat(mnt, &before); err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		after := remountOnce(t, mnt, image, before.Dev)
		if after != before.Dev {
			return
		}
		if try == 3 {
			t.Fatalf("Remount(%s): st_dev %d did not change", mnt, after)
		}
	}
}

// remountOnce is one attempt of Remount, the filesystem having had st_dev
// before; it returns the st_dev of mnt mounted again.
func remountOnce(t testing.TB, mnt, image string, before uint64) uint64 {
	t.Helper()
	dev := strings.TrimSpace(Run(t, "findmnt", "-n", "-o", "SOURCE", "--target", mnt))
	Run(t, "umount", mnt)
	hold := filepath.Join(filepath.Dir(image), "hold")
	if err := os.MkdirAll(hold, 0o700); err != nil {
		t.Fatal(err)
	}
	// Hold the anonymous device number the filesystem had (btrfs), once
	// the unmount has let it go (it is freed asynchronously), and those
	// below it: each tmpfs mounted takes the lowest free one.
	for i := 0; unix.Major(before) == 0; i++ { // anonymous: btrfs
		h := filepath.Join(hold, strconv.Itoa(i))
		if err := os.Mkdir(h, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(h) // once unmounted: a later Remount makes it again
		Run(t, "mount", "-t", "tmpfs", "none", h)
		defer Run(t, "umount", h)
		var st unix.Stat_t
		if err := unix.Stat(h, &st); err != nil {
			t.Fatal(err)
		}
		if st.Dev == before {
			break
		}
		if i == 100 {
			// Another mount took it (tests of other packages mount at
			// the same time): held all the same, as far as the new
			// mount is concerned. The check at the end still holds.
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	blank := filepath.Join(filepath.Dir(image), "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// Hold the loop device the image was on, once the unmount has let it
	// go (the kernel detaches it asynchronously).
	loop := strings.TrimSpace(Run(t, "losetup", "-f", "--show", blank))
	defer Run(t, "losetup", "-d", loop)
	if strings.HasPrefix(dev, "/dev/loop") && dev != loop {
		for i := 0; ; i++ {
			err := exec.Command("losetup", dev, blank).Run()
			if err == nil {
				defer Run(t, "losetup", "-d", dev)
				break
			}
			if i == 100 {
				t.Fatalf("Remount(%s): %s stays attached: %v", mnt, dev, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	Run(t, "mount", "-o", "loop", image, mnt)
	var after unix.Stat_t
	if err := unix.Stat(mnt, &after); err != nil {
		t.Fatal(err)
	}
	return after.Dev
}

// requireRoot skips t, or fails it when ci is true, unless root.
func requireRoot(t testing.TB, fstype string, root bool, ci string) {
	t.Helper()
	if root {
		return
	}
	if isCI, _ := strconv.ParseBool(ci); isCI {
		t.Fatalf("integration test needs root to loop-mount %s, and CI=%s forbids skipping it", fstype, ci)
	}
	t.Skipf("integration test needs root to loop-mount %s: skipped", fstype)
}

// imageDir returns a directory for an image, removed when t ends. It avoids
// tmpfs when it can: a loop image works there but its data lives in RAM.
func imageDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(os.TempDir(), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	if err := unix.Statfs("/var/tmp", &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/var/tmp", "testfs-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove image dir: %v", err)
		}
	})
	return dir
}

// SHA256Tree returns the hex SHA-256 of every regular file under dir, keyed
// by slash-separated path relative to dir (one whose path is longer than
// PATH_MAX too, in a directory whose path is not). Symlinks, devices,
// sockets and FIFOs are left out; directories are walked but not listed.
func SHA256Tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	sums := make(map[string]string)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		sums[filepath.ToSlash(rel)] = sum
		return nil
	})
	if err != nil {
		t.Fatalf("SHA256Tree(%s): %v", dir, err)
	}
	return sums
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, unix.ENAMETOOLONG) {
		// Longer than PATH_MAX: opened from its directory.
		var dir *os.File
		if dir, err = os.Open(filepath.Dir(path)); err == nil {
			var fd int
			fd, err = unix.Openat(int(dir.Fd()), filepath.Base(path), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			dir.Close()
			if err == nil {
				f = os.NewFile(uintptr(fd), path)
			}
		}
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// btrfsIocSync is BTRFS_IOC_SYNC, _IO(0x94, 8).
const btrfsIocSync = 0x9408

// xfsIocFreeEOFBlocks is XFS_IOC_FREE_EOFBLOCKS, _IOR('X', 58, struct
// xfs_fs_eofblocks) of 128 bytes: the first 4 its version (1), the rest
// zero for every inode, without waiting for each.
const xfsIocFreeEOFBlocks = 0x8080583a

// Magic returns the statfs magic of the filesystem holding path
// (unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, ...).
func Magic(t testing.TB, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatalf("Magic: statfs %s: %v", path, err)
	}
	return int64(st.Type)
}

// DropCache writes the pages of the file at path back and drops them
// from the page cache (POSIX_FADV_DONTNEED leaves dirty pages).
func DropCache(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// FreeBytes syncs the filesystem holding dir and returns its free bytes
// (f_bfree, including blocks reserved for root). Without the sync, btrfs
// counts space freed by unlink or dedupe only after its next transaction
// commit, up to 30 seconds later; syncfs(2) commits it. On btrfs it first
// issues BTRFS_IOC_SYNC, which also flushes delayed work such as freeing the
// extents of deleted files. XFS (Linux 5.19 on) frees a deleted file's
// blocks in the background, and statfs does not wait for that work: on XFS it
// first issues XFS_IOC_FREE_EOFBLOCKS, which waits for it (as root).
func FreeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatalf("FreeBytes: %v", err)
	}
	defer f.Close()
	// The tools' own sync (fsys.SyncFS) is not used: a measurement made
	// with the code it measures proves less.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatalf("FreeBytes: statfs %s: %v", dir, err)
	}
	switch st.Type {
	case unix.BTRFS_SUPER_MAGIC:
		_ = unix.IoctlSetInt(int(f.Fd()), btrfsIocSync, 0) // syncfs commits anyway
	case unix.XFS_SUPER_MAGIC:
		var eof [128]byte
		binary.NativeEndian.PutUint32(eof[:4], 1) // eof_version
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), xfsIocFreeEOFBlocks, uintptr(unsafe.Pointer(&eof[0]))); errno != 0 {
			t.Fatalf("FreeBytes: XFS_IOC_FREE_EOFBLOCKS %s: %v", dir, errno)
		}
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatalf("FreeBytes: syncfs %s: %v", dir, err)
	}
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatalf("FreeBytes: statfs %s: %v", dir, err)
	}
	// f_bfree counts fragments of f_frsize bytes; f_bsize is only the
	// preferred I/O size (the same on btrfs, XFS and ext4).
	unit := int64(st.Frsize)
	if unit == 0 {
		unit = int64(st.Bsize)
	}
	return int64(st.Bfree) * unit
}

// Fill preallocates space in a file named filler in dir, from its end,
// until no more than leave bytes are left available on dir's filesystem
// (with leave 0, until not one more block fits), syncs the filesystem and
// returns the file's path: removing it gives the room back.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("Fill: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatalf("Fill: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatalf("Fill: statfs %s: %v", dir, err)
	}
	at := fi.Size()
	end := at + int64(st.Bavail)*st.Bsize - leave
	// In steps down to a block: the filesystem takes some of what statfs
	// shows available for its own records of the file.
	for n := int64(64 << 20); n >= 4096; n /= 4 {
		for (leave == 0 || at+n <= end) && unix.Fallocate(int(f.Fd()), 0, at, n) == nil {
			at += n
		}
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatalf("Fill: syncfs %s: %v", dir, err)
	}
	return path
}

// Sync flushes path's data to disk (fsync), so that what is written after
// it goes to new extents.
func Sync(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Run runs the named command and returns its combined stdout and stderr,
// failing the test with that output when the command fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Receive sends the read-only btrfs snapshot snap into the directory dir
// (btrfs send | btrfs receive), incremental from parent where it is not
// "" (a snapshot sent before, on both sides), as a backup host receives
// snapshots, failing the test if either fails.
func Receive(t testing.TB, snap, parent, dir string) {
	t.Helper()
	args := []string{"-q", "send"}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	send := exec.Command("btrfs", append(args, snap)...)
	recv := exec.Command("btrfs", "-q", "receive", dir)
	var err error
	if recv.Stdin, err = send.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	var sendErr, recvOut bytes.Buffer
	send.Stderr, recv.Stdout, recv.Stderr = &sendErr, &recvOut, &recvOut
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	if err := recv.Run(); err != nil {
		send.Process.Kill()
		send.Wait()
		t.Fatalf("btrfs receive %s: %v\n%s\n%s", dir, err, recvOut.Bytes(), sendErr.Bytes())
	}
	if err := send.Wait(); err != nil {
		t.Fatalf("btrfs send %s: %v\n%s", snap, err, sendErr.Bytes())
	}
}
