package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"same/internal/apply"
	"same/internal/cli"
)

// planLines counts the lines that are not blank from where a plan file is
// read next, long lines included, and leaves the offset where it was; a
// pipe's lines are not known.
func TestPlanLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.jsonl")
	long := "{" + strings.Repeat("x", 3<<20) + "}"
	if err := os.WriteFile(path, []byte("{}\n\n  \n"+long+"\n{}\n{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := planLines(f); n != 4 {
		t.Errorf("planLines = %d; want 4", n)
	}
	if _, err := f.Seek(3, 0); err != nil {
		t.Fatal(err)
	}
	if n := planLines(f); n != 3 {
		t.Errorf("planLines from offset 3 = %d; want 3", n)
	}
	if off, _ := f.Seek(0, 1); off != 3 {
		t.Errorf("offset after planLines = %d; want 3", off)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n := planLines(r); n != 0 {
		t.Errorf("planLines(a pipe) = %d; want 0", n)
	}
	if n := planLines(strings.NewReader("{}\n")); n != 0 {
		t.Errorf("planLines(a strings.Reader) = %d; want 0", n)
	}
}

func TestMeter(t *testing.T) {
	s := &apply.Stats{Lines: 120, Bytes: 3 << 29, Checked: 7, Stale: 2}
	for _, tt := range []struct {
		unit   string
		total  int64
		dryRun bool
		want   string
	}{
		{"lines", 4001, false, "applying: 120 of 4001 lines (2%), 40 lines/s, ETA 1m37s, 1.5 GiB deduplicated, 2 not done"},
		{"lines", 0, false, "applying: 120 lines, 40 lines/s, 1.5 GiB deduplicated, 2 not done"},
		{"groups", 0, true, "checking: 120 groups, 40 groups/s, 7 destinations checked, 2 not done"},
	} {
		m := meter(s, tt.unit, tt.total, tt.dryRun)
		m.Elapsed = 3 * time.Second
		if got := cli.Format(m); got != tt.want {
			t.Errorf("meter(%s, %d, dry run %v) = %q; want %q", tt.unit, tt.total, tt.dryRun, got, tt.want)
		}
	}
}
