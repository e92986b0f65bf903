package apply

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"same/internal/dedupe"
)

// TestHandles: a file a line opened is open for the next line that names
// it, and checked again: a change of its mtime since makes it stale, and
// it is then looked up afresh. Beyond maxIdle files no line uses, the
// least recently used are closed, and all of them at the end.
func TestHandles(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, maxIdle+2)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint("f", i))
		if err := os.WriteFile(paths[i], []byte(strings.Repeat("x", 4096)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hs := newHandles()
	r := id(t, paths[0], 0)
	f1, _, err := hs.open(r)
	if err != nil {
		t.Fatal(err)
	}
	f2, _, err := hs.open(r) // in use by two lines at once
	if err != nil || f2 != f1 {
		t.Fatalf("second open: %v, %p; want the file of the first, %p", err, f2, f1)
	}
	hs.release(f1, false)
	hs.release(f2, false)
	if f3, _, err := hs.open(r); err != nil || f3 != f1 {
		t.Fatalf("open after release: %v, %p; want the file kept, %p", err, f3, f1)
	} else {
		hs.release(f3, false)
	}

	// Changed since: stale, and closed once no line uses it.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(paths[0], later, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hs.open(r); !errors.Is(err, dedupe.ErrStale) || !strings.HasPrefix(err.Error(), "stale: mtime ") {
		t.Fatalf("open after the file changed: %v; want stale: mtime", err)
	}
	if _, err := f1.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the changed file's descriptor: %v; want it closed", err)
	}
	if _, _, err := hs.open(r); !errors.Is(err, dedupe.ErrStale) {
		t.Errorf("open again: %v; want stale, looked up afresh", err)
	}

	// maxIdle + 1 files released: the first of them is closed.
	var fs []*os.File
	for _, p := range paths[1:] {
		f, _, err := hs.open(id(t, p, 0))
		if err != nil {
			t.Fatal(err)
		}
		hs.release(f, false)
		fs = append(fs, f)
	}
	if _, err := fs[0].Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("least recently used: %v; want it closed", err)
	}
	if _, err := fs[1].Stat(); err != nil {
		t.Errorf("second least recently used: %v; want it open", err)
	}
	hs.closeAll()
	for i, f := range fs {
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("after closeAll, file %d: %v; want it closed", i+1, err)
		}
	}
}
