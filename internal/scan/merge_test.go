package scan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// mustRename renames each pair in order.
func mustRename(t *testing.T, pairs ...[2]string) {
	t.Helper()
	for _, p := range pairs {
		if err := os.MkdirAll(filepath.Dir(p[1]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPaths fails unless the index holds exactly want (paths under dir).
func checkPaths(t *testing.T, ix interface{}, got map[string]uint64, dir string, want ...string) {
	t.Helper()
	var have []string
	for p := range got {
		rel, _ := filepath.Rel(dir, p)
		have = append(have, rel)
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("index holds %q; want %q", have, want)
	}
}

// TestRenameAcrossDirectories moves one file into a directory the walk
// meets later and one into a directory it met earlier: both are renamed
// in the index, neither is read nor pruned.
func TestRenameAcrossDirectories(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "b/x"), 1, 5000)
	writeRandom(t, filepath.Join(dir, "b/y"), 2, 5000)
	writeRandom(t, filepath.Join(dir, "b/z"), 3, 5000)
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	before := paths(t, ix)
	mustRename(t, [2]string{filepath.Join(dir, "b/x"), filepath.Join(dir, "a/x")},
		[2]string{filepath.Join(dir, "b/z"), filepath.Join(dir, "c/d/z")})
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 3, Unchanged: 3, Renamed: 2}); err != nil || !same(st, want) {
		t.Errorf("Run after renames = %+v, %v; want %+v", st, err, want)
	}
	after := paths(t, ix)
	checkPaths(t, ix, after, dir, "a/x", "b/y", "c/d/z")
	if after[filepath.Join(dir, "a/x")] != before[filepath.Join(dir, "b/x")] || after[filepath.Join(dir, "c/d/z")] != before[filepath.Join(dir, "b/z")] {
		t.Errorf("renamed files have inodes %v; want those of %v", after, before)
	}
	// And again: nothing to do.
	st, err = runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 3, Unchanged: 3}); err != nil || !same(st, want) {
		t.Errorf("Run again = %+v, %v; want %+v", st, err, want)
	}
}

// TestHardLinkAcrossDirectories links one file from a directory the walk
// meets before its first name and from one it meets after: it is read
// once, its other names count as hard links run after run, and when the
// recorded name goes, another takes its place, unread.
func TestHardLinkAcrossDirectories(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "m/f")
	writeRandom(t, f, 1, 9000)
	for _, l := range []string{"a/early", "z/late"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(l)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(f, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	ix := openIndex(t)
	ctx := context.Background()
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 3, Hashed: 1, Links: 2, BytesRead: 9000}); err != nil || !same(st, want) {
		t.Errorf("first Run = %+v, %v; want %+v", st, err, want)
	}
	for range 2 {
		st, err = runScan(t, ctx, ix, dir)
		if want := (Stats{Seen: 3, Unchanged: 1, Links: 2}); err != nil || !same(st, want) {
			t.Errorf("Run again = %+v, %v; want %+v", st, err, want)
		}
	}
	if got := paths(t, ix); len(got) != 1 {
		t.Fatalf("index holds %v; want one file", got)
	}
	var recorded string
	for p := range paths(t, ix) {
		recorded = p
	}
	if err := os.Remove(recorded); err != nil {
		t.Fatal(err)
	}
	st, err = runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 2, Unchanged: 1, Renamed: 1, Links: 1}); err != nil || !same(st, want) {
		t.Errorf("Run after removing %s = %+v, %v; want %+v", recorded, st, err, want)
	}
	got := paths(t, ix)
	if len(got) != 1 {
		t.Fatalf("index holds %v; want one file", got)
	}
	for p := range got {
		if p == recorded {
			t.Errorf("index holds the removed name %s", p)
		}
	}
	// Changed through one name: read once.
	for p := range got {
		writeRandom(t, p, 2, 9000)
	}
	st, err = runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 2, Hashed: 1, Links: 1, BytesRead: 9000}); err != nil || !same(st, want) {
		t.Errorf("Run after a change = %+v, %v; want %+v", st, err, want)
	}
}

