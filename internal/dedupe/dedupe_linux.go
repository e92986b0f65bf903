//go:build linux

package dedupe

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"same/internal/plan"
	"same/internal/safeopen"
)

// fideduperange issues one FIDEDUPERANGE call: share length bytes at srcOff
// of src with each info's range. It is unix.IoctlFileDedupeRange, retried
// on EINTR. The kernel's rules, which callers must follow:
//
//   - At most MaxDests (127) destinations: the argument must fit in one
//     4 KiB page; more gives ENOMEM.
//   - The kernel cuts a call to 1 GiB and may dedupe less than asked; each
//     info's Bytes_deduped says how much. Callers loop until done.
//     Bytes_deduped is the length the filesystem was asked for after that
//     cut, not after rounding down to whole blocks: btrfs and XFS report
//     an unaligned length in full though they shared only whole blocks.
//   - Status is per destination: FILE_DEDUPE_RANGE_SAME (0),
//     FILE_DEDUPE_RANGE_DIFFERS (1) or a negative errno. Status 0 with 0
//     Bytes_deduped means nothing was done (a length that rounds down to
//     zero blocks, say), not success.
//   - Offsets must be multiples of the block size. A length that is not is
//     rounded down, except that a partial last block is shared when both
//     ranges end exactly at their files' EOF. Ranges past EOF: EINVAL.
//   - The returned error covers the whole call (bad source, unsupported
//     filesystem, too many destinations); Info is then meaningless.
//   - Both inodes are locked and compared while the call runs.
func fideduperange(src *os.File, srcOff, length int64, info []unix.FileDedupeRangeInfo) error {
	arg := unix.FileDedupeRange{
		Src_offset: uint64(srcOff),
		Src_length: uint64(length),
		Info:       info,
	}
	for {
		err := unix.IoctlFileDedupeRange(int(src.Fd()), &arg)
		if err != unix.EINTR {
			return err
		}
		for i := range info {
			info[i].Bytes_deduped, info[i].Status = 0, 0
		}
	}
}

// Open opens path read-only for deduplication and checks that it is the
// regular file want describes (dev, ino, size, mtime). Errors do not repeat
// the path.
//
// No symlink is followed in any component of path (a *safeopen.SymlinkError
// names the one met), and nothing is opened before it is known to be a
// regular file: path is looked up as an O_PATH descriptor, which opens
// nothing, checked, and only then that very inode is opened for reading.
// So a device, FIFO or socket is refused without its open running.
func Open(path string, want plan.Range) (*os.File, error) {
	h, err := lookup(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := check(&h.Stat, want); err != nil {
		return nil, err
	}
	return h.Open(unix.O_RDONLY | unix.O_NONBLOCK)
}

// lookup returns an O_PATH handle of path, reached with no symlink
// followed, and refuses a symlink at the end as open(2) with O_NOFOLLOW
// would (ELOOP).
func lookup(path string) (*safeopen.Handle, error) {
	h, err := safeopen.Lookup(path)
	var se *safeopen.SymlinkError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("%w (%w)", notRegular(se.Error()), unix.ELOOP)
	}
	if err != nil {
		return nil, err
	}
	if h.Stat.Mode&unix.S_IFMT == unix.S_IFLNK {
		h.Close()
		return nil, fmt.Errorf("%w (%w)", notRegular("is a symlink"), unix.ELOOP)
	}
	return h, nil
}

func check(st *unix.Stat_t, want plan.Range) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return notRegular("is a directory")
	case unix.S_IFIFO:
		return notRegular("is a FIFO")
	case unix.S_IFSOCK:
		return notRegular("is a socket")
	case unix.S_IFCHR:
		return notRegular("is a character device")
	case unix.S_IFBLK:
		return notRegular("is a block device")
	case unix.S_IFLNK:
		return notRegular("is a symlink")
	default:
		return notRegular(fmt.Sprintf("is not a regular file (mode %#o)", st.Mode))
	}
	got := rangeOf(st)
	switch {
	case got.Dev != want.Dev:
		return &StaleError{"dev", int64(got.Dev), int64(want.Dev)}
	case got.Ino != want.Ino:
		return &StaleError{"ino", int64(got.Ino), int64(want.Ino)}
	case got.Size != want.Size:
		return &StaleError{"size", got.Size, want.Size}
	case got.Mtime != want.Mtime:
		return &StaleError{"mtime", got.Mtime, want.Mtime}
	}
	return nil
}

