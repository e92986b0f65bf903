package sumtab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestKilledLeavesNothing: a process killed while it writes a table
// (SIGKILL, as from the OOM killer) leaves nothing beside the index.
func TestKilledLeavesNothing(t *testing.T) {
	if dir := os.Getenv("SUMTAB_KILLED_DIR"); dir != "" {
		// The child: write a table past its first buffers, then die.
		directAfter = 0
		w, err := Create(filepath.Join(dir, "index.db-sums"), Header{Key: "k"})
		if err != nil {
			os.Exit(3)
		}
		es := make([]Entry, 3*directBuf/EntrySize)
		for i := range es {
			es[i].Sum = uint64(i)
		}
		if w.Add(es...) != nil {
			os.Exit(4)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledLeavesNothing$")
	cmd.Env = append(os.Environ(), "SUMTAB_KILLED_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child: %v, want killed by SIGKILL\n%s", err, out)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		info, _ := e.Info()
		t.Errorf("left beside the index: %s (%d bytes)", e.Name(), info.Size())
	}
}

// TestNamedTemporary: where O_TMPFILE is refused, a table is written to a
// named temporary file, renamed into place by Commit and removed by Abort.
func TestNamedTemporary(t *testing.T) {
	createTemp = func(string) (*os.File, error) { return nil, syscall.EOPNOTSUPP }
	defer func() { createTemp = createUnnamed }()
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db-sums")
	for _, commit := range []bool{false, true} {
		w, err := Create(path, Header{Key: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if !w.named {
			t.Fatal("not a named temporary file")
		}
		if err := w.Add(Entry{Sum: 1}, Entry{Sum: 2}); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 1 || left[0].Name() == "index.db-sums" {
			t.Fatalf("while written, beside the index: %v", left)
		}
		if !commit {
			w.Abort()
		} else if err := w.Commit(Sets{}, nil, nil); err != nil {
			t.Fatal(err)
		}
		left, _ := os.ReadDir(dir)
		if want := map[bool]int{false: 0, true: 1}[commit]; len(left) != want || (commit && left[0].Name() != "index.db-sums") {
			t.Fatalf("after Commit %v, beside the index: %v", commit, left)
		}
	}
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if tb.Entries != 2 {
		t.Errorf("%d entries, want 2", tb.Entries)
	}
}

// TestRemoveLeftovers: the named temporary tables of runs killed long
// ago go; those of a run writing now, other files, and directories stay.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db-sums")
	old := time.Now().Add(-LeftoverAge - time.Hour)
	write := func(name string, size int, at time.Time) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	write(".index.db-sums-123.tmp", 1000, old)
	write(".index.db-sums.delta-456.tmp", 24, old)
	write(".index.db-sums-789.tmp", 5, time.Now()) // being written
	write(".index.db-123.tmp", 7, old)             // not a table's
	write("index.db-sums", 9, old)                 // the table
	if err := os.Mkdir(filepath.Join(dir, ".index.db-sums-dir.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, ".index.db-sums-dir.tmp"), old, old); err != nil {
		t.Fatal(err)
	}
	n, size := RemoveLeftovers(path)
	if n != 2 || size != 1024 {
		t.Errorf("removed %d files of %d bytes, want 2 of 1024", n, size)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".index.db-123.tmp", ".index.db-sums-789.tmp", ".index.db-sums-dir.tmp", "index.db-sums"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
