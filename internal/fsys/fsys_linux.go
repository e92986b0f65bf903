//go:build linux

package fsys

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fstype"
)

// FromStat returns the Stat of a stat result.
func FromStat(st *unix.Stat_t) Stat {
	return Stat{
		Dev:   uint64(st.Dev),
		Ino:   st.Ino,
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Ctime: st.Ctim.Nano(),
		UID:   st.Uid,
	}
}

// btrfsIocFSInfo is BTRFS_IOC_FS_INFO, _IOR(0x94, 31, struct
// btrfs_ioctl_fs_info_args): 1024 bytes, the filesystem's UUID (fsid) at
// offset 16, after max_id and num_devices. It needs no privilege.
const btrfsIocFSInfo = 0x8400941F

// btrfsIocInoLookup is BTRFS_IOC_INO_LOOKUP, _IOWR(0x94, 18, struct
// btrfs_ioctl_ino_lookup_args): treeid (u64), objectid (u64), name[4080].
// With treeid 0 and objectid BTRFS_FIRST_FREE_OBJECTID (256) it returns,
// without privilege (Linux 4.18 and later), the id of the subvolume
// holding the file in treeid.
const btrfsIocInoLookup = 0xD0009412

// fsIocGetFSUUID is FS_IOC_GETFSUUID, _IOR(0x15, 0, struct fsuuid2): a
// length byte and 16 bytes of UUID (Linux 6.5 and later; XFS and ext4
// among others).
const fsIocGetFSUUID = 0x80111500

func ioctl(fd uintptr, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// btrfsUUID returns the UUID of the btrfs holding f, in hex.
func btrfsUUID(f *os.File) (string, error) {
	args, err := fsInfo(f)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(args[16:32]), nil
}

// fsInfo returns BTRFS_IOC_FS_INFO's answer for the btrfs holding f.
func fsInfo(f *os.File) (*[1024]byte, error) {
	var args [1024]byte
	if err := ioctl(f.Fd(), btrfsIocFSInfo, unsafe.Pointer(&args[0])); err != nil {
		return nil, fmt.Errorf("BTRFS_IOC_FS_INFO: %w", err)
	}
	return &args, nil
}

// btrfsSubvol returns the id of the btrfs subvolume holding f.
func btrfsSubvol(f *os.File) (uint64, error) {
	var args inoLookupArgs
	if err := args.lookup(f, 256); err != nil {
		return 0, fmt.Errorf("BTRFS_IOC_INO_LOOKUP: %w", err)
	}
	return *(*uint64)(unsafe.Pointer(&args[0])), nil
}

// inoLookupArgs is struct btrfs_ioctl_ino_lookup_args (see
// btrfsIocInoLookup).
type inoLookupArgs [4096]byte

// lookup asks BTRFS_IOC_INO_LOOKUP of inode ino of the subvolume holding
// f (treeid 0): the subvolume's id lands in the first 8 bytes, the
// inode's path from the subvolume's top after the next 8.
func (a *inoLookupArgs) lookup(f *os.File, ino uint64) error {
	*(*uint64)(unsafe.Pointer(&a[8])) = ino
	return ioctl(f.Fd(), btrfsIocInoLookup, unsafe.Pointer(&a[0]))
}

// InoPath returns the path of inode ino of the btrfs subvolume holding f
// (a directory, or a file's first name), relative to the subvolume's top
// directory ("" for the top itself), as its inode references give it now
// (BTRFS_IOC_INO_LOOKUP, which needs CAP_SYS_ADMIN for any inode but the
// top); false when the subvolume holds no such inode (deleted).
func InoPath(f *os.File, ino uint64) (string, bool, error) {
	var args inoLookupArgs
	err := args.lookup(f, ino)
	if err == unix.ENOENT {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("BTRFS_IOC_INO_LOOKUP of %d: %w", ino, err)
	}
	name := args[16:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(string(name), "/"), true, nil
}

// fsUUID returns the UUID the filesystem holding f reports, in hex.
func fsUUID(f *os.File) (string, error) {
	var args [17]byte
	if err := ioctl(f.Fd(), fsIocGetFSUUID, unsafe.Pointer(&args[0])); err != nil {
		return "", err
	}
	n := int(args[0])
	if n == 0 || n > 16 {
		return "", fmt.Errorf("FS_IOC_GETFSUUID: length %d", n)
	}
	for _, b := range args[1 : 1+n] {
		if b != 0 {
			return hex.EncodeToString(args[1 : 1+n]), nil
		}
	}
	return "", fmt.Errorf("FS_IOC_GETFSUUID: zero UUID")
}

// fsID names the filesystem of f, whose statfs is st.
func fsID(f *os.File, st *unix.Statfs_t) string {
	if st.Type == unix.BTRFS_SUPER_MAGIC {
		if id, err := btrfsUUID(f); err == nil {
			return id
		}
	} else if id, err := fsUUID(f); err == nil {
		return id
	}
	return fmt.Sprintf("%08x%08x", uint32(st.Fsid.Val[0]), uint32(st.Fsid.Val[1]))
}

// Describe returns the Volume of the file or directory f, with its
// filesystem's type and block size.
func Describe(f *os.File) (Info, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return Info{}, fmt.Errorf("statfs: %w", err)
	}
	in := Info{Volume: Volume{FS: fsID(f, &st)}, Magic: int64(st.Type), BlockSize: st.Bsize}
	if st.Type == unix.BTRFS_SUPER_MAGIC {
		sv, err := btrfsSubvol(f)
		if err != nil {
			return Info{}, err
		}
		in.Subvol = sv
	}
	return in, nil
}

// Volumes caches the Volume of each mount met, for checks made file by
// file. It keys them by the mount's unique id (statx STATX_MNT_ID_UNIQUE,
// Linux 6.8 and later), never reused, and the device number: a device
// number alone is handed out again after an unmount, to another
// filesystem. Where the kernel has no unique mount id it describes every
// file. Safe for concurrent use.
type Volumes struct {
	mu sync.Mutex
	m  map[mountKey]Info
}

type mountKey struct{ dev, mnt uint64 }

// Of returns the volume of f, whose fstat is st.
func (c *Volumes) Of(f *os.File, st *unix.Stat_t) (Info, error) {
	var sx unix.Statx_t
	err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &sx)
	if err != nil || sx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return Describe(f)
	}
	k := mountKey{uint64(st.Dev), sx.Mnt_id}
	c.mu.Lock()
	in, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return in, nil
	}
	in, err = Describe(f)
	if err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[mountKey]Info)
	}
	c.m[k] = in
	c.mu.Unlock()
	return in, nil
}

