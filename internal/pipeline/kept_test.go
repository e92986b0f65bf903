//go:build linux

package pipeline

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/testfs"
)

// TestKeptTable runs nights on a btrfs with a read-only snapshot: each
// night's findsame, which regroups only what changed since the night
// before with the table of sums it keeps, prints the plan that a full
// run (-full) prints on the same index, and that plan is applied.
func TestKeptTable(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	live := filepath.Join(mnt, "live")
	testfs.Run(t, "btrfs", "subvolume", "create", live)
	rng := rand.New(rand.NewPCG(21, 21))
	for i := range 40 {
		write(t, filepath.Join(live, fmt.Sprintf("u%02d", i)), random(rng, 256<<10))
	}
	a := random(rng, 512<<10)
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "a.copy"), a)
	db := filepath.Join(t.TempDir(), "index.db")
	nights := []struct {
		name   string
		change func()
		lines  int  // plan lines; -1: some
		apply  bool // apply the plan
	}{
		{"first", func() {
			testfs.Run(t, "sync")
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap1"))
		}, 1, true},
		{"new copies, not deduplicated", func() {
			write(t, filepath.Join(live, "b"), a)
			img := append(random(rng, 64<<10), a...)
			write(t, filepath.Join(live, "img"), append(img, random(rng, 64<<10)...))
			u := testfs.Run(t, "cat", filepath.Join(live, "u07"))
			write(t, filepath.Join(live, "u07.copy"), []byte(u))
			testfs.Run(t, "sync")
		}, 3, false},
		// The plan not applied is planned again, although its files did
		// not change.
		{"a file deleted, another renamed", func() {
			os.Remove(filepath.Join(live, "u05"))
			os.Rename(filepath.Join(live, "u03"), filepath.Join(live, "z03"))
		}, 3, true},
		{"a source deleted, a copy overwritten, another made", func() {
			os.Remove(filepath.Join(live, "a"))
			write(t, filepath.Join(live, "u07.copy"), random(rng, 256<<10))
			write(t, filepath.Join(live, "c"), a)
			testfs.Run(t, "sync")
		}, -1, true},
		{"nothing changed", func() {}, 0, true},
		// Taken after a night that changed nothing, each of its files is
		// its origin's row copied (hashfile), and joins its groups.
		{"a snapshot", func() {
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap2"))
		}, 0, true},
	}
	for i, n := range nights {
		n.change()
		if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
			t.Fatalf("%s: hashfile: exit %d\n%s", n.name, code, stderr)
		}
		full, fullErr := fullPlan(t, db)
		got, stderr, code := tool(t, nil, "findsame", "-db", db)
		if code != 0 {
			t.Fatalf("%s: findsame: exit %d\n%s", n.name, code, stderr)
		}
		if got != full {
			t.Errorf("%s: findsame printed\n%s\n%s\nfindsame -full\n%s\n%s", n.name, got, stderr, full, fullErr)
		}
		if n.name == "a snapshot" && !strings.Contains(stderr, "the sums of 0 files changed or unsettled since the last run regrouped (44 more copied from a file in a snapshot's origin)") {
			t.Errorf("%s: findsame said\n%s\nwant the snapshot's 44 files to join their origins' groups, and nothing regrouped", n.name, stderr)
		}
		regrouped := strings.Contains(stderr, "since the last run regrouped")
		if regrouped != (i > 0) {
			t.Errorf("%s: findsame said\n%s\nwant it to regroup what changed: %v", n.name, stderr, i > 0)
		}
		if lines := strings.Count(got, "\n"); (n.lines < 0 && lines == 0) || (n.lines >= 0 && lines != n.lines) {
			t.Errorf("%s: %d plan lines; want %d (-1: some)\n%s", n.name, lines, n.lines, got)
		}
		if !n.apply {
			continue
		}
		results, applyErr, code := tool(t, []byte(got), "applysame")
		if code != 0 {
			t.Fatalf("%s: applysame: exit %d\n%s", n.name, code, applyErr)
		}
		allDone(t, results)
	}
}

