package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/cli"
	"same/internal/index"
	"same/internal/plan"
	"same/internal/scan"
	"same/internal/testfs"
)

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args   []string
		status int
		msg    string
	}{
		{[]string{"-db", filepath.Join(dir, "none.db")}, 1, "open index " + filepath.Join(dir, "none.db") + ": no index (run hashfile first)"},
		{[]string{"extra"}, 2, `unexpected argument "extra": findsame reads the index (-db)`},
		{[]string{"-min-len", "lots"}, 2, `invalid value "lots" for flag -min-len: bad size "lots": want a number of bytes such as 4096, 128K or 16MiB`},
		{[]string{"-exclude", "["}, 2, `bad exclude pattern "[": syntax error in pattern`},
		{[]string{"-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"-tmpdir", filepath.Join(dir, "none")}, 2, "-tmpdir " + filepath.Join(dir, "none") + ": not a directory"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		err := run(context.Background(), tt.args, nil, &out, &errb)
		if got := cli.Status(err); got != tt.status {
			t.Errorf("findsame %v: status %d; want %d", tt.args, got, tt.status)
		}
		if err == nil || err.Error() != tt.msg {
			t.Errorf("findsame %v: error %v; want %q", tt.args, err, tt.msg)
		}
		if out.Len() != 0 {
			t.Errorf("findsame %v: wrote %q to stdout; want nothing", tt.args, out.String())
		}
	}
}

// An index damaged on disk is named as such, with what to do.
func TestDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "tree"))
	db := filepath.Join(dir, "index.db")
	hashTree(t, db, filepath.Join(dir, "tree"))
	testfs.DamageSQLite(t, db)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"-db", db}, nil, &out, &errb)
	want := ": database disk image is malformed (11): the index " + db + " is damaged: move it aside (with its -wal and -shm files) and run hashfile again, which makes a new one, reading every file once"
	if cli.Status(err) != cli.ExitError || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("findsame on a damaged index: status %d, error %v; want 1 and an error ending %q", cli.Status(err), err, want)
	}
}

// writeTree makes files with known duplicates: whole copies, a run shared
// at another block-aligned offset, a run repeated inside one file, a tail,
// zero blocks and small files.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	a := random(1<<20 + 777)
	run := random(256 << 10)
	files := map[string][]byte{
		"a":          a,
		"copies/a1":  a,
		"copies/a2":  a,
		"mixed":      bytes.Join([][]byte{random(12 << 10), run, random(40 << 10), run, random(100)}, nil),
		"other":      bytes.Join([][]byte{random(8 << 10), run}, nil),
		"zeros":      make([]byte, 64<<10),
		"zeros2":     append(make([]byte, 64<<10), run...),
		"small":      []byte("small\n"),
		"small-copy": []byte("small\n"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func hashTree(t *testing.T, db, dir string) {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	st, err := scan.Run(context.Background(), ix, []string{dir}, scan.Options{BlockSize: 4096})
	if err != nil || st.Failed != 0 {
		t.Fatalf("scan: %v, %d failed", err, st.Failed)
	}
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// TestRealTrees plans a tree on real btrfs and XFS and checks every
// planned pair of ranges holds identical bytes, no destination ranges
// overlap, and the runs expected are there.
func TestRealTrees(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "512M")
			dir := filepath.Join(mnt, "tree")
			writeTree(t, dir)
			db := filepath.Join(t.TempDir(), "index.db")
			hashTree(t, db, dir)

			var out, errb bytes.Buffer
			if err := run(context.Background(), []string{"-db", db}, nil, &out, &errb); err != nil {
				t.Fatalf("findsame: %v\n%s", err, errb.String())
			}
			type span struct {
				path   string
				lo, hi int64
			}
			var dsts []span
			got := make(map[string]int64) // "src>dst" -> bytes
			sc := bufio.NewScanner(&out)
			sc.Buffer(nil, 16<<20)
			rewrites := 0
			for sc.Scan() {
				rec, err := plan.Parse(sc.Bytes())
				if err != nil {
					t.Fatalf("plan line %s: %v", sc.Text(), err)
				}
				if _, ok := rec.(*plan.Rewrite); ok {
					rewrites++
					continue
				}
				d := rec.(*plan.Dedupe)
				want := readAt(t, d.Src.Path, d.Src.Off, d.Len)
				for _, r := range d.Dst {
					if !bytes.Equal(readAt(t, r.Path, r.Off, d.Len), want) {
						t.Errorf("%s@%d and %s@%d (%d bytes) differ", d.Src.Path, d.Src.Off, r.Path, r.Off, d.Len)
					}
					for _, s := range dsts {
						if s.path == r.Path && s.lo < r.Off+d.Len && r.Off < s.hi {
							t.Errorf("destination %s [%d,%d) overlaps [%d,%d)", r.Path, r.Off, r.Off+d.Len, s.lo, s.hi)
						}
					}
					dsts = append(dsts, span{r.Path, r.Off, r.Off + d.Len})
					got[strings.TrimPrefix(d.Src.Path, dir+"/")+">"+strings.TrimPrefix(r.Path, dir+"/")] += d.Len
				}
			}
			want := map[string]int64{
				"a>copies/a1": 1<<20 + 777, // whole copies, tail included
				"a>copies/a2": 1<<20 + 777,
				// The run points into the largest file holding it, mixed,
				// at its first occurrence there.
				"mixed>mixed":  256 << 10,
				"mixed>other":  256 << 10,
				"mixed>zeros2": 256 << 10,
			}
			if fstype == "xfs" {
				// btrfs keeps small files inline in metadata, where they
				// cannot be shared; XFS does not.
				want["small>small-copy"] = 6
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("planned %s: %d bytes; want %d", k, got[k], v)
				}
			}
			if len(got) != len(want) {
				t.Errorf("planned %v; want exactly %v", got, want)
			}
			// On btrfs, the one extent of each of mixed (its second copy of
			// the run), other and zeros2 (the run) is covered in part: the
			// rest of each is to be rewritten. XFS frees block by block.
			if wantRewrites := map[string]int{"btrfs": 3, "xfs": 0}[fstype]; rewrites != wantRewrites {
				t.Errorf("planned %d rewrites; want %d", rewrites, wantRewrites)
			}

			// A file rewritten since it was hashed is left out, by name.
			a2 := filepath.Join(dir, "copies/a2")
			if err := os.WriteFile(a2, []byte("new content\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			errb.Reset()
			if err := run(context.Background(), []string{"-db", db}, nil, &out, &errb); err != nil {
				t.Fatalf("findsame: %v\n%s", err, errb.String())
			}
			if want := "findsame: " + a2 + ": changed since it was hashed (run hashfile again)\n"; !strings.HasPrefix(errb.String(), want) {
				t.Errorf("stderr %q; want it to start %q", errb.String(), want)
			}
			if strings.Contains(out.String(), a2) {
				t.Errorf("plan names %s, which changed since hashed:\n%s", a2, out.String())
			}
			if !strings.Contains(out.String(), filepath.Join(dir, "copies/a1")) {
				t.Errorf("plan lost copies/a1:\n%s", out.String())
			}
		})
	}
}
