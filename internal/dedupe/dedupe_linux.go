//go:build linux

package dedupe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
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
	if Fault != nil {
		Fault("dedupe")
	}
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
// regular file want describes (fsys.Identity.Check: volume, or dev when
// want names none; ino, size, mtime). A difference is a *StaleError.
// Errors do not repeat the path.
//
// No symlink is followed in any component of path (a *safeopen.SymlinkError
// names the one met), and nothing is opened before it is known to be a
// regular file: path is looked up as an O_PATH descriptor, which opens
// nothing, checked, and only then that very inode is opened for reading.
// So a device, FIFO or socket is refused without its open running.
func Open(path string, want fsys.Identity) (*os.File, error) {
	f, _, err := OpenStat(path, want)
	return f, err
}

// OpenStat is Open that also returns the file's stat as Open checked it,
// for callers that need its device or owner: the file opened is the very
// inode stat describes.
func OpenStat(path string, want fsys.Identity) (*os.File, fsys.Stat, error) {
	h, err := lookup(path)
	if err != nil {
		return nil, fsys.Stat{}, err
	}
	defer h.Close()
	// The volume's ioctls need an open file: check asks for it only once
	// it knows the file is regular.
	var f *os.File
	vol := func() (fsys.Volume, error) {
		if f == nil {
			var err error
			if f, err = h.Open(unix.O_RDONLY | unix.O_NONBLOCK); err != nil {
				return fsys.Volume{}, err
			}
		}
		in, err := volumes.Of(f, &h.Stat)
		return in.Volume, err
	}
	if err := check(&h.Stat, want, vol); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fsys.Stat{}, err
	}
	if f == nil {
		if f, err = h.Open(unix.O_RDONLY | unix.O_NONBLOCK); err != nil {
			return nil, fsys.Stat{}, err
		}
	}
	return f, fsys.FromStat(&h.Stat), nil
}

// Recheck checks f, which OpenStat opened as the file want describes,
// against want again, and returns its stat: a *StaleError if its size or
// mtime changed since. Its volume is the one OpenStat checked.
func Recheck(f *os.File, want fsys.Identity) (fsys.Stat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fsys.Stat{}, fmt.Errorf("fstat: %w", err)
	}
	return fsys.FromStat(&st), check(&st, want, func() (fsys.Volume, error) { return want.Vol, nil })
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

// volumes caches the volume of each st_dev met.
var volumes fsys.Volumes

// check checks that st is a regular file with the identity want records;
// vol gives the file's volume, asked only for a want that names one.
func check(st *unix.Stat_t, want fsys.Identity, vol func() (fsys.Volume, error)) error {
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
	m, err := want.Check(fsys.FromStat(st), vol)
	if err != nil {
		return err
	}
	if m != nil {
		return &StaleError{m.Field, m.Got, m.Want}
	}
	return nil
}

// IdentityOf returns path's identity as it is now, for plans made on the
// spot (applysame --from-fdupes). A regular file is named by its volume;
// anything else by its st_dev, which Open then refuses for what it is.
func IdentityOf(path string) (fsys.Identity, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fsys.Identity{}, err
	}
	s := fsys.FromStat(&st)
	id := s.Identity(fsys.Volume{})
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return id, nil
	}
	f, err := Open(path, id)
	if err != nil {
		return fsys.Identity{}, err
	}
	defer f.Close()
	in, err := volumes.Of(f, &st)
	if err != nil {
		return fsys.Identity{}, err
	}
	return s.Identity(in.Volume), nil
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
			out[i].Status = Deduped
		}
		return out
	}
	active := make([]int, 0, len(dsts)) // unfinished destinations
	for i := range dsts {
		active = append(active, i)
	}
	info := make([]unix.FileDedupeRangeInfo, 0, min(len(dsts), MaxDests))
	batch := make([]int, 0, cap(info))
	cold := make([]int, 0, cap(info)) // of batch, those with nothing cached
	for len(active) > 0 {
		if ctx.Err() != nil {
			for _, i := range active {
				out[i].Status = Skipped
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
		cold = cold[:0]
		for _, i := range batch {
			d := dsts[i]
			if c, ok := fsys.Cached(int(d.File.Fd()), d.Off+pos, n); !ok || c == 0 {
				cold = append(cold, i)
			}
			willNeed(d.File, d.Off+pos, n)
		}
		err := fideduperange(src, srcOff+pos, n, info)
		// The kernel read the destinations' pages to compare them, and
		// keeps them cached after sharing: a destination is the copy
		// that goes, and a file of a snapshot has a page cache of its
		// own, so a first run on a snapshot host filled gigabytes of
		// memory with pages nobody reads again, evicting what others
		// use (and on a virtual machine whose host takes free memory
		// back, faulting it in again page by page: applysame took four
		// times as long). Ranges that had nothing cached, or of which
		// the kernel cannot say, are dropped again; the source stays,
		// for the destinations of the lines after.
		for _, i := range cold {
			fsys.DontNeed(int(dsts[i].File.Fd()), dsts[i].Off+pos, n)
		}
		for k, i := range batch {
			o := &out[i]
			switch st := info[k].Status; {
			case err != nil:
				o.Status, o.Err = Failed, destError(dsts[i].File, err)
			case st == unix.FILE_DEDUPE_RANGE_DIFFERS:
				o.Status, o.Err = Differs, ErrDiffers
			case st < 0:
				o.Status, o.Err = Failed, destError(dsts[i].File, syscall.Errno(-st))
			case info[k].Bytes_deduped == 0:
				o.Status = Failed
				o.Err = fmt.Errorf("kernel deduped 0 of %d bytes at offset %d (a partial last block is shared only when both ranges end at EOF)", n, pos)
			default:
				o.Bytes += int64(min(info[k].Bytes_deduped, uint64(n)))
				if o.Bytes == length {
					o.Status = Deduped
				}
			}
		}
		// Keep the unfinished ones.
		active = active[:0]
		for i := range out {
			if out[i].Status == 0 {
				active = append(active, i)
			}
		}
	}
	return out
}

// Explain returns errno as the dedupe ioctl's error: with a message that
// says what it means for deduplication, unwrapping to errno.
func Explain(errno syscall.Errno) error { return errnoError(errno) }

// destError is errnoError for a call that failed on destination f: the
// kernel's EPERM means, even for root, that f is immutable, when it is.
func destError(f *os.File, err error) error {
	if errors.Is(err, unix.EPERM) && fsys.Immutable(f) {
		return &kernelError{unix.EPERM, "operation not permitted: the destination is immutable (chattr +i)"}
	}
	return errnoError(err)
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
	case unix.EROFS:
		msg = "read-only file system: the destination's filesystem is mounted read-only"
	case unix.EDQUOT:
		msg = "disk quota exceeded: the destination's quota (on btrfs, its subvolume's qgroup limit) leaves no room for the metadata that sharing takes"
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

// willNeed starts reading n bytes at off of f into the page cache. The
// kernel compares the ranges of a dedupe one page at a time, reading each
// page that is not cached on its own when it comes to it: on data not
// cached, a 16 MiB call took a second. Read ahead in large requests
// first, the same call takes the time of reading its bytes. Cached pages
// cost a lookup. It is only a hint; errors are ignored.
func willNeed(f *os.File, off, n int64) { fsys.WillNeed(int(f.Fd()), off, n) }
