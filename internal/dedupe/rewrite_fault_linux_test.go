package dedupe_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/testfs"
)

// TestRewriteFailures stops a rewrite of three 1 MiB batches in its
// second batch, each way it can stop: the batches shared before stay
// shared, the rest stays where it was, and the file's content and mtime
// are what they were (or what the truncation left).
func TestRewriteFailures(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	const mib = 1 << 20
	tests := []struct {
		name string
		// arm sets the fault; cancel cancels the rewrite's context.
		arm             func(t *testing.T, path string, cancel func())
		written, shared int64
		err             string // the error's message; %s stands for the path
		is              error
		size            int64 // the file's size after
	}{
		{"interrupt once a batch is shared", func(t *testing.T, path string, cancel func()) {
			setFault(t, "rewrite-shared", cancel)
		}, mib, mib, "context canceled", context.Canceled, 3 * mib},
		{"interrupt once a batch is copied", func(t *testing.T, path string, cancel func()) {
			setFault(t, "rewrite-copied", cancel)
		}, mib, 0, "share [0, 1048576) back from the copy: context canceled", context.Canceled, 3 * mib},
		{"EIO reading the second batch", func(t *testing.T, path string, cancel func()) {
			dedupe.SetReadFault(func(off int64) error {
				if off >= mib {
					return syscall.EIO
				}
				return nil
			})
			t.Cleanup(func() { dedupe.SetReadFault(nil) })
		}, mib, mib, "copy %s [1048576, 2097152): input/output error", syscall.EIO, 3 * mib},
		{"truncated during the copy", func(t *testing.T, path string, cancel func()) {
			setFault(t, "rewrite-shared", func() {
				if err := os.Truncate(path, mib+mib/2); err != nil {
					t.Error(err)
				}
			})
		}, mib + mib/2, mib, "copy %s [1048576, 2097152): the file ends at 1572864: unexpected EOF", io.ErrUnexpectedEOF, mib + mib/2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(mnt, "f"+string(rune('0'+i)))
			data := randomBytes(uint64(10+i), 3*mib)
			f := writeOpen(t, path, data)
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			var st0 unix.Stat_t
			if err := unix.Stat(path, &st0); err != nil {
				t.Fatal(err)
			}
			offs := []int64{0, mib, 2 * mib}
			var before []int64
			for _, off := range offs {
				before = append(before, physicalAt(t, f, off))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.arm(t, path, cancel)

			written, shared, err := dedupe.Rewrite(ctx, f, path, f, path, []dedupe.Span{{Off: 0, Len: 3 * mib}}, mib)
			want := strings.ReplaceAll(tt.err, "%s", path)
			if err == nil || err.Error() != want || !errors.Is(err, tt.is) {
				t.Errorf("Rewrite = %v; want %q, matching %v", err, want, tt.is)
			}
			if written != tt.written || shared != tt.shared {
				t.Errorf("Rewrite wrote %d and shared %d bytes; want %d and %d", written, shared, tt.written, tt.shared)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[:tt.size]) {
				t.Errorf("content changed")
			}
			// What was shared moved; nothing else did.
			for k, off := range offs {
				if off >= tt.size {
					break
				}
				moved := physicalAt(t, f, off) != before[k]
				if want := off < tt.shared; moved != want {
					t.Errorf("offset %d moved = %v; want %v", off, moved, want)
				}
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				t.Fatal(err)
			}
			if tt.size == 3*mib && (st.Mtim != st0.Mtim || st.Ctim != st0.Ctim) {
				t.Errorf("mtime, ctime = %v, %v; want %v, %v", st.Mtim, st.Ctim, st0.Mtim, st0.Ctim)
			}
		})
	}
}

// setFault makes dedupe.Fault call do, once, at point.
func setFault(t *testing.T, point string, do func()) {
	done := false
	dedupe.Fault = func(p string) {
		if p == point && !done {
			done = true
			do()
		}
	}
	t.Cleanup(func() { dedupe.Fault = nil })
}
