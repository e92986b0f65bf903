package dedupe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"same/internal/plan"
)

// afterCopy, set by tests, runs between a chunk's copy and its swap.
var afterCopy func()

// Rewrite gives the spans of f (opened read-only, at path) storage of their
// own, so that the extent they were in can be freed once nothing else
// refers to it. Chunk by chunk (DefaultChunk when chunk <= 0), it copies
// the span into a new unnamed file (O_TMPFILE) in f's directory, at the
// same offset, writes the chunk back (sync_file_range) and deduplicates
// that chunk of f against the copy: the kernel compares the bytes under lock, so if f changed since the
// copy the chunk is left alone and the result is ErrDiffers. Each chunk's
// copy is its own extent, so a process killed between chunks leaves no
// extent half referenced: what was not shared back belongs to the unnamed
// file and is freed with it. f's content, mtime and ctime never change.
//
// It returns the bytes written to the copy and the bytes of f now sharing
// it.
func Rewrite(ctx context.Context, f *os.File, path string, spans []plan.Span, chunk int64) (written, shared int64, err error) {
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	chunk = max(chunk&^(1<<20-1), 1<<20) // whole blocks: only the last may end in a partial one
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, 0, &os.PathError{Op: "open O_TMPFILE in", Path: filepath.Dir(path), Err: err}
	}
	tmp := os.NewFile(uintptr(fd), "copy of "+path)
	defer tmp.Close()
	buf := make([]byte, min(chunk, 1<<20))
	for _, s := range spans {
		for lo := s.Off; lo < s.Off+s.Len; lo += chunk {
			if err := ctx.Err(); err != nil {
				return written, shared, err
			}
			n := min(chunk, s.Off+s.Len-lo)
			w, err := copyRange(tmp, f, lo, n, buf)
			written += w
			if err != nil {
				return written, shared, fmt.Errorf("copy %s [%d, %d): %w", path, lo, lo+n, err)
			}
			// Write the chunk back now, so that it becomes an extent of its
			// own: no journal commit is needed (if the machine stops, the
			// unnamed file is gone and the file still refers to the old
			// extent), only the extent.
			if err := unix.SyncFileRange(int(tmp.Fd()), lo, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
				return written, shared, fmt.Errorf("write back the copy: %w", err)
			}
			if afterCopy != nil {
				afterCopy()
			}
			o := Range(ctx, tmp, lo, n, []Dest{{File: f, Off: lo}}, chunk)[0]
			shared += o.Bytes
			if o.Status != plan.DstDeduped {
				if o.Err == nil {
					o.Err = ctx.Err()
				}
				return written, shared, fmt.Errorf("share [%d, %d) back from the copy: %w", lo, lo+n, o.Err)
			}
		}
	}
	return written, shared, nil
}

// copyRange copies n bytes at off from src to dst, at the same offset,
// through buf: a real copy, never a reflink (copy_file_range could share
// the very extent being freed).
func copyRange(dst, src *os.File, off, n int64, buf []byte) (int64, error) {
	var done int64
	for done < n {
		m, err := src.ReadAt(buf[:min(int64(len(buf)), n-done)], off+done)
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