// fullPlan runs findsame -full on db, leaving its table of sums as it
// found it, and returns the plan and what findsame said.
func fullPlan(t *testing.T, db string) (planOut, findsameErr string) {
	t.Helper()
	table := db + "-sums"
	saved := map[string][]byte{}
	for _, p := range []string{table, table + ".delta"} {
		if b, err := os.ReadFile(p); err == nil {
			saved[p] = b
		}
	}
	planOut, findsameErr, code := tool(t, nil, "findsame", "-db", db, "-full")
	if code != 0 {
		t.Fatalf("findsame -full: exit %d\n%s", code, findsameErr)
	}
	for _, p := range []string{table, table + ".delta"} {
		os.Remove(p)
		if b, ok := saved[p]; ok {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return planOut, findsameErr
}

// TestKeptLeft runs nights on a btrfs whose snapshots make a small file's
// copies cost more metadata than they free: the unit is left out, and
// the nights after keep it as it was, without regrouping or weighing its
// files, while nothing near it changes. When something does (a new copy
// of the file, a unit in a tree leaf it touches, a snapshot deleted, one
// of its files changed), findsame weighs it again. Every night it prints
// the plan that findsame -full prints, and counts the units left out as
// that does.
func TestKeptLeft(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(22, 22))
	small, d := random(rng, 8192), random(rng, 8192)
	copyInALeaf(t, live, "small", small)
	// Enough blocks elsewhere that a night regroups only what changed.
	write(t, filepath.Join(live, "unique"), random(rng, 4<<20))
	testfs.Run(t, "sync")
	snapshotsOf(t, mnt, live, 10)
	db := filepath.Join(t.TempDir(), "index.db")
	const keptPhrase = "files of units left out before kept as they were"
	nights := []struct {
		name     string
		change   func()
		kept     bool // the unit left out kept as it was
		attempts int
		lines    int // -1: any
	}{
		{"first", func() {}, false, 1, 0},
		{"a snapshot", func() {
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap10"))
		}, true, 1, 0},
		{"nothing changed", func() {}, true, 1, 0},
		// A new copy joins the small file's groups, with the small
		// file its source: the unit left out is as it was, and the
		// copy's is planned.
		{"another copy", func() {
			write(t, filepath.Join(live, "small.third"), small)
			testfs.Run(t, "sync")
		}, true, 1, 1},
		// The plan applied named the small file, the source of the unit
		// left out: its extents may have changed, and it is weighed
		// again.
		{"nothing changed again", func() {}, false, 1, 0},
		{"nothing changed a third time", func() {}, true, 1, 0},
		// A new copy that comes first by path is the source of the
		// small file's groups: the unit left out maps to it, and is
		// weighed again.
		{"a new source", func() {
			write(t, filepath.Join(live, "a-small"), small)
			testfs.Run(t, "sync")
		}, false, 2, 0},
		{"nothing changed, a fourth time", func() {}, true, 1, 0},
		// A file of the small file's tree leaf written, and a snapshot
		// taken that shares it: a file changed in a leaf of the unit
		// left out, which is weighed again from the start.
		{"a file written in its leaf", func() {
			write(t, filepath.Join(live, "empty005"), d)
			testfs.Run(t, "sync")
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap11"))
		}, false, 1, 0},
		{"nothing changed, a fifth time", func() {}, true, 1, 0},
		// A copy of that file that comes first by path, in a leaf of
		// its own (after empty files that take the inode numbers
		// between): the file in the leaf, unchanged, is a destination,
		// and its unit (left out too) touches the leaf and shares its
		// cost. Found when the units are made, the run starts again.
		{"a unit in its leaf", func() {
			for i := range 2 * 32 {
				write(t, filepath.Join(live, fmt.Sprintf("fill%02d", i)), nil)
			}
			write(t, filepath.Join(live, "0copy"), d)
			testfs.Run(t, "sync")
		}, false, 2, 0},
		{"a snapshot deleted", func() {
			testfs.Run(t, "btrfs", "subvolume", "delete", filepath.Join(mnt, "snap03"))
		}, false, 1, 0},
		{"nothing changed, once more", func() {}, true, 1, 0},
		{"a copy overwritten", func() {
			write(t, filepath.Join(live, "small.copy"), random(rng, 8192))
			testfs.Run(t, "sync")
		}, false, 1, 0},
	}
	costlyOf := func(stderr string) string {
		_, after, ok := strings.Cut(stderr, "to be freed")
		if !ok {
			return ""
		}
		c, _, _ := strings.Cut(after, ";")
		return c
	}
	for _, n := range nights {
		n.change()
		if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
			t.Fatalf("%s: hashfile: exit %d\n%s", n.name, code, stderr)
		}
		full, fullErr := fullPlan(t, db)
		got, stderr, code := tool(t, nil, "findsame", "-db", db)
		if code != 0 {
			t.Fatalf("%s: findsame: exit %d\n%s", n.name, code, stderr)
		}
		t.Logf("%s: %s", n.name, stderr)
		if got != full {
			t.Errorf("%s: findsame printed\n%s\n%s\nfindsame -full\n%s\n%s", n.name, got, stderr, full, fullErr)
		}
		if c, fc := costlyOf(stderr), costlyOf(fullErr); c != fc || !strings.Contains(c, "left out that would cost btrfs's metadata") {
			t.Errorf("%s: findsame said%s; findsame -full said%s; want the same units left out", n.name, c, fc)
		}
		if kept := strings.Contains(stderr, keptPhrase); kept != n.kept {
			t.Errorf("%s: findsame said\n%s\nwant %q: %v", n.name, stderr, keptPhrase, n.kept)
		}
		attempts := fmt.Sprintf("%d attempts (units left out before found near what changed are weighed again)", n.attempts)
		if strings.Contains(stderr, "attempts (") != (n.attempts > 1) || (n.attempts > 1 && !strings.Contains(stderr, attempts)) {
			t.Errorf("%s: findsame said\n%s\nwant %d attempt(s)", n.name, stderr, n.attempts)
		}
		if lines := strings.Count(got, "\n"); n.lines >= 0 && lines != n.lines {
			t.Errorf("%s: %d plan lines; want %d\n%s", n.name, lines, n.lines, got)
		}
		if got != "" {
			results, applyErr, code := tool(t, []byte(got), "applysame")
			if code != 0 {
				t.Fatalf("%s: applysame: exit %d\n%s", n.name, code, applyErr)
			}
			allDone(t, results)
		}
	}
}
