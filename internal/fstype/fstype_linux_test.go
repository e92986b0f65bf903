//go:build linux

package fstype

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/testfs"
)

// mountXFSNoReflink mounts an XFS made without reflink, which testfs does
// not make, and returns its mount point.
func mountXFSNoReflink(t *testing.T) string {
	t.Helper()
	if !testfs.Root() {
		t.Skip("needs root to loop-mount XFS: skipped")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs -m reflink=0: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// mountTmpfs mounts a tmpfs and returns its mount point.
func mountTmpfs(t *testing.T) string {
	t.Helper()
	if !testfs.Root() {
		t.Skip("needs root to mount tmpfs: skipped")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	return mnt
}

// CanDedupe tells the filesystems that can share storage from those that
// cannot, XFS by its reflink feature, and MountPoint names where each is
// mounted.
func TestCanDedupe(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mount func(t *testing.T) string
		magic int64
		ok    bool
	}{
		{"btrfs", func(t *testing.T) string { return testfs.Mount(t, "btrfs", "256M") }, Btrfs, true},
		{"xfs", func(t *testing.T) string { return testfs.Mount(t, "xfs", "320M") }, XFS, true},
		{"xfs without reflink", mountXFSNoReflink, XFS, false},
		{"ext4", func(t *testing.T) string { return testfs.Mount(t, "ext4", "64M") }, Ext4, false},
		{"tmpfs", mountTmpfs, Tmpfs, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mnt := tt.mount(t)
			path := filepath.Join(mnt, "sub", "f")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			magic, ok := CanDedupe(int(f.Fd()))
			if magic != tt.magic || ok != tt.ok {
				t.Errorf("CanDedupe(%s) = %#x, %v; want %#x, %v", tt.name, magic, ok, tt.magic, tt.ok)
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				t.Fatal(err)
			}
			if got := MountPoint(uint64(st.Dev), path); got != mnt {
				t.Errorf("MountPoint(%s) = %q; want %q", path, got, mnt)
			}
		})
	}
}

func TestName(t *testing.T) {
	for m, want := range map[int64]string{Btrfs: "btrfs", XFS: "xfs", Ext4: "ext4", Tmpfs: "tmpfs", 0x1234: "0x1234"} {
		if got := Name(m); got != want {
			t.Errorf("Name(%#x) = %q; want %q", m, got, want)
		}
	}
	err := &Error{Type: "ext4", Mount: "/mnt/x"}
	if got, want := err.Error(), "ext4 at /mnt/x cannot deduplicate"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

// ByName says of each type's name what Pseudo and ByType say of its
// magic, and knows the names that have no magic of their own here.
func TestByName(t *testing.T) {
	for m, name := range names {
		pseudo, cannot := ByName(name)
		if pseudo != Pseudo(m) || cannot != !ByType(m) {
			t.Errorf("ByName(%q) = %v, %v; want %v, %v as by its magic", name, pseudo, cannot, Pseudo(m), !ByType(m))
		}
	}
	for name, want := range map[string][2]bool{
		"nfs4": {false, true}, "fuse.sshfs": {false, true}, "fuse.rclone": {false, true}, "devtmpfs": {false, true},
		"ntfs3": {false, true}, "zfs": {false, false}, "bcachefs": {false, false}, "fusectl": {true, true},
	} {
		if pseudo, cannot := ByName(name); pseudo != want[0] || cannot != want[1] {
			t.Errorf("ByName(%q) = %v, %v; want %v, %v", name, pseudo, cannot, want[0], want[1])
		}
	}
}
