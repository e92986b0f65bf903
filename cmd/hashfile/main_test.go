package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/testfs"

	"golang.org/x/sys/unix"
)

// hashfile calls run with stdin and returns what it wrote and its error.
func hashfile(t testing.TB, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// counts is what a summary line reports, less the timing.
type counts struct {
	seen, hashed, reused, unchanged, renamed, links, skipped, failed, pruned, subvols int
	remapped, copied, skimmed, part, listed, roots, rootsSkimmed, rootsPart           int
	read                                                                              int64
}

func (c counts) String() string {
	var subvols string
	if c.remapped > 0 {
		subvols = fmt.Sprintf(", %d unchanged with extents recorded again", c.remapped)
	}
	if c.listed > 0 {
		subvols += fmt.Sprintf(", %d known unchanged by the tree search", c.listed)
	} else if c.listed < 0 {
		subvols += ", N known unchanged by the tree search" // any number (see checkSummary)
	}
	noun := func(n int) string {
		if n == 1 {
			return "btrfs subvolume"
		}
		return "btrfs subvolumes"
	}
	if c.roots > 0 {
		subvols += fmt.Sprintf(", %d root%s unchanged since the last walk", c.roots, map[bool]string{true: "s"}[c.roots > 1])
	}
	if c.rootsSkimmed > 0 {
		subvols += fmt.Sprintf(", %d root%s looked at only where files changed", c.rootsSkimmed, map[bool]string{true: "s"}[c.rootsSkimmed > 1])
	}
	if c.rootsPart > 0 {
		subvols += fmt.Sprintf(", %d root%s walked only where directories changed", c.rootsPart, map[bool]string{true: "s"}[c.rootsPart > 1])
	}
	if c.subvols > 0 {
		subvols += fmt.Sprintf(", %d %s unchanged since the last walk", c.subvols, noun(c.subvols))
	}
	if c.skimmed > 0 && c.subvols > 0 {
		subvols += fmt.Sprintf(", %d looked at only where files changed", c.skimmed)
	} else if c.skimmed > 0 {
		subvols += fmt.Sprintf(", %d %s looked at only where files changed", c.skimmed, noun(c.skimmed))
	}
	if c.part > 0 && (c.subvols > 0 || c.skimmed > 0) {
		subvols += fmt.Sprintf(", %d walked only where directories changed", c.part)
	} else if c.part > 0 {
		subvols += fmt.Sprintf(", %d %s walked only where directories changed", c.part, noun(c.part))
	}
	var copied string
	if c.copied > 0 {
		copied = fmt.Sprintf(", %d as recorded in the subvolume snapshotted", c.copied)
	}
	return fmt.Sprintf("hashfile: %d files seen, %d hashed (%d from extents already hashed%s), %d unchanged (%d renamed), %d hard links, %d skipped, %d failed, %d pruned%s; read %s",
		c.seen, c.hashed, c.reused, copied, c.unchanged, c.renamed, c.links, c.skipped, c.failed, c.pruned, subvols, cli.Bytes(c.read))
}

var anyListed = regexp.MustCompile(`, \d+ known unchanged by the tree search`)

var timing = regexp.MustCompile(` in \S+ \([^)]*\)$`)

// summaryOf returns the summary line of stderr without its timing (" in
// 12ms (1.0 GiB/s)"), or "" when there is none.
func summaryOf(stderr string) string {
	for _, line := range slices.Backward(strings.Split(stderr, "\n")) {
		if strings.HasPrefix(line, "hashfile: ") && strings.Contains(line, " files seen, ") {
			return timing.ReplaceAllString(line, "")
		}
	}
	return ""
}

// errorLines returns the lines of stderr but the summary, sorted: what
// hashfile reported, each item once.
func errorLines(stderr string) []string {
	var out []string
	for line := range strings.Lines(stderr) {
		if !strings.Contains(line, " files seen, ") {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	slices.Sort(out)
	return out
}

func checkSummary(t testing.TB, stderr string, want counts) {
	t.Helper()
	got := summaryOf(stderr)
	if want.listed < 0 {
		// How many files share the tree leaves written since with those
		// that changed, and are known unchanged by the search, varies
		// from run to run.
		got = anyListed.ReplaceAllString(got, ", N known unchanged by the tree search")
	}
	if got != want.String() {
		t.Errorf("summary = %q; want %q\nstderr:\n%s", got, want.String(), stderr)
	}
}

// wantSums computes the packed block sums of data independently of
// blockhash: the first 8 bytes of each block's SHA-256, little-endian, or 0
// for an all-zero block; the last block may be short.
func wantSums(data []byte, bs int) []byte {
	var out []byte
	for off := 0; off < len(data); off += bs {
		b := data[off:min(off+bs, len(data))]
		var v uint64
		if !bytes.Equal(b, make([]byte, len(b))) {
			d := sha256.Sum256(b)
			v = binary.LittleEndian.Uint64(d[:8])
		}
		out = binary.LittleEndian.AppendUint64(out, v)
	}
	// The index leaves out the zero blocks at the end of a file.
	for len(out) > 0 && binary.LittleEndian.Uint64(out[len(out)-8:]) == 0 {
		out = out[:len(out)-8]
	}
	return out
}

func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// openIndex opens the index at db, closed when the test ends.
func openIndex(t testing.TB, db string) *index.Index {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// indexed returns the files an index holds, by path ("" for no path), after
// a fresh open.
func indexed(t testing.TB, db string) map[string]index.File {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	m := make(map[string]index.File)
	err = ix.Files(context.Background(), func(f index.File) error {
		m[f.Path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkTree checks that the index at db holds exactly one row for each
// inode of a regular non-empty file under root, under one of its names,
// with its current identity and the block sums of its current content.
func checkTree(t testing.TB, db, root string) {
	t.Helper()
	checkTreeExcept(t, db, root, nil)
}

// checkTreeExcept is checkTree with the files for which skip is true
// (those a walk excludes) left out of the tree.
func checkTreeExcept(t testing.TB, db, root string, skip func(path string) bool) {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	bs, err := ix.BlockSize()
	if err != nil {
		t.Fatal(err)
	}
	type inode struct {
		vol fsys.Volume
		ino uint64
	}
	rows := make(map[inode]index.File)
	err = ix.Files(context.Background(), func(f index.File) error {
		if f.Path == root || strings.HasPrefix(f.Path, root+"/") {
			rows[inode{f.Vol, f.Ino}] = f
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[inode][]string)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || (skip != nil && skip(path)) {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Size() == 0 {
			return err
		}
		id := identity(t, path)
		k := inode{volumeOf(t, path), id.Ino}
		names[k] = append(names[k], path)
		if len(names[k]) > 1 {
			return nil
		}
		f, ok := rows[k]
		if !ok {
			t.Errorf("%s (inode %d) is not in the index", path, id.Ino)
			return nil
		}
		if got := (index.File{ID: f.ID, Path: f.Path, Identity: id.Identity(k.vol), NoCOW: f.NoCOW, UID: int64(id.UID), Changed: f.Changed, SumsChanged: f.SumsChanged, CloneOf: f.CloneOf, CloneSeq: f.CloneSeq}); f != got {
			t.Errorf("index row of %s = %+v; want identity %+v", path, f, got)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sums, err := ix.Sums(context.Background(), f.ID)
		if err != nil {
			return err
		}
		if want := wantSums(data, bs); !bytes.Equal(sums, want) {
			t.Errorf("sums of %s: %d bytes, %x...; want %d bytes, %x...", path, len(sums), sums[:min(16, len(sums))], len(want), want[:min(16, len(want))])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, f := range rows {
		if !slices.Contains(names[k], f.Path) {
			t.Errorf("index row %+v: path is not a name of inode %d (names %q)", f, k.ino, names[k])
		}
	}
	if len(rows) != len(names) {
		t.Errorf("index holds %d files under %s; want %d", len(rows), root, len(names))
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "idx", "index.db")
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string // the error's text
	}{
		{"no PATH", []string{"-db", db}, "", "no PATH given"},
		{"-b not a power of two", []string{"-db", db, "-b", "3000", dir}, "", "-b 3000: want a power of two from 4K to 16M"},
		{"-b too small", []string{"-db", db, "-b", "2K", dir}, "", "-b 2K: want a power of two from 4K to 16M"},
		{"-b too big", []string{"-db", db, "-b", "32M", dir}, "", "-b 32M: want a power of two from 4K to 16M"},
		{"-b not a size", []string{"-db", db, "-b", "big", dir}, "", `invalid value "big" for flag -b: bad size "big": want a number of bytes such as 4096, 128K or 16MiB`},
		{"-j 0", []string{"-db", db, "-j", "0", dir}, "", "-j 0: want at least 1"},
		{"-j -1", []string{"-db", db, "-j", "-1", dir}, "", "-j -1: want at least 1"},
		{"unknown flag", []string{"-db", db, "-frobnicate", dir}, "", "flag provided but not defined: -frobnicate"},
		{"- with empty stdin", []string{"-db", db, "-"}, "", "no paths on standard input"},
		{"- with only NULs", []string{"-db", db, "-0", "-"}, "\x00\x00", "no paths on standard input"},
		{"bad exclude", []string{"-db", db, "--exclude", "*.tmp", "--exclude", "[", dir}, "", `--exclude: bad exclude pattern "[": syntax error in pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := hashfile(t, tt.stdin, tt.args...)
			if got := cli.Status(err); got != cli.ExitUsage {
				t.Errorf("run(%q) exit status = %d (%v); want %d", tt.args, got, err, cli.ExitUsage)
			}
			if err != nil && err.Error() != tt.want {
				t.Errorf("run(%q) = %q; want %q", tt.args, err.Error(), tt.want)
			}
			if stdout != "" {
				t.Errorf("run(%q) wrote %q to stdout; want nothing", tt.args, stdout)
			}
			// A usage error is found before the index is created.
			if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after run(%q): stat index = %v; want not exist", tt.args, err)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	stdout, stderr, err := hashfile(t, "", "-help")
	if got := cli.Status(err); got != cli.ExitOK {
		t.Errorf("run(-help) exit status = %d (%v); want 0", got, err)
	}
	if !strings.HasPrefix(stdout, "Usage: hashfile [flags] PATH...\n") || !strings.Contains(stdout, "\n  -db file\n") {
		t.Errorf("run(-help) stdout = %q; want the usage text and flags", stdout)
	}
	if stderr != "" {
		t.Errorf("run(-help) stderr = %q; want nothing", stderr)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		stdout, stderr, err := hashfile(t, "", arg)
		if err != nil {
			t.Fatalf("run(%s) = %v; want nil", arg, err)
		}
		want := fmt.Sprintf("hashfile %s, %s, index format %d, SHA-256: %s\n", cli.Version(), runtime.Version(), index.Version(), blockhash.Path())
		if stdout != want {
			t.Errorf("run(%s) stdout = %q; want %q", arg, stdout, want)
		}
		if stderr != "" {
			t.Errorf("run(%s) stderr = %q; want nothing", arg, stderr)
		}
	}
}

// TestStdinPaths feeds paths on stdin, NUL-separated (names may hold
// newlines) and newline-separated.
func TestStdinPaths(t *testing.T) {
	dir := dataDir(t)
	names := []string{"plain", "with space", "new\nline", "dir/inner"}
	for i, n := range names {
		writeFile(t, filepath.Join(dir, n), randomBytes(uint64(i), 5000+i))
	}
	writeFile(t, filepath.Join(dir, "not listed"), randomBytes(99, 100))

	tests := []struct {
		name  string
		nul   bool
		stdin string
		want  []string
	}{
		{"NUL", true, dir + "/plain\x00" + dir + "/with space\x00" + dir + "/new\nline\x00" + dir + "/dir\x00",
			[]string{"dir/inner", "new\nline", "plain", "with space"}},
		{"NUL without a final one", true, dir + "/new\nline\x00" + dir + "/plain",
			[]string{"new\nline", "plain"}},
		{"lines", false, dir + "/plain\n\n" + dir + "/with space\n",
			[]string{"plain", "with space"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "index.db")
			args := []string{"-db", db, "-"}
			if tt.nul {
				args = []string{"-db", db, "-0", "-"}
			}
			stdout, stderr, err := hashfile(t, tt.stdin, args...)
			if err != nil {
				t.Fatalf("run(%q) = %v; want nil\nstderr:\n%s", args, err, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q; want nothing", stdout)
			}
			var got []string
			for p := range indexed(t, db) {
				got = append(got, strings.TrimPrefix(p, dir+"/"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("indexed paths = %q; want %q", got, tt.want)
			}
			checkSummary(t, stderr, counts{seen: len(tt.want), hashed: len(tt.want), read: treeBytes(t, dir, tt.want)})
		})
	}
}

func treeBytes(t testing.TB, dir string, names []string) int64 {
	t.Helper()
	var n int64
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestQuiet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), randomBytes(1, 10000))
	stdout, stderr, err := hashfile(t, "", "-q", "-db", filepath.Join(dir, "idx", "index.db"), filepath.Join(dir, "f"))
	if err != nil || stdout != "" || stderr != "" {
		t.Errorf("run(-q) = %v, stdout %q, stderr %q; want nil and no output", err, stdout, stderr)
	}
}

func TestBlockSizeMismatch(t *testing.T) {
	dir := dataDir(t)
	tree := filepath.Join(dir, "tree")
	data := randomBytes(1, 3*8192+100)
	writeFile(t, filepath.Join(tree, "f"), data)
	db := filepath.Join(dir, "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, "-b", "8K", tree); err != nil {
		t.Fatalf("first run = %v\n%s", err, stderr)
	}
	checkTree(t, db, tree)

	for _, tt := range []struct {
		args []string
		bs   int
	}{
		{[]string{"-db", db, tree}, 4096},
		{[]string{"-db", db, "-b", "16K", tree}, 16384},
	} {
		args, bs := tt.args, tt.bs
		_, stderr, err := hashfile(t, "", args...)
		want := fmt.Sprintf("block size differs from the index's: index %s was built with 8192-byte blocks, not %d (use another -db, or -b 8192)", db, bs)
		if err == nil || err.Error() != want {
			t.Errorf("run(%q) = %v; want %q", args, err, want)
		}
		if !errors.Is(err, index.ErrBlockSize) {
			t.Errorf("run(%q) = %v; want errors.Is index.ErrBlockSize", args, err)
		}
		if got := cli.Status(err); got != cli.ExitError {
			t.Errorf("run(%q) exit status = %d; want %d", args, got, cli.ExitError)
		}
		if stderr != "" {
			t.Errorf("run(%q) stderr = %q; want nothing (main prints the error)", args, stderr)
		}
	}
	// The index is as it was.
	checkTree(t, db, tree)
}

func TestNewerIndexRefused(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), randomBytes(1, 5000))
	db := filepath.Join(dir, "idx", "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, filepath.Join(dir, "f")); err != nil {
		t.Fatalf("first run = %v\n%s", err, stderr)
	}
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	_, stderr, err := hashfile(t, "", "-db", db, filepath.Join(dir, "f"))
	want := fmt.Sprintf("open index %s: index format version 99 is newer than this tool's %d: upgrade the tools", db, index.Version())
	if err == nil || err.Error() != want {
		t.Errorf("run on a version-99 index = %v; want %q", err, want)
	}
	if got := cli.Status(err); got != cli.ExitError {
		t.Errorf("exit status = %d; want %d", got, cli.ExitError)
	}
	if stderr != "" {
		t.Errorf("stderr = %q; want nothing", stderr)
	}
	// Refused, not touched: the version is still 99.
	raw, err = sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 99 {
		t.Errorf("user_version after the refused run = %d, %v; want 99", v, err)
	}
}

// testIncremental hashes a tree, then changes it step by step, checking the
// summary of each re-run and the index after it.
func testIncremental(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	db := filepath.Join(dir, "idx", "index.db")
	const (
		big   = 1 << 20
		mid   = 200 << 10
		small = 10000
		link  = 64 << 10
	)
	writeFile(t, filepath.Join(tree, "d1/big"), randomBytes(1, big))
	writeFile(t, filepath.Join(tree, "d1/mid"), randomBytes(2, mid))
	writeFile(t, filepath.Join(tree, "d2/small"), randomBytes(3, small))
	writeFile(t, filepath.Join(tree, "d2/link1"), randomBytes(4, link))
	if err := os.Link(filepath.Join(tree, "d2/link1"), filepath.Join(tree, "d2/link2")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, "d2/empty"), nil)

	step := func(name string, want counts) {
		t.Helper()
		_, stderr, err := hashfile(t, "", "-db", db, tree)
		if err != nil {
			t.Fatalf("%s: run = %v\nstderr:\n%s", name, err, stderr)
		}
		checkSummary(t, stderr, want)
		checkTree(t, db, tree)
	}

	step("first run", counts{seen: 5, hashed: 4, links: 1, skipped: 1, read: big + mid + small + link})
	if got := indexed(t, db); len(got) != 4 {
		t.Errorf("index holds %d files; want 4 (one per inode)", len(got))
	}

	// On btrfs, as root, a re-run walks only the directories that
	// changed since the last walk (the tree search says which; none:
	// the tree is only looked at where files changed), takes
	// the files elsewhere as the index has them (a row each, counted as
	// seen: a second name or an empty file there is not met), and the
	// files whose inodes did not change for unchanged, where they are
	// listed or where the index has them. The checks read every file and directory, and the first
	// read after a change of mtime or ctime writes the access time
	// (relatime), which does not count as a change where the directory's
	// ctime is the one recorded; a file's does.
	either := func(btrfs, other counts) counts {
		if onBtrfs(t, dir) && os.Geteuid() == 0 {
			return btrfs
		}
		return other
	}
	step("unchanged", either(
		counts{seen: 4, unchanged: 4, rootsSkimmed: 1},
		counts{seen: 5, unchanged: 4, links: 1, skipped: 1}))

	// New content of the same size, and a new mtime.
	mid2 := randomBytes(5, mid)
	writeFile(t, filepath.Join(tree, "d1/mid"), mid2)
	step("modified", either(
		counts{seen: 4, hashed: 1, unchanged: 3, rootsSkimmed: 1, listed: 3, read: mid},
		counts{seen: 5, hashed: 1, unchanged: 3, links: 1, skipped: 1, read: mid}))

	if err := os.Remove(filepath.Join(tree, "d2/small")); err != nil {
		t.Fatal(err)
	}
	step("deleted", either(
		counts{seen: 4, unchanged: 3, links: 1, skipped: 1, pruned: 1, rootsPart: 1, listed: 2},
		counts{seen: 4, unchanged: 3, links: 1, skipped: 1, pruned: 1}))
	if _, ok := indexed(t, db)[filepath.Join(tree, "d2/small")]; ok {
		t.Errorf("deleted d2/small is still in the index")
	}

	if err := os.Rename(filepath.Join(tree, "d1/big"), filepath.Join(tree, "d2/moved")); err != nil {
		t.Fatal(err)
	}
	step("renamed", either(
		counts{seen: 4, unchanged: 3, renamed: 1, links: 1, skipped: 1, rootsPart: 1, listed: 2},
		counts{seen: 4, unchanged: 3, renamed: 1, links: 1, skipped: 1}))
	got := indexed(t, db)
	if _, ok := got[filepath.Join(tree, "d1/big")]; ok {
		t.Errorf("old name d1/big is still in the index")
	}
	if _, ok := got[filepath.Join(tree, "d2/moved")]; !ok {
		t.Errorf("new name d2/moved is not in the index")
	}

	// The first-met name of the linked inode goes; the other stays.
	if err := os.Remove(filepath.Join(tree, "d2/link1")); err != nil {
		t.Fatal(err)
	}
	step("one link removed", either(
		counts{seen: 3, unchanged: 3, renamed: 1, skipped: 1, rootsPart: 1, listed: 1},
		counts{seen: 3, unchanged: 3, renamed: 1, skipped: 1}))

	step("unchanged again", either(
		counts{seen: 3, unchanged: 3, rootsSkimmed: 1, listed: 2},
		counts{seen: 3, unchanged: 3, skipped: 1}))
}

// dataDir returns a new directory on a filesystem that can deduplicate,
// which hashfile walks: the temporary directory where its filesystem can,
// else the top of a loop-mounted btrfs (which needs root).
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := fstype.CanDedupe(int(f.Fd())); ok {
		return dir
	}
	return testfs.Mount(t, "btrfs", "256M")
}

// onBtrfs reports whether path is on btrfs.
func onBtrfs(t *testing.T, path string) bool {
	t.Helper()
	return testfs.Magic(t, path) == fstype.Btrfs
}

// TestRootsAreFiles hashes files given one by one and checks that the
// filesystem they are on is recorded, as it is when a directory is walked.
func TestRootsAreFiles(t *testing.T) {
	dir := dataDir(t)
	writeFile(t, filepath.Join(dir, "a"), randomBytes(1, 9000))
	writeFile(t, filepath.Join(dir, "b"), randomBytes(2, 9000))
	db := filepath.Join(t.TempDir(), "index.db")
	_, stderr, err := hashfile(t, dir+"/a\x00"+dir+"/b\x00", "-db", db, "-0", "-")
	if err != nil {
		t.Fatalf("run = %v\n%s", err, stderr)
	}
	checkTree(t, db, dir)
	ix := openIndex(t, db)
	vols, err := ix.Volumes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v := volumeOf(t, filepath.Join(dir, "a"))
	if _, ok := vols[v]; !ok || len(vols) != 1 {
		t.Errorf("volumes = %v; want one, %v", vols, v)
	}
}

// TestMissingRoot refuses a root that does not exist, and prunes nothing
// the index held under it: a missing root is more often a path mistyped or
// a filesystem not mounted than data gone for good.
func TestMissingRoot(t *testing.T) {
	dir := dataDir(t)
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "f"), randomBytes(1, 9000))
	db := filepath.Join(dir, "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, tree); err != nil {
		t.Fatalf("first run = %v\n%s", err, stderr)
	}
	if err := os.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	_, _, err := hashfile(t, "", "-db", db, tree)
	if got := cli.Status(err); got != cli.ExitError {
		t.Errorf("exit status = %d (%v); want %d", got, err, cli.ExitError)
	}
	if want := fmt.Sprintf("root %s: no such file or directory", tree); err == nil || err.Error() != want {
		t.Errorf("error = %v; want %q", err, want)
	}
	if got := indexed(t, db); len(got) != 1 {
		t.Errorf("index holds %v; want f still", got)
	}
}

// TestSymlinkRoot refuses a root that is a symbolic link, naming where it
// points: the walk follows none, and a root skipped with nothing said
// looked like a run that found nothing to do. It is a failed item: the
// other roots are walked, and the run exits 3. Listed on standard input,
// a symlink is skipped, as the walk skips those it meets.
func TestSymlinkRoot(t *testing.T) {
	dir := dataDir(t)
	tree, link, other := filepath.Join(dir, "tree"), filepath.Join(dir, "link"), filepath.Join(dir, "other")
	writeFile(t, filepath.Join(tree, "f"), randomBytes(1, 9000))
	writeFile(t, filepath.Join(other, "g"), randomBytes(2, 9000))
	if err := os.Symlink(tree, link); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "index.db")
	_, stderr, err := hashfile(t, "", "-db", db, link, other)
	if got := cli.Status(err); got != cli.ExitPartial {
		t.Errorf("exit status = %d (%v); want %d", got, err, cli.ExitPartial)
	}
	want := fmt.Sprintf("hashfile: %s: a symbolic link (to %s), which hashfile does not follow: give the path it points to\n", link, tree)
	if !strings.HasPrefix(stderr, want) {
		t.Fatalf("stderr = %q; want it to start %q", stderr, want)
	}
	checkSummary(t, stderr[len(want):], counts{seen: 1, hashed: 1, failed: 1, read: 9000})
	if _, stderr, err := hashfile(t, link+"\n", "-db", db, "-"); err != nil {
		t.Errorf("hashfile - with the link listed = %v\n%s; want it skipped", err, stderr)
	}
}

// identity is what lstat says of path now.
func identity(t testing.TB, path string) fsys.Stat {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return fsys.FromStat(&st)
}

// volumeOf returns the volume of the file at path.
func volumeOf(t testing.TB, path string) fsys.Volume {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := fsys.Describe(f)
	if err != nil {
		t.Fatalf("describe %s: %v", path, err)
	}
	return in.Volume
}

// An index damaged on disk is named as such, with what to do.
func TestDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tree", "a"), randomBytes(1, 64<<10))
	db := filepath.Join(dir, "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, filepath.Join(dir, "tree")); err != nil {
		t.Fatalf("hashfile: %v\n%s", err, stderr)
	}
	testfs.DamageSQLite(t, db)
	writeFile(t, filepath.Join(dir, "tree", "b"), randomBytes(2, 64<<10))
	_, _, err := hashfile(t, "", "-db", db, filepath.Join(dir, "tree"))
	want := ": database disk image is malformed (11): the index " + db + " is damaged: move it aside (with its -wal and -shm files) and run hashfile again, which makes a new one, reading every file once"
	if cli.Status(err) != cli.ExitError || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("hashfile on a damaged index: status %d, error %v; want 1 and an error ending %q", cli.Status(err), err, want)
	}
}

// TestIndexInUse: while another run holds the index's writer lock (a
// night's run that lasts into the next), hashfile refuses at once, naming
// it, before it opens the index (which it would make, or migrate); once
// it is released, hashfile runs.
func TestIndexInUse(t *testing.T) {
	dir := dataDir(t)
	writeFile(t, filepath.Join(dir, "f"), randomBytes(1, 9000))
	db := filepath.Join(t.TempDir(), "index.db")
	holder, err := index.LockWriter(db)
	if err != nil {
		t.Fatalf("LockWriter = %v", err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err := hashfile(t, "", "-db", db, dir)
	want := fmt.Sprintf("index %s is in use by another run (%s, pid %d): run again once it ends", db, strings.TrimSpace(string(comm)), os.Getpid())
	if err == nil || err.Error() != want || !errors.Is(err, index.ErrInUse) {
		t.Errorf("hashfile while the index is locked = %v; want %q", err, want)
	}
	if got := cli.Status(err); got != cli.ExitError {
		t.Errorf("exit status = %d; want %d", got, cli.ExitError)
	}
	if stderr != "" {
		t.Errorf("stderr = %q; want nothing (main prints the error)", stderr)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s = %v; want it not made", db, err)
	}
	holder.Close()
	_, stderr, err = hashfile(t, "", "-db", db, dir)
	if err != nil {
		t.Fatalf("hashfile once released = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 1, hashed: 1, read: 9000})
}

// TestIndexInTree: an index kept inside the tree it indexes (hashfile /
// with the default index under /root) is left out, with the files beside
// it named after it and findsame's temporary files there, however the
// path leads to it; a file of another name there, or of the index's name
// elsewhere, is indexed. Without that, each run read the index and its
// log again, and failed on the log changing while read.
func TestIndexInTree(t *testing.T) {
	dir := dataDir(t)
	state := filepath.Join(dir, "state")
	db := filepath.Join(state, "index.db")
	writeFile(t, filepath.Join(dir, "f"), randomBytes(1, 9000))
	writeFile(t, filepath.Join(state, "notes"), randomBytes(2, 9000))
	writeFile(t, filepath.Join(state, ".findsame-123.tmp"), randomBytes(3, 9000))
	writeFile(t, filepath.Join(state, ".index.db-sums-x.tmp"), randomBytes(4, 9000))
	writeFile(t, filepath.Join(dir, "other", "index.db-sums"), randomBytes(5, 9000))
	if err := os.Symlink(state, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "f"), filepath.Join(dir, "other", "index.db-sums"), filepath.Join(state, "notes")}
	_, stderr, err := hashfile(t, "", "-db", db, dir)
	if err != nil {
		t.Fatalf("first run = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 3, hashed: 3, skipped: 1, read: 27000})
	if got := slices.Sorted(maps.Keys(indexed(t, db))); !slices.Equal(got, want) {
		t.Errorf("first run: indexed %q; want %q", got, want)
	}
	// Again, the index named through a symlink, and given as a PATH.
	_, stderr, err = hashfile(t, "", "-db", filepath.Join(dir, "link", "index.db"), dir, db)
	if err != nil {
		t.Fatalf("second run = %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, " 3 files seen, 0 hashed ") || !strings.Contains(stderr, " 0 failed, 0 pruned") || !strings.Contains(stderr, "; read 0 B in ") {
		t.Errorf("second run: stderr %q; want 3 files seen, none hashed, failed or pruned, nothing read", stderr)
	}
	if got := slices.Sorted(maps.Keys(indexed(t, db))); !slices.Equal(got, want) {
		t.Errorf("second run: indexed %q; want %q", got, want)
	}
}
