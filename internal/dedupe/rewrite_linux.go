package dedupe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"same/internal/plan"
)

// Rewrite gives the spans of f (opened read-only, at path) storage of their
// own, so that the extent they were in can be freed once nothing else
// refers to it. It copies the spans into a new unnamed file (O_TMPFILE) in
// f's directory, at the same offsets, syncs it, and then deduplicates each
// span of f against the copy: the kernel compares the bytes under lock, so
// if f changed since the copy the span is left alone and the result is
// ErrDiffers. f's content, mtime and ctime never change; a crash at any
// point leaves nothing behind but space that the next sync reclaims.
//
// It returns the bytes written to the copy and the bytes of f now sharing
// it.
func Rewrite(ctx context.Context, f *os.File, path string, spans []plan.Span, chunk int64) (written, shared int64, err error) {
	fd, err := unix.Open(filepath.Dir(path), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, 0, &os.PathError{Op: "open O_TMPFILE in", Path: filepath.Dir(path), Err: err}
	}
	tmp := os.NewFile(uintptr(fd), "copy of "+path)
	defer tmp.Close()
	buf := make([]byte, 1<<20)
	for _, s := range spans {
		for off := s.Off; off < s.Off+s.Len; {
			if err := ctx.Err(); err != nil {
				return written, 0, err
			}
			n, err := f.ReadAt(buf[:min(int64(len(buf)), s.Off+s.Len-off)], off)
			if n == 0 && err != nil {
				return written, 0, fmt.Errorf("read %s at %d: %w", path, off, err)
			}
			if _, err := tmp.WriteAt(buf[:n], off); err != nil {
				return written, 0, fmt.Errorf("write the copy: %w", err)
			}
			off += int64(n)
			written += int64(n)
		}
	}
	if err := tmp.Sync(); err != nil {
		return written, 0, fmt.Errorf("sync the copy: %w", err)
	}
	for _, s := range spans {
		o := Range(ctx, tmp, s.Off, s.Len, []Dest{{File: f, Off: s.Off}}, chunk)[0]
		shared += o.Bytes
		if o.Status != plan.DstDeduped {
			if o.Err == nil {
				o.Err = ctx.Err()
			}
			return written, shared, fmt.Errorf("share [%d, %d) back from the copy: %w", s.Off, s.Off+s.Len, o.Err)
		}
	}
	return written, shared, nil
}