// btrfsIocSync is BTRFS_IOC_SYNC, _IO(0x94, 8): commit the transaction and
// run the cleaner, which frees extents that lost their last reference.
const btrfsIocSync = 0x9408

// StatFS reports on the filesystem holding f.
func StatFS(f *os.File) (FS, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return FS{}, fmt.Errorf("statfs: %w", err)
	}
	unit := int64(st.Frsize)
	if unit == 0 {
		unit = st.Bsize
	}
	return FS{
		ID:        fsID(f, &st),
		Type:      fstype.Name(int64(st.Type)),
		BlockSize: st.Bsize,
		Free:      int64(st.Bfree) * unit,
	}, nil
}

// SyncFS commits the filesystem holding f (syncfs(2), after BTRFS_IOC_SYNC
// on btrfs), so that the space deduplication freed shows in statfs.
func SyncFS(f *os.File) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if st.Type == unix.BTRFS_SUPER_MAGIC {
		// Best effort: syncfs below commits the transaction anyway.
		_ = unix.IoctlSetInt(int(f.Fd()), btrfsIocSync, 0)
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

// Attributes among the flags FS_IOC_GETFLAGS reports (chattr(1)):
// FS_NOCOW_FL (+C) and FS_IMMUTABLE_FL (+i).
const (
	fsNoCOWFl     = 0x00800000
	fsImmutableFl = 0x00000010
)

// NoCOW reports whether f has the NOCOW attribute. btrfs keeps no
// checksums for such data, and shares storage only between files that
// both keep checksums or both do not (EINVAL otherwise; a file written
// while btrfs was mounted with nodatasum has none but is not NOCOW: see
// fiemap.NoDataSum). Where the filesystem has no such attribute, it
// reports false.
func NoCOW(f *os.File) bool { return hasAttr(f, fsNoCOWFl) }

// NoChecksums reports whether f, inode ino (0: fstat says), keeps no
// checksums of its data: whether it has the NOCOW attribute or, on btrfs
// where the tree search is allowed, the NODATASUM flag that a file written
// while btrfs was mounted with nodatasum keeps for good
// (fiemap.NoDataSum). btrfs shares storage only between files alike in
// this.
func NoChecksums(f *os.File, ino uint64) bool {
	if NoCOW(f) {
		return true
	}
	if ino == 0 {
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil {
			return false
		}
		ino = st.Ino
	}
	no, err := fiemap.NoDataSum(f, ino)
	return err == nil && no
}

// Immutable reports whether f has the immutable attribute (chattr +i):
// the kernel shares no storage into such a file (EPERM), even for root.
func Immutable(f *os.File) bool { return hasAttr(f, fsImmutableFl) }

// SetNoCOW gives f, an empty file, the NOCOW attribute, or takes it
// away: btrfs changes it only while a file holds no data.
func SetNoCOW(f *os.File, on bool) error {
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsNoCOWFl
	} else {
		flags &^= fsNoCOWFl
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
}

func hasAttr(f *os.File, fl uint32) bool {
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	return err == nil && flags&fl != 0
}

// btrfsIocGetSubvolInfo is BTRFS_IOC_GET_SUBVOL_INFO, _IOR(0x94, 60,
// struct btrfs_ioctl_get_subvol_info_args): 504 bytes, the subvolume's id
// (treeid) at offset 0 and its generation at 280. It needs no privilege
// (Linux 4.18 and later).
const btrfsIocGetSubvolInfo = 0x81F8943C

// SubvolGen returns the id and generation of the btrfs subvolume holding
// f: the transaction that last changed anything in it. While it stays the
// same, nothing in the subvolume -- name, inode, data -- has changed.
func SubvolGen(f *os.File) (id, gen uint64, err error) {
	id, gen, _, err = subvolInfo(f)
	return id, gen, err
}

// ReadOnly reports whether f is in a read-only btrfs subvolume (a
// read-only snapshot); false elsewhere.
func ReadOnly(f *os.File) bool {
	_, _, flags, err := subvolInfo(f)
	return err == nil && flags&btrfsSubvolRdonly != 0
}

// btrfsSubvolRdonly is BTRFS_ROOT_SUBVOL_RDONLY among a root item's flags.
const btrfsSubvolRdonly = 1 << 0

func subvolInfo(f *os.File) (id, gen, flags uint64, err error) {
	args, err := getSubvolInfo(f)
	if err != nil {
		return 0, 0, 0, err
	}
	at := func(off int) uint64 { return *(*uint64)(unsafe.Pointer(&args[off])) }
	return at(0), at(280), at(288), nil
}

func getSubvolInfo(f *os.File) (*[504]byte, error) {
	var args [504]byte
	if err := ioctl(f.Fd(), btrfsIocGetSubvolInfo, unsafe.Pointer(&args[0])); err != nil {
		return nil, fmt.Errorf("BTRFS_IOC_GET_SUBVOL_INFO: %w", err)
	}
	return &args, nil
}

// SnapshotOf describes where the btrfs subvolume holding f came from,
// from BTRFS_IOC_GET_SUBVOL_INFO: flags at offset 288, uuid at 296,
// parent_uuid at 312, ctransid at 344, otransid at 352.
func SnapshotOf(f *os.File) (Snapshot, error) {
	args, err := getSubvolInfo(f)
	if err != nil {
		return Snapshot{}, err
	}
	at := func(off int) uint64 { return *(*uint64)(unsafe.Pointer(&args[off])) }
	var sn Snapshot
	copy(sn.UUID[:], args[296:312])
	copy(sn.Origin[:], args[312:328])
	sn.Changed, sn.Made = at(344), at(352)
	sn.ReadOnly = at(288)&btrfsSubvolRdonly != 0
	return sn, nil
}

// btrfsIocSpaceInfo is BTRFS_IOC_SPACE_INFO, _IOWR(0x94, 20, struct
// btrfs_ioctl_space_args): space_slots (u64), total_spaces (u64), then
// space_slots struct btrfs_ioctl_space_info of flags, total_bytes and
// used_bytes (u64 each). Unprivileged.
const btrfsIocSpaceInfo = 0xC0109414

// The block group flags of BTRFS_IOC_SPACE_INFO that say how metadata is
// stored (BTRFS_BLOCK_GROUP_*).
const (
	bgMetadata = 1 << 2
	bgRAID1    = 1 << 4
	bgDUP      = 1 << 5
	bgRAID10   = 1 << 6
	bgRAID5    = 1 << 7
	bgRAID6    = 1 << 8
	bgRAID1C3  = 1 << 9
	bgRAID1C4  = 1 << 10
)

// MetadataOf returns how the btrfs holding f stores its metadata: its
// node size (BTRFS_IOC_FS_INFO's nodesize, at offset 32) and how many
// bytes its metadata profile writes for each byte of a node, at most
// (BTRFS_IOC_SPACE_INFO): 1 for single, 2 for DUP, RAID1 and RAID10, 3
// and 4 for RAID1C3 and RAID1C4, 2 for RAID5 and RAID6 (their parity, on
// three and four devices), of the block groups in use. Both
// unprivileged.
func MetadataOf(f *os.File) (Metadata, error) {
	info, err := fsInfo(f)
	if err != nil {
		return Metadata{}, err
	}
	m := Metadata{NodeSize: int64(*(*uint32)(unsafe.Pointer(&info[32])))}
	var head [2]uint64 // space_slots 0: the kernel says how many
	if err := ioctl(f.Fd(), btrfsIocSpaceInfo, unsafe.Pointer(&head[0])); err != nil {
		return Metadata{}, fmt.Errorf("BTRFS_IOC_SPACE_INFO: %w", err)
	}
	n := head[1] + 4 // room for block groups made meanwhile
	args := make([]uint64, 2+3*n)
	args[0] = n
	if err := ioctl(f.Fd(), btrfsIocSpaceInfo, unsafe.Pointer(&args[0])); err != nil {
		return Metadata{}, fmt.Errorf("BTRFS_IOC_SPACE_INFO: %w", err)
	}
	for i := range min(args[1], n) {
		// Block groups of another profile may stay, empty, after a
		// conversion (btrfs balance -mconvert): those in use count.
		flags, used := args[2+3*i], args[2+3*i+2]
		if flags&bgMetadata == 0 || used == 0 {
			continue
		}
		copies := 1
		switch {
		case flags&bgRAID1C4 != 0:
			copies = 4
		case flags&bgRAID1C3 != 0:
			copies = 3
		case flags&(bgDUP|bgRAID1|bgRAID10|bgRAID5|bgRAID6) != 0:
			copies = 2
		}
		m.Copies = max(m.Copies, copies)
	}
	if m.NodeSize <= 0 || m.Copies == 0 {
		return Metadata{}, fmt.Errorf("BTRFS_IOC_SPACE_INFO: node size %d, no metadata block group", m.NodeSize)
	}
	return m, nil
}

// btrfsIocGetSubvolRootref is BTRFS_IOC_GET_SUBVOL_ROOTREF, _IOWR(0x94,
// 61, struct btrfs_ioctl_get_subvol_rootref_args): min_treeid (u64), 255
// (treeid, dirid) pairs, num_items (u8) at 4088. Unprivileged.
const btrfsIocGetSubvolRootref = 0xD000943D

// HasSubvols reports whether the btrfs subvolume holding f holds other
// subvolumes, or may (the question could not be answered).
func HasSubvols(f *os.File) bool {
	var args [4096]byte
	if err := ioctl(f.Fd(), btrfsIocGetSubvolRootref, unsafe.Pointer(&args[0])); err != nil {
		return true // EOVERFLOW: more than 255
	}
	return args[4088] != 0
}

// willNeedStep is how much of a range one POSIX_FADV_WILLNEED asks for.
// The kernel reads ahead at most the larger of the device's optimal
// request and its read-ahead window for one call (4 MiB on btrfs, as
// little as 128 KiB on other filesystems) and drops the rest of a larger
// range: asked for 16 MiB at once, btrfs read 4 MiB ahead, and the rest
// came a page at a time.
const willNeedStep = 128 << 10

// WillNeed asks the kernel to read the n bytes of fd at off into the page
// cache, and returns without waiting for them to arrive. A hint: errors
// are ignored.
func WillNeed(fd int, off, n int64) {
	for end := off + n; off < end; off += willNeedStep {
		unix.Fadvise(fd, off, min(willNeedStep, end-off), unix.FADV_WILLNEED)
	}
}

// Cached returns how many of the pages that hold the n bytes of fd at off
// are in the page cache, and false where it cannot tell. It asks
// cachestat(2) (Linux 6.5); on kernels without it, mincore(2) through a
// mapping of the range that touches no page.
func Cached(fd int, off, n int64) (int64, bool) {
	if n <= 0 {
		return 0, true
	}
	var st unix.Cachestat_t
	r := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	err := cachestat(uint(fd), &r, &st, 0)
	if err == nil {
		return int64(st.Cache), true
	}
	if !errors.Is(err, unix.ENOSYS) {
		return 0, false
	}
	page := int64(os.Getpagesize())
	lo := off - off%page
	m, err := unix.Mmap(fd, lo, int(off+n-lo), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, false
	}
	defer unix.Munmap(m)
	vec := make([]byte, (int64(len(m))+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, false
	}
	var c int64
	for _, v := range vec {
		c += int64(v & 1)
	}
	return c, true
}

// cachestat is unix.Cachestat; tests take it away, as an older kernel
// would.
var cachestat = unix.Cachestat

// DontNeed drops from the page cache the clean pages that hold the n
// bytes of fd at off (POSIX_FADV_DONTNEED; dirty ones are written back
// first, in their own time). A hint: errors are ignored.
func DontNeed(fd int, off, n int64) {
	if n > 0 {
		unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	}
}

// Mount is a line of /proc/self/mountinfo: where a filesystem is
// mounted (relative to this process's root), its type as mount(8) names
// it (ext4, nfs4, fuse.sshfs...), and its st_dev.
type Mount struct {
	Point, Type string
	Dev         uint64
}

// Lstat lstats name relative to the directory open at dirfd (dirfd's own
// file where name is "") into st, and reports whether it is the root of a
// mount, if the kernel tells (rootKnown: statx's STATX_ATTR_MOUNT_ROOT,
// Linux 5.8). It takes the attributes the kernel holds (statx's
// AT_STATX_DONT_SYNC), as lstat(2) does of a local filesystem, and asks
// no server of a network or FUSE filesystem: a look at a FUSE filesystem
// whose server does not answer, mounted since a path was checked, would
// wait for ever. Nor does it trigger an automount, as lstat(2) does not.
func Lstat(dirfd int, name string, st *unix.Stat_t) (mountRoot, rootKnown bool, err error) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var sx unix.Statx_t
	for {
		err = unix.Statx(dirfd, name, flags|unix.AT_STATX_DONT_SYNC|unix.AT_NO_AUTOMOUNT, unix.STATX_BASIC_STATS, &sx)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ENOSYS {
		for {
			err = unix.Fstatat(dirfd, name, st, flags)
			if err != unix.EINTR {
				return false, false, err
			}
		}
	}
	if err != nil {
		return false, false, err
	}
	*st = unix.Stat_t{
		Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino, Nlink: uint64(sx.Nlink), Mode: uint32(sx.Mode),
		Uid: sx.Uid, Gid: sx.Gid, Rdev: unix.Mkdev(sx.Rdev_major, sx.Rdev_minor), Size: int64(sx.Size),
		Blksize: int64(sx.Blksize), Blocks: int64(sx.Blocks),
		Atim: unix.Timespec{Sec: sx.Atime.Sec, Nsec: int64(sx.Atime.Nsec)},
		Mtim: unix.Timespec{Sec: sx.Mtime.Sec, Nsec: int64(sx.Mtime.Nsec)},
		Ctim: unix.Timespec{Sec: sx.Ctime.Sec, Nsec: int64(sx.Ctime.Nsec)},
	}
	rootKnown = sx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0
	return rootKnown && sx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, rootKnown, nil
}

// Mounts returns what /proc/self/mountinfo lists, in its order: a mount
// made later at or above another's mount point hides it.
func Mounts() ([]Mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(data))
}

// MountPoints returns where filesystems are mounted, as
// /proc/self/mountinfo lists them (relative to this process's root).
func MountPoints() ([]string, error) {
	ms, err := Mounts()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Point
	}
	return out, nil
}

// parseMountinfo returns the mount of each line of mountinfo: the mount
// point (the fifth field, its spaces, tabs, newlines and backslashes
// written as octal escapes), the device (the third, major:minor) and the
// type (the first field after the separator "-").
func parseMountinfo(mountinfo string) ([]Mount, error) {
	var out []Mount
	for line := range strings.Lines(mountinfo) {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 5 || sep+1 >= len(fields) {
			return nil, fmt.Errorf("mountinfo: short line %q", strings.TrimSpace(line))
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(fields[2], "%d:%d", &major, &minor); err != nil {
			return nil, fmt.Errorf("mountinfo: device %q: %w", fields[2], err)
		}
		out = append(out, Mount{Point: unescapeOctal(fields[4]), Type: unescapeOctal(fields[sep+1]), Dev: unix.Mkdev(major, minor)})
	}
	return out, nil
}

// unescapeOctal replaces each backslash and three octal digits in s by
// the byte they give.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
