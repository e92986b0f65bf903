package dedupe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
)

// afterCopy, set by tests, runs between a chunk's copy and its swap.
var afterCopy func()

// readFault, set by tests, is called before each read of the file being
// copied, with the offset read; an error it returns is the read's.
var readFault func(off int64) error

// Fault, when set (by tests of callers), is called at the steps of
// Rewrite where an interruption or a failure is tested: "rewrite-copied"
// once a batch is copied and written back, before it is shared back, and
// "rewrite-shared" once it is shared back, before the next batch; and
// "dedupe" before each FIDEDUPERANGE call, anywhere.
var Fault func(point string)

// Rewrite gives the spans of f (opened read-only, at path; in order, not
// overlapping) storage of their own, so that the extent they were in can
// be freed once nothing else refers to it. It copies the spans into a new
// unnamed file (O_TMPFILE) in the directory of the file at (opened, at
// atPath): f itself, or where f's directory cannot hold it (a read-only
// subvolume) another file on f's filesystem. The copy is at the same offsets, in
// batches of at most chunk bytes (DefaultChunk when chunk <= 0; a longer
// span is cut into pieces), writes each batch back (sync_file_range: a
// piece's write-back starts once it is copied, while the next is) and
// deduplicates each piece of f against its copy: the kernel compares the
// bytes under lock, so if f changed since the copy the piece is left alone
// and the result is ErrDiffers. Adjacent spans in a batch are one piece,
// so pieces are apart in the file and each piece's copy is an extent of
// its own: a process killed between two leaves no extent half referenced,
// and what was not shared back belongs to the unnamed file and is freed
// with it. f's content, mtime and ctime
// never change.
//
// It returns the bytes written to the copy and the bytes of f now sharing
// it.
func Rewrite(ctx context.Context, f *os.File, path string, at *os.File, atPath string, spans []Span, chunk int64) (written, shared int64, err error) {
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	chunk = max(chunk&^(1<<20-1), 1<<20) // whole blocks: only the last may end in a partial one
	tmp, err := tmpFile(at, atPath)
	if err != nil {
		return 0, 0, err
	}
	defer tmp.Close()
	buf := make([]byte, min(chunk, 1<<20))

	// share writes the batch back, then shares each piece back from it.
	// Writing back a batch at once, not each piece, matters: a rewrite
	// holds hundreds of small spans where a file is mostly deduplicated,
	// and each write-back waits for the disk.
	var batch []Span
	var inBatch int64
	share := func() error {
		if len(batch) == 0 {
			return nil
		}
		// Write the batch back now, so that each piece becomes an extent
		// of its own: no journal commit is needed (if the machine stops,
		// the unnamed file is gone and the file still refers to the old
		// extent), only the extents.
		lo, hi := batch[0].Off, batch[len(batch)-1].Off+batch[len(batch)-1].Len
		if err := unix.SyncFileRange(int(tmp.Fd()), lo, hi-lo, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			return fmt.Errorf("write back the copy: %w", err)
		}
		if afterCopy != nil {
			afterCopy()
		}
		if Fault != nil {
			Fault("rewrite-copied")
		}
		for _, p := range batch {
			o := Range(ctx, tmp, p.Off, p.Len, []Dest{{File: f, Off: p.Off}}, chunk)[0]
			shared += o.Bytes
			if o.Status != Deduped {
				if o.Err == nil {
					o.Err = ctx.Err()
				}
				return sharingBack{fmt.Errorf("share [%d, %d) back from the copy: %w", p.Off, p.Off+p.Len, o.Err)}
			}
		}
		batch, inBatch = batch[:0], 0
		if Fault != nil {
			Fault("rewrite-shared")
		}
		return nil
	}
	for _, s := range spans {
		for lo := s.Off; lo < s.Off+s.Len; lo += chunk {
			n := min(chunk, s.Off+s.Len-lo)
			if inBatch+n > chunk {
				if err := share(); err != nil {
					return written, shared, err
				}
			}
			// An interrupt stops the rewrite before the next copy.
			if err := ctx.Err(); err != nil {
				return written, shared, err
			}
			k := len(batch) - 1
			adjacent := k >= 0 && batch[k].Off+batch[k].Len == lo
			if k >= 0 && !adjacent {
				// The last piece is whole: its write-back starts now,
				// while the next is copied (an error shows in the wait in share).
				unix.SyncFileRange(int(tmp.Fd()), batch[k].Off, batch[k].Len, unix.SYNC_FILE_RANGE_WRITE)
			}
			w, err := copyRange(tmp, f, lo, n, buf)
			written += w
			if err != nil {
				return written, shared, fmt.Errorf("copy %s [%d, %d): %w", path, lo, lo+n, err)
			}
			if adjacent {
				batch[k].Len += n // adjacent copies would be written as one extent
			} else {
				batch = append(batch, Span{Off: lo, Len: n})
			}
			inBatch += n
		}
	}
	if err := ctx.Err(); err != nil {
		return written, shared, err
	}
	return written, shared, share()
}