// rangeOf returns the identity in st, at offset 0.
func rangeOf(st *unix.Stat_t) plan.Range {
	return plan.Range{
		Dev:   uint64(st.Dev),
		Ino:   st.Ino,
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
	}
}

// Identity returns path's identity as lstat(2) reports it now, as a range
// at offset 0, for plans made on the spot (applysame --from-fdupes).
func Identity(path string) (plan.Range, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return plan.Range{}, err
	}
	r := rangeOf(&st)
	r.Path = path
	return r, nil
}

// Range dedupes length bytes at srcOff of src with each destination, in
// calls of at most chunk bytes (DefaultChunk when chunk <= 0; rounded down
// to whole blocks) and MaxDests
// destinations, and returns one Outcome per destination, in order.
//
// All destinations advance together, one chunk per call. One that the
// kernel advanced less than asked continues alone from where it stopped;
// one whose bytes differ, or that fails, stops there. When ctx is cancelled
// Range stops between calls (a call in progress finishes) and marks the
// destinations not yet finished as skipped.
func Range(ctx context.Context, src *os.File, srcOff, length int64, dsts []Dest, chunk int64) []Outcome {
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	// The kernel reports an unaligned length as deduped in full although
	// it shared only the whole blocks, so every call but the last must
	// cover whole blocks.
	var st unix.Statfs_t
	if unix.Fstatfs(int(src.Fd()), &st) == nil && st.Bsize > 0 {
		chunk = max(chunk-chunk%st.Bsize, st.Bsize)
	}
	out := make([]Outcome, len(dsts))
	if length <= 0 {
		for i := range out {
			out[i].Status = plan.DstDeduped
		}
		return out
	}
	active := make([]int, 0, len(dsts)) // unfinished destinations
	for i := range dsts {
		active = append(active, i)
	}
	info := make([]unix.FileDedupeRangeInfo, 0, min(len(dsts), MaxDests))
	batch := make([]int, 0, cap(info))
	for len(active) > 0 {
		if ctx.Err() != nil {
			for _, i := range active {
				out[i].Status = plan.DstSkipped
			}
			break
		}
		// The call's batch: up to MaxDests of the destinations that are
		// furthest behind, all at the same position.
		pos := out[active[0]].Bytes
		for _, i := range active {
			pos = min(pos, out[i].Bytes)
		}
		batch, info = batch[:0], info[:0]
		for _, i := range active {
			if out[i].Bytes == pos && len(batch) < MaxDests {
				batch = append(batch, i)
				info = append(info, unix.FileDedupeRangeInfo{
					Dest_fd:     int64(dsts[i].File.Fd()),
					Dest_offset: uint64(dsts[i].Off + pos),
				})
			}
		}
		n := min(chunk, length-pos)
		willNeed(src, srcOff+pos, n)
		for _, i := range batch {
			willNeed(dsts[i].File, dsts[i].Off+pos, n)
		}
		err := fideduperange(src, srcOff+pos, n, info)
		for k, i := range batch {
			o := &out[i]
			switch st := info[k].Status; {
			case err != nil:
				o.Status, o.Err = plan.DstError, errnoError(err)
			case st == unix.FILE_DEDUPE_RANGE_DIFFERS:
				o.Status, o.Err = plan.DstDiffers, ErrDiffers
			case st < 0:
				o.Status, o.Err = plan.DstError, errnoError(syscall.Errno(-st))
			case info[k].Bytes_deduped == 0:
				o.Status = plan.DstError
				o.Err = fmt.Errorf("kernel deduped 0 of %d bytes at offset %d (a partial last block is shared only when both ranges end at EOF)", n, pos)
			default:
				o.Bytes += int64(min(info[k].Bytes_deduped, uint64(n)))
				if o.Bytes == length {
					o.Status = plan.DstDeduped
				}
			}
		}
		// Keep the unfinished ones.
		active = active[:0]
		for i := range out {
			if out[i].Status == "" {
				active = append(active, i)
			}
		}
	}
	return out
}

