package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
)

// TestRecorded plans an index of two equal files that are not at hand:
// without -recorded both are left out, their filesystem not mounted; with it, the plan uses the
// extents recorded and opens no file.
func TestRecorded(t *testing.T) {
	db := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.UseBlockSize(4096); err != nil {
		t.Fatal(err)
	}
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	vol := fsys.Volume{FS: "0123456789abcdef0123456789abcdef"}
	if err := tx.PutVolume(fsys.Info{Volume: vol, Magic: fstype.XFS, BlockSize: 4096}, 0); err != nil {
		t.Fatal(err)
	}
	var sums []byte
	for i := range uint64(4) {
		sums = binary.LittleEndian.AppendUint64(sums, 0x1234+i)
	}
	for i, path := range []string{"/nonexistent/same/a", "/nonexistent/same/b"} {
		f := index.File{Path: path, Identity: fsys.Identity{Vol: vol, Ino: uint64(10 + i), Size: 4 * 4096, Mtime: 1, Ctime: 1}}
		ext := []fiemap.Extent{{Physical: int64(i+1) << 30, Length: 4 * 4096, Flags: fiemap.FlagLast}}
		if _, err := tx.Put(f, sums, ext); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	ix.Close()

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-q", "-db", db}, nil, &out, &errb); err != nil {
		t.Fatalf("findsame: %v", err)
	}
	if want := "findsame: 2 files under /nonexistent/same left out: their filesystem (0123456789abcdef0123456789abcdef) is not mounted there; the index keeps them until it is (hashfile -new-fs prunes them)\n"; out.Len() != 0 || errb.String() != want {
		t.Errorf("findsame without -recorded: plan %q, stderr %q; want no plan and %q", out.String(), errb.String(), want)
	}
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"-q", "-recorded", "-db", db}, nil, &out, &errb); err != nil {
		t.Fatalf("findsame -recorded: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || !strings.Contains(out.String(), "/nonexistent/same/b") || errb.Len() != 0 {
		t.Errorf("findsame -recorded: plan %q (%d lines), stderr %q; want one line, no warnings", out.String(), n, errb.String())
	}

	// -report prints the same plan for a person.
	out.Reset()
	if err := run(context.Background(), []string{"-q", "-recorded", "-report", "-db", db}, nil, &out, &errb); err != nil {
		t.Fatalf("findsame -recorded -report: %v", err)
	}
	want := `plan: 1 lines, 1 destinations, 16.0 KiB to deduplicate; about 16.0 KiB to be freed
largest runs (length x destinations):
    16.0 KiB  /nonexistent/same/a +0 -> 1 x, first /nonexistent/same/b +0
directories with the most to deduplicate:
    16.0 KiB  /nonexistent/same
`
	if out.String() != want {
		t.Errorf("findsame -report printed\n%s\nwant\n%s", out.String(), want)
	}

	// A temporary table left by a run killed a day ago goes, with a
	// warning; the plan is the same.
	left := filepath.Join(filepath.Dir(db), ".index.db-sums-4711.tmp")
	if err := os.WriteFile(left, make([]byte, 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	day := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(left, day, day); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"-q", "-recorded", "-db", db}, nil, &out, &errb); err != nil {
		t.Fatalf("findsame -recorded: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || !strings.Contains(out.String(), "/nonexistent/same/b") {
		t.Errorf("findsame -recorded with a leftover table: plan %q (%d lines), want one line", out.String(), n)
	}
	if want := "findsame: removed 1 temporary table(s) of sums beside " + db + "-sums (2.9 KiB), left by runs killed while they wrote them\n"; errb.String() != want {
		t.Errorf("findsame with a leftover table: stderr %q, want %q", errb.String(), want)
	}
	if _, err := os.Lstat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the leftover table: %v, want it gone", err)
	}
}