// TestPruneWholeDirectory removes a directory of more files than the
// index reads at a time, between others: exactly its files are pruned.
func TestPruneWholeDirectory(t *testing.T) {
	dir := t.TempDir()
	const n = 2500
	for i := range n {
		writeRandom(t, filepath.Join(dir, "b", fmt.Sprintf("f%04d", i)), uint64(i), 100)
	}
	for _, p := range []string{"a/1", "b.txt", "b0/1", "c"} {
		writeRandom(t, filepath.Join(dir, p), 7, 100)
	}
	ix := openIndex(t)
	ctx := context.Background()
	if st, err := runScan(t, ctx, ix, dir); err != nil || st.Hashed != n+4 {
		t.Fatalf("first Run = %+v, %v; want %d hashed", st, err, n+4)
	}
	if st, err := runScan(t, ctx, ix, dir); err != nil || !same(st, Stats{Seen: n + 4, Unchanged: n + 4}) {
		t.Fatalf("Run again = %+v, %v; want all %d unchanged", st, err, n+4)
	}
	if err := os.RemoveAll(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 4, Unchanged: 4, Pruned: n}); err != nil || !same(st, want) {
		t.Errorf("Run after removing b = %+v, %v; want %+v", st, err, want)
	}
	checkPaths(t, ix, paths(t, ix), dir, "a/1", "b.txt", "b0/1", "c")
}

// TestPruneSubtreeOfRoots gives two roots of a tree indexed whole: files
// gone under them are pruned, files gone elsewhere are not.
func TestPruneSubtreeOfRoots(t *testing.T) {
	dir := t.TempDir()
	all := []string{"a/1", "a/2", "b/1", "b/2", "c/d/1", "c/d/2", "c/e"}
	for i, p := range all {
		writeRandom(t, filepath.Join(dir, p), uint64(i), 5000)
	}
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/1", "b/1", "c/d/1", "c/e"} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := runScan(t, ctx, ix, filepath.Join(dir, "c/d"), filepath.Join(dir, "a"))
	if want := (Stats{Seen: 2, Unchanged: 2, Pruned: 2}); err != nil || !same(st, want) {
		t.Errorf("Run(c/d, a) = %+v, %v; want %+v", st, err, want)
	}
	checkPaths(t, ix, paths(t, ix), dir, "a/2", "b/1", "b/2", "c/d/2", "c/e")
}

// TestReplacedAtPath replaces a file by another under the same name: the
// new one is read, the old one pruned.
func TestReplacedAtPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	writeRandom(t, p, 1, 5000)
	writeRandom(t, filepath.Join(dir, "g"), 2, 5000)
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	before := paths(t, ix)[p]
	if err := os.Rename(p, p+".old"); err != nil {
		t.Fatal(err)
	}
	writeRandom(t, p, 3, 5000)
	if err := os.Remove(p + ".old"); err != nil {
		t.Fatal(err)
	}
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 2, Hashed: 1, Unchanged: 1, Pruned: 1, BytesRead: 5000}); err != nil || !same(st, want) {
		t.Errorf("Run = %+v, %v; want %+v", st, err, want)
	}
	if got := paths(t, ix); len(got) != 2 || got[p] == before {
		t.Errorf("index holds %v; want f as its new inode, and g", got)
	}
}

// TestStaleMarks: marks left by a run that did not complete (of an older
// scan generation) prune nothing, and the next run clears them.
func TestStaleMarks(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "1"), 1, 5000)
	writeRandom(t, filepath.Join(dir, "2"), 2, 5000)
	ix := openIndex(t)
	ctx := context.Background()
	if _, err := runScan(t, ctx, ix, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.DB().Exec("UPDATE files SET gone = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'scan_gen')"); err != nil {
		t.Fatal(err)
	}
	st, err := runScan(t, ctx, ix, dir)
	if want := (Stats{Seen: 2, Unchanged: 2}); err != nil || !same(st, want) {
		t.Errorf("Run = %+v, %v; want %+v", st, err, want)
	}
	var marked int
	if err := ix.DB().QueryRow("SELECT count(*) FROM files WHERE gone != 0").Scan(&marked); err != nil || marked != 0 {
		t.Errorf("%d files still marked gone, %v; want 0", marked, err)
	}
}
