//go:build linux

package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/sumtab"
	"same/internal/testfs"
)

// TestKeptTable runs nights on a btrfs with a read-only snapshot: each
// night's findsame, which regroups only what changed since the night
// before with the table of sums it keeps, prints the plan that a full
// run (-full) prints on the same index, and that plan is applied.
func TestKeptTable(t *testing.T) {
	mnt, live := liveSubvolume(t)
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
		{"copies left as planned", func() {
			write(t, filepath.Join(live, "d"), a)
			write(t, filepath.Join(live, "e"), a[:256<<10])
			testfs.Run(t, "sync")
		}, -1, false},
		// The copies and their source, left unsettled, are regrouped; a
		// file of the snapshot that is a copy of one of them joins its
		// groups as they are made again.
		{"a snapshot of files left unsettled", func() {
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap3"))
		}, -1, true},
	}
	for i, n := range nights {
		n.change()
		got, stderr := nightPlan(t, db, mnt, n.name)
		if n.name == "a snapshot" && !strings.Contains(stderr, "the sums of 0 files changed or unsettled since the last run regrouped (44 more copied from a file in a snapshot's origin)") {
			t.Errorf("%s: findsame said\n%s\nwant the snapshot's 44 files to join their origins' groups, and nothing regrouped", n.name, stderr)
		}
		if n.name == "a snapshot of files left unsettled" && !strings.Contains(stderr, "the sums of 3 files changed or unsettled since the last run regrouped (46 more copied from a file in a snapshot's origin)") {
			t.Errorf("%s: findsame said\n%s\nwant the copies and their source regrouped, and the snapshot's 46 files to join their origins' groups, its copies of those three too", n.name, stderr)
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

// nightPlan runs a night's hashfile on root and findsame with db, checks
// that findsame printed the plan findsame -full prints, and returns the
// plan and what findsame said; name says which night in failures.
func nightPlan(t *testing.T, db, root, name string) (planOut, findsameErr string) {
	t.Helper()
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, root); code != 0 {
		t.Fatalf("%s: hashfile: exit %d\n%s", name, code, stderr)
	}
	full, fullErr := fullPlan(t, db)
	got, stderr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 {
		t.Fatalf("%s: findsame: exit %d\n%s", name, code, stderr)
	}
	if got != full {
		t.Errorf("%s: findsame printed\n%s\n%s\nfindsame -full\n%s\n%s", name, got, stderr, full, fullErr)
	}
	return got, stderr
}

// fullPlan runs findsame -full on db (with args), leaving its table of
// sums as it found it, and returns the plan and what findsame said.
func fullPlan(t *testing.T, db string, args ...string) (planOut, findsameErr string) {
	t.Helper()
	table := db + "-sums"
	saved := map[string][]byte{}
	for _, p := range []string{table, table + ".delta"} {
		if b, err := os.ReadFile(p); err == nil {
			saved[p] = b
		}
	}
	planOut, findsameErr, code := tool(t, nil, "findsame", append([]string{"-db", db, "-full"}, args...)...)
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

// TestUnsettledRegrouped leaves a plan unapplied on a btrfs with a
// snapshot: a disk image holds a copy of part of a large file, and both
// are left unsettled, more than a quarter of the blocks. The next nights
// regroup them from the table of sums rather than grouping every sum
// again, and print the plan a full run prints; once it is applied,
// nothing is left to plan.
func TestUnsettledRegrouped(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(22, 22))
	big := random(rng, 4<<20)
	img := append(append(random(rng, 64<<10), big[:256<<10]...), random(rng, 64<<10)...)
	write(t, filepath.Join(live, "big"), big)
	write(t, filepath.Join(live, "img"), img)
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap1"))
	db := filepath.Join(t.TempDir(), "index.db")
	for night, apply := range []bool{false, false, true, true} {
		got, stderr := nightPlan(t, db, mnt, fmt.Sprintf("night %d", night))
		lines := strings.Count(got, "\n")
		switch night {
		case 1, 2:
			// big and img in live, img in snap1 (snap1's big shares
			// live's storage, and is settled).
			if !strings.Contains(stderr, "the sums of 3 files changed or unsettled since the last run regrouped") {
				t.Errorf("night %d: findsame said\n%s\nwant the three files left unsettled regrouped", night, stderr)
			}
			fallthrough
		case 0:
			if lines == 0 {
				t.Errorf("night %d: nothing planned", night)
			}
		case 3:
			if lines != 0 {
				t.Errorf("night %d: planned again\n%s", night, got)
			}
		}
		if !apply {
			continue
		}
		results, applyErr, code := tool(t, []byte(got), "applysame")
		if code != 0 {
			t.Fatalf("night %d: applysame: exit %d\n%s", night, code, applyErr)
		}
		allDone(t, results)
	}
}

// TestCloneOfRejoiningAlias checks that a new snapshot's copy of a file
// whose sums are stored with another's (a reflinked copy: an alias in
// the table), regrouped as left unsettled, takes the entries of the
// file that holds them, not of the alias: an alias of an alias joined
// no group at the next run, and that run planned nothing into it.
func TestCloneOfRejoiningAlias(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(23, 23))
	a := random(rng, 256<<10)
	write(t, filepath.Join(live, "a"), a)
	testfs.Run(t, "cp", "--reflink=always", filepath.Join(live, "a"), filepath.Join(live, "b"))
	// c holds a's data in an extent of its own and is larger: the
	// source of every group, and a and b (one extent) its destinations.
	write(t, filepath.Join(live, "c"), append(append([]byte{}, a...), random(rng, 64<<10)...))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	for night := range 3 {
		if night == 1 {
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap1"))
		}
		got, _ := nightPlan(t, db, mnt, fmt.Sprintf("night %d", night))
		if night > 0 && !strings.Contains(got, `/snap1/b"`) {
			t.Errorf("night %d: findsame printed\n%s\nwant snap1/b among the destinations", night, got)
		}
		// No alias the tables written name is of an alias.
		for _, path := range []string{db + "-sums", db + "-sums.delta"} {
			tab, err := sumtab.Open(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			tab.Close()
			aliased := map[uint32]bool{}
			for _, a := range tab.Aliases {
				aliased[a.File] = true
			}
			for _, a := range tab.Aliases {
				if aliased[a.Of] {
					t.Errorf("night %d: %s names file %d an alias of %d, itself an alias", night, filepath.Base(path), a.File, a.Of)
				}
			}
		}
	}
}

// TestSharedIntoRegrouped applies a plan that shares a whole copy, more
// than a quarter of the blocks, into its source. The next night hashfile
// records again the copy's extents alone, its data the same, and findsame
// regroups it from the table of sums rather than grouping every sum
// again (as it did while any row written counted as changed), and plans
// nothing, as a full run does. Then the copy is defragmented, which
// stores it apart again without changing its data: the night after
// regroups it the same way, and plans it again.
func TestSharedIntoRegrouped(t *testing.T) {
	_, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(23, 23))
	a := random(rng, 2<<20)
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "a.copy"), a)
	write(t, filepath.Join(live, "u"), random(rng, 256<<10))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	for night := range 3 {
		if night == 2 {
			// With -c the extent is written again whatever its layout
			// (random data, stored uncompressed all the same).
			testfs.Run(t, "btrfs", "filesystem", "defragment", "-czstd", filepath.Join(live, "a.copy"))
			testfs.Run(t, "sync")
		}
		got, stderr := nightPlan(t, db, live, fmt.Sprintf("night %d", night))
		if night == 0 {
			if lines := strings.Count(got, "\n"); lines != 1 {
				t.Fatalf("night 0: %d plan lines; want 1\n%s", lines, got)
			}
			results, applyErr, code := tool(t, []byte(got), "applysame")
			if code != 0 {
				t.Fatalf("night 0: applysame: exit %d\n%s", code, applyErr)
			}
			allDone(t, results)
			testfs.Run(t, "sync")
			continue
		}
		// Night 1 regroups the copy and its source, which the plan
		// named; night 2 the copy, which is planned again (what of it
		// is stored apart again and not compressed).
		if lines := strings.Count(got, "\n"); (night == 1) != (lines == 0) {
			t.Errorf("night %d: %d plan lines; want %s\n%s", night, lines, map[bool]string{true: "none", false: "some"}[night == 1], got)
		}
		if want := fmt.Sprintf("the sums of %d files changed or unsettled since the last run regrouped", 3-night); !strings.Contains(stderr, want) {
			t.Errorf("night %d: findsame said\n%s\nwant %q: the files whose extents alone changed regrouped", night, stderr, want)
		}
	}
}
