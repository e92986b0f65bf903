package fstype

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Magic numbers (statfs f_type) of the types this package knows.
const (
	Btrfs    = 0x9123683E
	XFS      = 0x58465342
	Ext4     = 0xEF53 // ext2 and ext3 too
	Tmpfs    = 0x01021994
	Ramfs    = 0x858458F6
	MSDOS    = 0x4D44
	ExFAT    = 0x2011BAB0
	NTFS     = 0x5346544E
	ISO9660  = 0x9660
	Squashfs = 0x73717368
	NFS      = 0x6969
	FUSE     = 0x65735546
	Overlay  = 0x794C7630
	CIFS     = 0xFF534D42
	SMB2     = 0xFE534D42
	Ceph     = 0x00C36400
	V9fs     = 0x01021997
	F2FS     = 0xF2F52010
	EROFS    = 0xE0F5E1E2
	Ecryptfs = 0xF15F
)

// Magic numbers of pseudo filesystems: they hold no file data, and
// reading their files can take for ever (/proc/kcore, the size of the
// kernel's address space) or act (debugfs).
const (
	Proc       = 0x9FA0
	Sysfs      = 0x62656572
	Debugfs    = 0x64626720
	Tracefs    = 0x74726163
	Cgroup     = 0x27E0EB
	Cgroup2    = 0x63677270
	Securityfs = 0x73636673
	Devpts     = 0x1CD1
	BPF        = 0xCAFE4A11
	Configfs   = 0x62656570
	Pstore     = 0x6165676C
	Efivarfs   = 0xDE5E81E4
	Mqueue     = 0x19800202
	Fusectl    = 0x65735543
	BinfmtMisc = 0x42494E4D
	Selinuxfs  = 0xF97CFF8C
	Nsfs       = 0x6E736673
	Autofs     = 0x0187
)

var names = map[int64]string{
	Btrfs: "btrfs", XFS: "xfs", Ext4: "ext4", Tmpfs: "tmpfs", Ramfs: "ramfs",
	MSDOS: "vfat", ExFAT: "exfat", NTFS: "ntfs", ISO9660: "iso9660",
	Squashfs: "squashfs", NFS: "nfs", FUSE: "fuse", Overlay: "overlay",
	CIFS: "cifs", SMB2: "smb3", Ceph: "ceph", V9fs: "9p", F2FS: "f2fs",
	EROFS: "erofs", Ecryptfs: "ecryptfs",
	Proc: "proc", Sysfs: "sysfs", Debugfs: "debugfs", Tracefs: "tracefs",
	Cgroup: "cgroup", Cgroup2: "cgroup2", Securityfs: "securityfs",
	Devpts: "devpts", BPF: "bpf", Configfs: "configfs", Pstore: "pstore",
	Efivarfs: "efivarfs", Mqueue: "mqueue", Fusectl: "fusectl",
	BinfmtMisc: "binfmt_misc", Selinuxfs: "selinuxfs", Nsfs: "nsfs",
	Autofs: "autofs",
}

// Pseudo reports whether a filesystem of type m is a pseudo filesystem
// (proc, sysfs, debugfs, cgroup and the like), which holds no data to
// deduplicate; autofs counts too, as entering it mounts what it stands
// for.
func Pseudo(m int64) bool {
	switch m {
	case Proc, Sysfs, Debugfs, Tracefs, Cgroup, Cgroup2, Securityfs, Devpts, BPF, Configfs,
		Pstore, Efivarfs, Mqueue, Fusectl, BinfmtMisc, Selinuxfs, Nsfs, Autofs:
		return true
	}
	return false
}

// Name returns the name of the filesystem type with statfs magic m, or m
// in hex for types it does not know.
func Name(m int64) string {
	if n, ok := names[m]; ok {
		return n
	}
	return fmt.Sprintf("%#x", m)
}

// ByType reports whether a filesystem of type m can deduplicate, as far as
// its type tells: false for types that never can; true for the others,
// which for XFS holds only with reflink (see CanDedupe).
func ByType(m int64) bool {
	switch m {
	case Ext4, Tmpfs, Ramfs, MSDOS, ExFAT, NTFS, ISO9660, Squashfs, NFS, FUSE, Overlay,
		CIFS, SMB2, Ceph, V9fs, F2FS, EROFS, Ecryptfs:
		return false
	}
	return !Pseudo(m)
}

// ByName reports, for the name of a filesystem type as mount(8) and
// /proc/self/mountinfo give it, whether it is a pseudo filesystem (see
// Pseudo) and whether it cannot deduplicate (see ByType), as its magic
// says; false, false for the types this package does not know by name
// (and btrfs and XFS, which only the filesystem itself can tell).
func ByName(name string) (pseudo, cannot bool) {
	m, ok := magicOf[name]
	if !ok && strings.HasPrefix(name, "fuse.") {
		m, ok = FUSE, true // fuse.sshfs, fuse.rclone...
	}
	if !ok {
		return false, false
	}
	return Pseudo(m), !ByType(m)
}

// magicOf gives the magic of each type's name in names, and of the other
// names mount(8) gives types of the same magic.
var magicOf = func() map[string]int64 {
	out := map[string]int64{"ext2": Ext4, "ext3": Ext4, "msdos": MSDOS, "ntfs3": NTFS, "fuseblk": FUSE, "nfs4": NFS, "devtmpfs": Tmpfs}
	for m, name := range names {
		out[name] = m
	}
	return out
}()

// ErrCannotDedupe says a filesystem cannot share storage between files.
var ErrCannotDedupe = errors.New("cannot deduplicate")

// Error names a filesystem that cannot deduplicate: "ext4 at /mnt/x cannot
// deduplicate", or "btrfs at /backup is mounted read-only and cannot
// deduplicate".
type Error struct {
	Type     string // its type's name
	Mount    string // where it is mounted, or a path on it
	ReadOnly bool   // it can, but is mounted read-only
}

func (e *Error) Error() string {
	if e.ReadOnly {
		return e.Type + " at " + e.Mount + " is mounted read-only and " + ErrCannotDedupe.Error()
	}
	return e.Type + " at " + e.Mount + " " + ErrCannotDedupe.Error()
}

// Unwrap makes errors.Is(err, ErrCannotDedupe) hold.
func (e *Error) Unwrap() error { return ErrCannotDedupe }

// mountPoint returns the topmost directory at or above path (absolute)
// that is on st_dev dev: where that filesystem (or btrfs subvolume) is
// mounted. lstat gives each directory's st_dev.
func mountPoint(dev uint64, path string, lstat func(string) (uint64, error)) string {
	top := path
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		d, err := lstat(dir)
		if err != nil || d != dev {
			return top
		}
		top = dir
		if dir == "/" {
			return top
		}
	}
}
