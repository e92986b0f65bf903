//go:build linux

package fstype

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xfsIocFSGeometry is XFS_IOC_FSGEOMETRY, _IOR('X', 126, struct
// xfs_fsop_geom): 256 bytes, the feature flags a __u32 at offset 92. Any
// descriptor on the filesystem will do, and no privilege is needed.
const xfsIocFSGeometry = 0x8100587E

// xfsGeomFlagsOffset and xfsGeomFlagReflink locate
// XFS_FSOP_GEOM_FLAGS_REFLINK in struct xfs_fsop_geom.
const (
	xfsGeomFlagsOffset  = 92
	xfsGeomFlagsReflink = 1 << 20
)

// CanDedupe reports whether the filesystem holding the file or directory
// open at fd can deduplicate, and its statfs magic. Where that cannot be
// told, it says yes: the kernel will tell, destination by destination.
func CanDedupe(fd int) (magic int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return 0, true
	}
	magic = int64(st.Type)
	if magic != XFS {
		return magic, ByType(magic)
	}
	var geom [256]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), xfsIocFSGeometry, uintptr(unsafe.Pointer(&geom[0]))); errno != 0 {
		return magic, true
	}
	flags := *(*uint32)(unsafe.Pointer(&geom[xfsGeomFlagsOffset]))
	return magic, flags&xfsGeomFlagsReflink != 0
}

// ReadOnly reports whether f is on a filesystem mounted read-only (as
// statfs says: that mount, or the whole filesystem, as btrfs makes itself
// after an error), where the kernel shares nothing (EROFS). A read-only
// btrfs snapshot on a writable mount is not.
func ReadOnly(f *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Flags&unix.ST_RDONLY != 0
}

// MountPoint returns where the filesystem of st_dev dev holding path
// (absolute) is mounted: the topmost directory above path on dev.
func MountPoint(dev uint64, path string) string {
	return mountPoint(dev, path, func(p string) (uint64, error) {
		var st unix.Stat_t
		err := unix.Lstat(p, &st)
		return uint64(st.Dev), err
	})
}