// errnoError gives a kernel error a message that says what it means for
// deduplication. It unwraps to the errno.
func errnoError(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	var msg string
	switch errno {
	case unix.EXDEV:
		msg = "on another filesystem than the source"
	case unix.EOPNOTSUPP:
		msg = "filesystem does not support dedupe"
	case unix.EPERM:
		msg = "operation not permitted: need CAP_SYS_ADMIN, ownership, or write access to the destination"
	case unix.EACCES:
		msg = "permission denied"
	case unix.EINVAL:
		msg = "invalid argument: offsets not aligned to the block size, a range past EOF, overlapping ranges in one file, " +
			"or (btrfs) only one of the files NODATASUM (chattr +C)"
	case unix.ETXTBSY:
		msg = "text file busy: the file is an active swapfile"
	case unix.EAGAIN:
		msg = "resource temporarily unavailable: a btrfs send is running on the subvolume"
	case unix.ENOSPC:
		msg = "no space left on device"
	case unix.EISDIR:
		msg = "is a directory"
	case unix.ENOMEM:
		msg = "cannot allocate memory (more than 127 destinations in one call?)"
	default:
		msg = errno.Error()
	}
	return &kernelError{errno, msg}
}

type kernelError struct {
	errno syscall.Errno
	msg   string
}

func (e *kernelError) Error() string { return e.msg }
func (e *kernelError) Unwrap() error { return e.errno }

// ErrnoName returns the symbolic name ("EPERM") of the errno err wraps, or
// "" when it wraps none.
func ErrnoName(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == unix.EOPNOTSUPP {
		return "EOPNOTSUPP" // not its alias ENOTSUP, which ErrnoName prefers
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return fmt.Sprintf("errno %d", int(errno))
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
	id := fmt.Sprintf("%08x%08x", uint32(st.Fsid.Val[0]), uint32(st.Fsid.Val[1]))
	if st.Type == unix.BTRFS_SUPER_MAGIC {
		if uuid, err := btrfsUUID(f); err == nil {
			id = uuid
		}
	}
	return FS{
		ID:        id,
		Type:      fsType(st.Type),
		BlockSize: st.Bsize,
		Free:      int64(st.Bfree) * unit,
	}, nil
}

// btrfsIocFSInfo is BTRFS_IOC_FS_INFO, _IOR(0x94, 31, struct
// btrfs_ioctl_fs_info_args): 1024 bytes, the filesystem's UUID (fsid) at
// offset 16, after max_id and num_devices. It needs no privilege.
const btrfsIocFSInfo = 0x8400941F

// btrfsUUID returns the UUID of the btrfs holding f, in hex.
func btrfsUUID(f *os.File) (string, error) {
	var args [1024]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), btrfsIocFSInfo, uintptr(unsafe.Pointer(&args[0]))); errno != 0 {
		return "", errno
	}
	return hex.EncodeToString(args[16:32]), nil
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

func fsType(magic int64) string {
	switch magic {
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	}
	return fmt.Sprintf("%#x", magic)
}

// willNeed starts reading n bytes at off of f into the page cache. The
// kernel compares the ranges of a dedupe one page at a time, reading each
// page that is not cached on its own when it comes to it: on data not
// cached, a 16 MiB call took a second. Read ahead in large requests
// first, the same call takes the time of reading its bytes. Cached pages
// cost a lookup. It is only a hint; errors are ignored.
func willNeed(f *os.File, off, n int64) {
	unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
}

// fsNoCOWFl is FS_NOCOW_FL, the NOCOW attribute (chattr +C) among the
// flags FS_IOC_GETFLAGS reports.
const fsNoCOWFl = 0x00800000

// NoCOW reports whether f has the NOCOW attribute. btrfs keeps no
// checksums for such data, and shares storage only between files that
// both have the attribute or both lack it (EINVAL otherwise). Where the
// filesystem has no such attribute, it reports false.
func NoCOW(f *os.File) bool {
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	return err == nil && flags&fsNoCOWFl != 0
}