// ErrMoved is the error of Rewrite when the file is no longer at its path,
// in a directory on its filesystem: renamed, or a directory above it
// replaced.
var ErrMoved = errors.New("no longer at its path on its filesystem")

// tmpFile makes the unnamed file (O_TMPFILE) that a rewrite copies f
// into, in the directory of path reached as Open reaches files (no symlink
// followed in any component), and only if that directory holds f under
// its name and is on f's filesystem (the same st_dev: on btrfs, the same
// subvolume), so that the copy can share storage with f and is made
// nowhere else.
func tmpFile(f *os.File, path string) (*os.File, error) {
	dir := filepath.Dir(path)
	h, err := lookup(dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer h.Close()
	var fst, st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Fstatat(h.Fd(), filepath.Base(path), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Dev != fst.Dev || st.Ino != fst.Ino || h.Stat.Dev != fst.Dev {
		return nil, fmt.Errorf("%s: %w", path, ErrMoved)
	}
	fd, err := unix.Openat(h.Fd(), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE in", Path: dir, Err: err}
	}
	tmp := os.NewFile(uintptr(fd), "copy of "+path)
	// btrfs shares storage only between files that both keep checksums
	// of their data or both do not (NOCOW files, and files written while
	// it was mounted with nodatasum); the copy has what its directory and
	// the mount gave it, which the tree search shows while it is new.
	// Giving an empty file the NOCOW attribute, or taking it away, sets
	// both (a file without checksums but not NOCOW gets a NOCOW copy).
	nocow := fsys.NoCOW(f)
	want := fsys.NoChecksums(f, fst.Ino)
	if fsys.NoCOW(tmp) != nocow || fsys.NoChecksums(tmp, 0) != want {
		err := fsys.SetNoCOW(tmp, want)
		if err == nil && fsys.NoCOW(tmp) != want {
			err = errors.New("the filesystem kept it as it was")
		}
		if err != nil {
			tmp.Close()
			return nil, fmt.Errorf("give the copy of %s what the file has (NOCOW %v, checksums of its data %v): %w", path, nocow, !want, err)
		}
	}
	return tmp, nil
}

// copyRange copies n bytes at off from src to dst, at the same offset,
// through buf: a real copy, never a reflink (copy_file_range could share
// the very extent being freed). A file that ends before is an
// io.ErrUnexpectedEOF that says where it ends.
func copyRange(dst, src *os.File, off, n int64, buf []byte) (int64, error) {
	var done int64
	for done < n {
		if readFault != nil {
			if err := readFault(off + done); err != nil {
				return done, err
			}
		}
		m, err := src.ReadAt(buf[:min(int64(len(buf)), n-done)], off+done)
		if m == 0 && err == io.EOF {
			return done, fmt.Errorf("the file ends at %d: %w", off+done, io.ErrUnexpectedEOF)
		}
		if m == 0 && err != nil {
			return done, err
		}
		if _, err := dst.WriteAt(buf[:m], off+done); err != nil {
			return done, err
		}
		done += int64(m)
	}
	return done, nil
}
