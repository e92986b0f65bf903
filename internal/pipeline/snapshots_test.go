//go:build linux

package pipeline

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"same/internal/plan"
	"same/internal/testfs"
)

// TestSnapshotsFreed deduplicates copies that read-only snapshots share:
// an extent is freed only when every reference to it, in the subvolume and
// in each snapshot, is moved. findsame plans them all and counts each such
// extent once; what statfs then reports freed matches its estimate.
func TestSnapshotsFreed(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(11, 11))
	a := random(rng, 4*MiB)
	// Zero blocks inside the data, as a library's padding: never grouped,
	// they must still be shared for a copy's extent to be freed.
	for _, off := range []int{MiB, MiB + 8192, 3 * MiB} {
		clear(a[off : off+4096])
	}
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "b"), a) // a copy with its own extent
	write(t, filepath.Join(live, "c"), random(rng, 2*MiB))
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap1"))
	write(t, filepath.Join(live, "d"), a) // a new copy, after the first snapshot
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap2"))
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)

	db := filepath.Join(t.TempDir(), "index.db")
	planOut, results, applyErr := pipeline(t, db, mnt)
	var estimate int64
	for _, d := range dedupeLines(t, planOut) {
		estimate += d.Freed
	}
	allDone(t, results)
	// Results say which destinations were in read-only snapshots.
	ro := 0
	for line := range strings.Lines(results) {
		var r plan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		for _, d := range r.Dst {
			inSnap := strings.Contains(d.Path, "/snap")
			if d.ReadOnly != inSnap {
				t.Errorf("result for %s: readonly %v; want %v", d.Path, d.ReadOnly, inSnap)
			}
			if d.ReadOnly {
				ro++
			}
		}
	}
	if ro != 3 { // snap1/b, snap2/b, snap2/d
		t.Errorf("%d destinations in read-only snapshots; want 3\n%s", ro, results)
	}
	freed := testfs.FreeBytes(t, mnt) - free
	// b's extent (referred to by live, snap1 and snap2) and d's (live and
	// snap2): 8 MiB.
	if estimate != 8*MiB {
		t.Errorf("findsame estimates %d bytes freed; want %d\n%s", estimate, 8*MiB, planOut)
	}
	if freed < 8*MiB || freed > 8*MiB+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d\n%s", freed, 8*MiB, applyErr)
	}
	if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
	checkReadOnly(t, filepath.Join(mnt, "snap1"), filepath.Join(mnt, "snap2"))
	// Nothing left to do: a second pass plans nothing.
	planNothingAgain(t, db, mnt)
}

// TestRollback goes through a rollback as snapper and Timeshift make
// one: the live subvolume moved aside, and a writable snapshot of an
// older read-only one put in its place. The next night finds the files
// moved where they are now, takes the sums of the new subvolume's files
// from the extents it shares with the snapshot, reads only the files
// written since, and frees the copy among them; every file is as it was.
func TestRollback(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(12, 12))
	a := random(rng, 4*MiB)
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "b"), a)
	write(t, filepath.Join(live, "c"), random(rng, 2*MiB))
	testfs.Run(t, "sync")
	snap := filepath.Join(mnt, "snap1")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	write(t, filepath.Join(live, "d"), a)
	db := filepath.Join(t.TempDir(), "index.db")
	_, results, _ := pipeline(t, db, mnt)
	allDone(t, results)

	if err := os.Rename(live, filepath.Join(mnt, "live.old")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "btrfs", "subvolume", "snapshot", snap, live)
	e := random(rng, 3*MiB)
	write(t, filepath.Join(live, "e"), e)
	write(t, filepath.Join(live, "f"), e)
	testfs.Run(t, "sync")
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)
	_, hashErr, code := tool(t, nil, "hashfile", "-db", db, mnt)
	if code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, hashErr)
	}
	// live.old's four files renamed, snap1's three unchanged; the new
	// live's a, b and c from the extents snap1 shares, e and f read.
	want := "hashfile: 12 files seen, 5 hashed (3 from extents already hashed), 7 unchanged (4 renamed), 0 hard links, 0 skipped, 0 failed, 0 pruned"
	if !strings.HasPrefix(hashErr, want) || !strings.Contains(hashErr, "; read 6.0 MiB in ") {
		t.Errorf("hashfile after the rollback: %s\nwant %s..., read 6.0 MiB", hashErr, want)
	}
	planOut, fsErr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 {
		t.Fatalf("findsame: exit %d\n%s", code, fsErr)
	}
	lines := dedupeLines(t, planOut)
	if len(lines) != 1 || len(lines[0].Dst) != 1 || lines[0].Src.Path != filepath.Join(live, "e") ||
		lines[0].Dst[0].Path != filepath.Join(live, "f") || lines[0].Freed != 3*MiB {
		t.Fatalf("plan after the rollback:\n%s\nwant one line sharing live/e into live/f, 3 MiB freed", planOut)
	}
	results, applyErr, code := tool(t, []byte(planOut), "applysame")
	if code != 0 {
		t.Fatalf("applysame: exit %d\n%s", code, applyErr)
	}
	allDone(t, results)
	if freed := testfs.FreeBytes(t, mnt) - free; freed < 3*MiB || freed > 3*MiB+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d\n%s", freed, 3*MiB, applyErr)
	}
	if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
	checkReadOnly(t, snap)
	planNothingAgain(t, db, mnt)
}

// TestNoReadOnly leaves read-only snapshots out as destinations: nothing
// in them is planned as one, their copies serve as sources instead, and
// what they keep alive is not counted as freed.
func TestNoReadOnly(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(12, 12))
	a := random(rng, 2*MiB)
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "b"), a)
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap"))
	write(t, filepath.Join(live, "c"), a) // only in live
	db := filepath.Join(t.TempDir(), "index.db")
	planOut, stderr := planWith(t, db, mnt, "-no-readonly")
	var estimate int64
	dsts := 0
	for _, d := range dedupeLines(t, planOut) {
		estimate += d.Freed
		if !strings.HasPrefix(d.Src.Path, filepath.Join(mnt, "snap")+"/") {
			t.Errorf("source %s; want a file of the read-only snapshot", d.Src.Path)
		}
		for _, r := range d.Dst {
			dsts++
			if strings.HasPrefix(r.Path, filepath.Join(mnt, "snap")+"/") {
				t.Errorf("destination %s is in the read-only snapshot", r.Path)
			}
		}
	}
	// live/c points to snap/a, and its own extent is freed. live/b's is
	// kept by snap/b: moving b would free nothing and cost a copy of its
	// metadata, and is left out.
	if dsts != 1 || estimate != 2*MiB {
		t.Errorf("plan: %d destinations, %d bytes freed; want 1 and %d\n%s", dsts, estimate, 2*MiB, planOut)
	}
	if want := "(1 unit left out that would cost btrfs's metadata more than it frees)"; !strings.Contains(stderr, want) {
		t.Errorf("findsame's summary lacks %q:\n%s", want, stderr)
	}
	if freed := applyFreed(t, mnt, planOut); freed < 2*MiB || freed > 2*MiB+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d", freed, 2*MiB)
	}
}

// TestSettled runs findsame on copies that already share storage when
// hashed (a reflinked copy, a snapshot): their files are not mapped again,
// and the plan holds the copies apart alone, as it would had every file
// been mapped.
func TestSettled(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(12, 12))
	a := random(rng, MiB)
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "b"), a) // a copy with its own extent
	write(t, filepath.Join(live, "c"), random(rng, MiB))
	testfs.Run(t, "cp", "--reflink=always", filepath.Join(live, "a"), filepath.Join(live, "r"))
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap"))
	// The group of a's blocks: live/a is the source (the first path);
	// live/r, snap/a and snap/r share its extent, settled; live/b and
	// snap/b are planned. c and snap/c share theirs: settled too.
	db := filepath.Join(t.TempDir(), "index.db")
	planOut, stderr := planWith(t, db, mnt)
	if !strings.Contains(stderr, "8 files (0 changed since hashed, 5 already shared when hashed, 0 immutable)") || strings.Contains(stderr, "temporary files") {
		t.Errorf("findsame summary %q; want 8 files, 5 of them already shared, and no temporary files", stderr)
	}
	// The same with the mappings in temporary files, a few lists of them
	// (every sum grouped, as the first run did).
	spilled, stderr, code := tool(t, nil, "findsame", "-db", db, "-mem", "32K", "-full")
	spilledTo := regexp.MustCompile(` [0-9]+ partition\(s\), [0-9.]+ (B|KiB|MiB) of temporary files at most in `)
	if code != 0 || spilled != planOut || !strings.Contains(stderr, "5 already shared when hashed") || !spilledTo.MatchString(stderr) {
		t.Errorf("findsame -mem 32K: exit %d, plan %q\n%s\nwant the plan of the default -mem, from several partitions in temporary files", code, spilled, stderr)
	}
	var dsts []string
	for line := range strings.Lines(planOut) {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatalf("plan line %s: %v", line, err)
		}
		d, ok := rec.(*plan.Dedupe)
		if !ok || d.Src.Path != filepath.Join(live, "a") || d.Len != MiB || d.Freed != MiB {
			t.Fatalf("plan line %s; want 1 MiB from live/a, freeing 1 MiB", line)
		}
		for _, r := range d.Dst {
			dsts = append(dsts, strings.TrimPrefix(r.Path, mnt+"/"))
		}
	}
	if strings.Join(dsts, " ") != "live/b snap/b" {
		t.Errorf("destinations %q; want live/b snap/b", dsts)
	}
	if freed := applyFreed(t, mnt, planOut); !freedAsExpected(freed, MiB) {
		t.Errorf("statfs reports %d bytes freed; want %d", freed, MiB)
	}
	// Sharing changed no file's identity, but b's and snap/b's extents:
	// hashfile records them again without reading them, and without
	// walking either subvolume, in which no directory changed; findsame
	// regroups them with a, left unsettled, finds the six files of their
	// groups settled and plans nothing. The other six, whose items lie
	// in the tree leaves written since, as recorded, are known unchanged
	// without a look.
	hf, fs := planNothingAgain(t, db, mnt)
	if !strings.Contains(hf, "8 unchanged (0 renamed)") || !strings.Contains(hf, "pruned, 2 unchanged with extents recorded again, 6 known unchanged by the tree search, 2 btrfs subvolumes looked at only where files changed;") || !strings.Contains(hf, "read 0 B") {
		t.Errorf("hashfile again:\n%s\nwant 8 unchanged, 2 of them with extents recorded again, no subvolume walked, nothing read", hf)
	}
	if !strings.Contains(fs, "8 files (0 changed since hashed, 6 already shared when hashed, 0 immutable)") || !strings.Contains(fs, "the sums of 3 files changed or unsettled since the last run regrouped") {
		t.Errorf("second findsame:\n%s\nwant a, b and snap/b regrouped, and the 6 files of their groups settled", fs)
	}
}

// TestSettledUnderRoot is TestSettled for a root that is a plain
// directory of a subvolume, not its top: hashfile records again the
// extents that applysame changed all the same.
func TestSettledUnderRoot(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	root := filepath.Join(mnt, "data")
	rng := rand.New(rand.NewPCG(13, 13))
	a := random(rng, MiB)
	write(t, filepath.Join(root, "a"), a)
	write(t, filepath.Join(root, "b"), a)
	db := filepath.Join(t.TempDir(), "index.db")
	planOut, results, _ := pipeline(t, db, root)
	if strings.Count(planOut, "\n") != 1 {
		t.Fatalf("plan %q; want one line", planOut)
	}
	allDone(t, results)
	hf, fs := planNothingAgain(t, db, root)
	if !strings.Contains(hf, "2 unchanged (0 renamed)") || !strings.Contains(hf, "1 unchanged with extents recorded again") {
		t.Errorf("hashfile again:\n%s\nwant 2 unchanged, b's extents recorded again", hf)
	}
	if !strings.Contains(fs, "2 files (0 changed since hashed, 2 already shared when hashed, 0 immutable)") {
		t.Errorf("second findsame:\n%s\nwant both files settled", fs)
	}
}

// TestNotSettledXFS: on XFS the index records extents as FIEMAP showed
// them when hashed, which hashfile does not keep current, so findsame
// settles nothing and maps every file with a copy again; a reflinked
// copy, already sharing, is still left out of the plan.
func TestNotSettledXFS(t *testing.T) {
	mnt := testfs.Mount(t, "xfs", "300M")
	rng := rand.New(rand.NewPCG(14, 14))
	a := random(rng, MiB)
	write(t, filepath.Join(mnt, "a"), a)
	write(t, filepath.Join(mnt, "b"), a)
	testfs.Run(t, "cp", "--reflink=always", filepath.Join(mnt, "a"), filepath.Join(mnt, "r"))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	planOut, stderr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 || !strings.Contains(stderr, "3 files (0 changed since hashed, 0 already shared when hashed, 0 immutable)") {
		t.Fatalf("findsame: exit %d\n%s\nwant 3 files, none settled", code, stderr)
	}
	var dsts []string
	for _, d := range dedupeLines(t, planOut) {
		for _, r := range d.Dst {
			dsts = append(dsts, filepath.Base(r.Path))
		}
	}
	if strings.Join(dsts, " ") != "b" {
		t.Errorf("destinations %q; want b alone\n%s", dsts, planOut)
	}
}

// TestReflinkedCopiesFreedXFS: on XFS a block is freed when every range
// referring to it moves. b has two reflinked copies (cp --reflink, what
// cp does by default there), e one, and e's first MiB is a's: findsame
// counts b's blocks once, for the three of them together, and e's first
// MiB once, for e and its copy; the lines moving one set of copies are one
// unit. What statfs then reports freed matches its estimate.
func TestReflinkedCopiesFreedXFS(t *testing.T) {
	mnt := testfs.Mount(t, "xfs", "300M")
	rng := rand.New(rand.NewPCG(15, 15))
	a := random(rng, 4*MiB)
	write(t, filepath.Join(mnt, "a"), a)
	write(t, filepath.Join(mnt, "b"), a) // a copy with blocks of its own
	e := append(slices.Clone(a[:MiB]), random(rng, MiB)...)
	write(t, filepath.Join(mnt, "e"), e)
	c := random(rng, 2*MiB)
	write(t, filepath.Join(mnt, "c"), c) // no copy of its own: nothing to free
	testfs.Run(t, "sync")
	for _, cp := range [][2]string{{"b", "b2"}, {"b", "b3"}, {"e", "e2"}, {"c", "c2"}} {
		testfs.Run(t, "cp", "--reflink=always", filepath.Join(mnt, cp[0]), filepath.Join(mnt, cp[1]))
	}
	testfs.Run(t, "sync")
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)

	db := filepath.Join(t.TempDir(), "index.db")
	planOut, results, applyErr := pipeline(t, db, mnt)
	estimate := planFreed(t, planOut)
	unitOf := make(map[string]int64) // by destination
	for _, d := range dedupeLines(t, planOut) {
		for _, r := range d.Dst {
			unitOf[filepath.Base(r.Path)] = d.Unit
		}
	}
	allDone(t, results)
	// Either a moves onto b's blocks (4 MiB of a's), or b and its two
	// copies onto a's (the 4 MiB they share); and e and e2 their first MiB.
	if want := int64(5 * MiB); estimate != want {
		t.Errorf("findsame estimates %d bytes freed; want %d\n%s", estimate, want, planOut)
	}
	if unitOf["e"] == 0 || unitOf["e2"] != unitOf["e"] {
		t.Errorf("e and e2 move in units %d and %d; want one\n%s", unitOf["e"], unitOf["e2"], planOut)
	}
	if u, ok := unitOf["b"]; ok && (unitOf["b2"] != u || unitOf["b3"] != u) {
		t.Errorf("b, b2 and b3 move in units %d, %d and %d; want one\n%s", u, unitOf["b2"], unitOf["b3"], planOut)
	}
	if _, ok := unitOf["c2"]; ok {
		t.Errorf("c2, a reflinked copy of c, is planned\n%s", planOut)
	}
	freed := testfs.FreeBytes(t, mnt) - free
	if freed < 5*MiB-metadataSlack || freed > 5*MiB+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d\n%s", freed, 5*MiB, applyErr)
	}
	if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
}

// TestRewriteInSnapshot frees an extent that, once the dedupe lines have
// run, only a read-only snapshot still refers to, in part: its rewrite
// cannot make the copy in the snapshot, so the plan names a file of the
// writable subvolume next to which it is made, and the extent is freed.
func TestRewriteInSnapshot(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(13, 13))
	a := random(rng, 256<<10)
	// x holds a's bytes but for [64 KiB, 128 KiB), and is larger: the
	// source of the runs that move a's other ranges, in live and in the
	// snapshot.
	x := append(slices.Clone(a), random(rng, 4096)...)
	copy(x[64<<10:128<<10], random(rng, 64<<10))
	write(t, filepath.Join(live, "x"), x)
	write(t, filepath.Join(live, "a"), a)
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap"))
	// live's a is overwritten in place there: that range of a's extent
	// is then the snapshot's alone.
	f, err := os.OpenFile(filepath.Join(live, "a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(random(rng, 64<<10), 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)

	db := filepath.Join(t.TempDir(), "index.db")
	planOut, results, applyErr := pipeline(t, db, mnt)
	var rewrites []*plan.Rewrite
	var estimate int64
	for line := range strings.Lines(planOut) {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatalf("plan line %s: %v", line, err)
		}
		switch r := rec.(type) {
		case *plan.Rewrite:
			rewrites = append(rewrites, r)
			estimate += r.Freed
		case *plan.Dedupe:
			estimate += r.Freed
		}
	}
	if len(rewrites) != 1 {
		t.Fatalf("%d rewrites planned; want 1\n%s", len(rewrites), planOut)
	}
	w := rewrites[0]
	if want := filepath.Join(mnt, "snap", "a"); w.File.Path != want || w.CopyNextTo == nil || w.CopyNextTo.Path != filepath.Join(live, "x") ||
		!slices.Equal(w.Copy, []plan.Span{{Off: 64 << 10, Len: 64 << 10}}) {
		t.Errorf("rewrite of %s, copy %v, next to %v; want %s, [{65536 65536}], next to %s (live's file modified longest ago)\n%s",
			w.File.Path, w.Copy, w.CopyNextTo, want, filepath.Join(live, "x"), planOut)
	}
	allDone(t, results)
	// a's extent (256 KiB) is freed, 64 KiB of it written again.
	const net = 192 << 10
	if estimate != net {
		t.Errorf("findsame estimates %d bytes freed; want %d\n%s", estimate, net, planOut)
	}
	freed := testfs.FreeBytes(t, mnt) - free
	if freed < net || freed > net+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d\n%s", freed, net, applyErr)
	}
	if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
	checkReadOnly(t, filepath.Join(mnt, "snap"))
	planNothingAgain(t, db, mnt)
}

// TestMetadataCostLeftOut checks, on a btrfs with a live subvolume and 30
// read-only snapshots of it (snapshots taken every hour), that findsame
// leaves out the unit that would share a small file's copy in all 31:
// each share copies the tree leaf of the file's extent items for its
// subvolume, 31 leaves for 8 KiB. The large file's copy is planned, and
// the space statfs reports freed is what findsame's summary says: the
// data freed less the leaves copied. A small file's copy in a subvolume
// no snapshot shares leaves with is planned. Applied anyway
// (a plan from the recorded extents, which does not weigh metadata), the
// small file's unit takes more space than it frees.
func TestMetadataCostLeftOut(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(13, 13))
	big, small := random(rng, 2*MiB), random(rng, 8192)
	// The small file and its copy in one tree leaf, the big file and its
	// copy in another.
	copyInALeaf(t, live, "small", small)
	write(t, filepath.Join(live, "big"), big)
	testfs.Run(t, "sync")
	write(t, filepath.Join(live, "big.copy"), big)
	testfs.Run(t, "sync")
	snapshotsOf(t, mnt, live, 30)
	// And a subvolume no snapshot was taken of, whose leaves are its own:
	// sharing its small file's copy costs no metadata, and is planned.
	plain := filepath.Join(mnt, "plain")
	testfs.Run(t, "btrfs", "subvolume", "create", plain)
	other := random(rng, 8192)
	write(t, filepath.Join(plain, "small"), other)
	write(t, filepath.Join(plain, "small.copy"), other)
	db := filepath.Join(t.TempDir(), "index.db")
	planOut, stderr := planWith(t, db, mnt)
	// Sharing the big file's copies copies a leaf (16 KiB, stored twice)
	// for each of the 31 subvolumes: the estimate says so.
	const metadata = 31 * 2 * 16 << 10
	for _, want := range []string{
		"about 1.0 MiB (2.0 MiB of data, less up to 992.0 KiB of btrfs metadata) to be freed",
		"(1 unit left out that would cost btrfs's metadata more than it frees)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("findsame's summary lacks %q:\n%s", want, stderr)
		}
	}
	var estimate int64
	var lines []string
	for _, d := range dedupeLines(t, planOut) {
		estimate += d.Freed
		lines = append(lines, fmt.Sprintf("%d bytes into %d", d.Len, len(d.Dst)))
	}
	// The big file's copies in live and the snapshots, and plain's.
	if want := []string{"2097152 bytes into 31", "8192 bytes into 1"}; !slices.Equal(lines, want) {
		t.Errorf("plan: %q; want %q\n%s", lines, want, planOut)
	}
	if estimate != 2*MiB+8192 {
		t.Errorf("plan frees %d bytes; want %d\n%s", estimate, 2*MiB+8192, planOut)
	}
	if freed, want := applyFreed(t, mnt, planOut), int64(2*MiB+8192-metadata); freed < want*9/10 || freed > want*11/10 {
		t.Errorf("statfs reports %d bytes freed; want %d, within 10%%", freed, want)
	}

	// The small file's unit, as a plan that does not weigh metadata has it.
	recorded, stderr, code := tool(t, nil, "findsame", "-db", db, "-recorded")
	if code != 0 {
		t.Fatalf("findsame -recorded: exit %d\n%s", code, stderr)
	}
	var smallPlan []string
	for _, l := range strings.SplitAfter(recorded, "\n") {
		if strings.Contains(l, `"len":8192,`) && strings.Contains(l, live+"/small") {
			smallPlan = append(smallPlan, l)
		}
	}
	if len(smallPlan) != 1 {
		t.Fatalf("-recorded plan: %d lines of 8 KiB; want 1\n%s", len(smallPlan), recorded)
	}
	if freed := applyFreed(t, mnt, smallPlan[0]); freed >= 0 {
		t.Errorf("sharing the small file's copies: statfs reports %d bytes freed; want less than 0 (metadata)", freed)
	}
}

// TestUnmapped runs findsame again on a btrfs whose snapshots make a
// small file's copies cost more metadata than they free: the unit is left
// out every night, and its files, unchanged and not named by the last
// plan, keep the extents recorded rather than being mapped again. The
// plan is the one a full run, which maps them, prints. The files the last
// plan named are mapped again, so that applying it without hashfile in
// between leaves nothing to plan; those of a snapshot taken since are
// not, where their rows were copied from files not mapped again. After a
// snapshot is deleted, every file is.
func TestUnmapped(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(14, 14))
	big, small := random(rng, 2*MiB), random(rng, 8192)
	copyInALeaf(t, live, "small", small)
	write(t, filepath.Join(live, "big"), big)
	write(t, filepath.Join(live, "big.copy"), big)
	testfs.Run(t, "sync")
	snapshotsOf(t, mnt, live, 10)
	db := filepath.Join(t.TempDir(), "index.db")
	first, stderr := planWith(t, db, mnt)
	const costly = "(1 unit left out that would cost btrfs's metadata more than it frees)"
	if !strings.Contains(stderr, costly) || strings.Contains(stderr, "not mapped again") {
		t.Errorf("first findsame said\n%s\nwant %q, every file mapped", stderr, costly)
	}
	// The plan not applied: the big files, which it named, are mapped
	// again; the small file's copies in the 11 subvolumes and its source
	// are not (the small file in the snapshots is settled: it shares its
	// extent with the source).
	const unmapped = ", 12 not mapped again (as the last plan left them), "
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	full, fullErr := fullPlan(t, db)
	got, stderr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 {
		t.Fatalf("findsame: exit %d\n%s", code, stderr)
	}
	if got != full || got != first {
		t.Errorf("findsame printed\n%s\n%s\nfindsame -full\n%s\n%s\nthe first\n%s", got, stderr, full, fullErr, first)
	}
	for _, want := range []string{costly, unmapped} {
		if !strings.Contains(stderr, want) {
			t.Errorf("findsame said\n%s\nwant %q", stderr, want)
		}
	}
	results, applyErr, code := tool(t, []byte(got), "applysame")
	if code != 0 {
		t.Fatalf("applysame: exit %d\n%s", code, applyErr)
	}
	allDone(t, results)
	// No hashfile in between: the big files, which the plan named, are
	// mapped again and found shared; the others are as they were.
	full, fullErr = fullPlan(t, db)
	got, stderr, code = tool(t, nil, "findsame", "-db", db)
	if code != 0 || got != "" || full != "" {
		t.Errorf("findsame after applysame: exit %d, plan\n%s\n%s\nfindsame -full\n%s\n%s\nwant nothing planned", code, got, stderr, full, fullErr)
	}
	for _, want := range []string{costly, unmapped} {
		if !strings.Contains(stderr, want) {
			t.Errorf("findsame after applysame said\n%s\nwant %q", stderr, want)
		}
	}
	// A snapshot taken since: hashfile copies its rows from live's, and
	// its copy of the small file, which joins the unit left out, is not
	// mapped again either.
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap10"))
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	full, fullErr = fullPlan(t, db)
	got, stderr, code = tool(t, nil, "findsame", "-db", db)
	if code != 0 || got != "" || full != "" {
		t.Errorf("findsame after a snapshot: exit %d, plan\n%s\n%s\nfindsame -full\n%s\n%s\nwant nothing planned", code, got, stderr, full, fullErr)
	}
	for _, want := range []string{costly, ", 13 not mapped again (as the last plan left them), "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("findsame after a snapshot said\n%s\nwant %q", stderr, want)
		}
	}
	// A snapshot deleted: what it shared may be shared no more, and every
	// file is mapped again.
	testfs.Run(t, "btrfs", "subvolume", "delete", filepath.Join(mnt, "snap09"))
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	got, stderr, code = tool(t, nil, "findsame", "-db", db)
	if code != 0 || got != "" || !strings.Contains(stderr, costly) || strings.Contains(stderr, "not mapped again") {
		t.Errorf("findsame after a snapshot was deleted: exit %d, plan\n%s\n%s\nwant nothing planned, the unit left out, every file mapped again", code, got, stderr)
	}
}

// TestMetadataOwnLeaves shares, in a live subvolume snapshotted ten
// times, a small file's copy written after the snapshots: its tree leaf
// is live's alone, rewritten in place, so the unit costs no metadata, is
// planned, and frees its data. The copy of one written before them, whose
// leaf the snapshots share, is left out.
func TestMetadataOwnLeaves(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(15, 15))
	old, fresh := random(rng, 8192), random(rng, 8192)
	copyInALeaf(t, live, "old", old)
	testfs.Run(t, "sync")
	snapshotsOf(t, mnt, live, 10)
	write(t, filepath.Join(live, "new"), fresh)
	write(t, filepath.Join(live, "new.copy"), fresh)
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	planOut, stderr := planWith(t, db, mnt)
	for _, want := range []string{
		"about 8.0 KiB to be freed (1 unit left out that would cost btrfs's metadata more than it frees)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("findsame's summary lacks %q:\n%s", want, stderr)
		}
	}
	var lines []string
	for _, d := range dedupeLines(t, planOut) {
		for _, r := range d.Dst {
			lines = append(lines, fmt.Sprintf("%d bytes into %s", d.Len, strings.TrimPrefix(r.Path, live+"/")))
		}
	}
	if want := []string{"8192 bytes into new.copy"}; !slices.Equal(lines, want) {
		t.Errorf("plan: %q; want %q\n%s", lines, want, planOut)
	}
	if freed := applyFreed(t, mnt, planOut); !freedAsExpected(freed, 8192) {
		t.Errorf("statfs reports %d bytes freed; want 8192 (and at most %d more)", freed, metadataSlack)
	}
}

// liveSubvolume mounts a new btrfs and makes a subvolume "live" in it.
// TestReceivedFreed deduplicates a backup host that receives its
// snapshots (btrfs send | btrfs receive) and holds nothing else: no
// writable subvolume holds a file, so no rewrite can be made. A file
// whose blocks repeat after a zero block (a library's layout) and its
// copy, each one extent in two received snapshots: the copy's run after
// the zero block comes from the first place of the block that repeats,
// and its extent is freed only if the run before is carried across the
// zero block. Another file and its copy end in zero blocks, which the
// copy's run must be carried across to the end. What statfs reports
// freed is the copies' extents, as findsame estimates; every file is as
// it was, every snapshot read-only.
func TestReceivedFreed(t *testing.T) {
	src, live := liveSubvolume(t)
	dst := testfs.Mount(t, "btrfs", "512M")
	rng := rand.New(rand.NewPCG(13, 13))
	const n = 4 * MiB
	a := random(rng, n)
	// Block 100 is zero; 101 repeats block 50, as 200 does.
	clear(a[100*4096 : 101*4096])
	copy(a[101*4096:102*4096], a[50*4096:51*4096])
	copy(a[200*4096:201*4096], a[50*4096:51*4096])
	write(t, filepath.Join(live, "a"), a)
	write(t, filepath.Join(live, "b"), a)
	const m = MiB + 8192
	c := append(random(rng, MiB), make([]byte, 8192)...)
	write(t, filepath.Join(live, "c"), c)
	write(t, filepath.Join(live, "d"), c)
	testfs.Run(t, "sync")
	snaps := filepath.Join(src, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	received := filepath.Join(dst, "received")
	if err := os.Mkdir(received, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, parent := range []string{"", "s1"} {
		name := fmt.Sprintf("s%d", i+1)
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(snaps, name))
		if parent != "" {
			parent = filepath.Join(snaps, parent)
		}
		testfs.Receive(t, filepath.Join(snaps, name), parent, received)
		write(t, filepath.Join(live, fmt.Sprintf("new%d", i)), random(rng, 8192))
		testfs.Run(t, "sync")
	}
	before := testfs.SHA256Tree(t, dst)
	free := testfs.FreeBytes(t, dst)

	db := filepath.Join(t.TempDir(), "index.db")
	planOut, results, applyErr := pipeline(t, db, dst)
	allDone(t, results)
	if strings.Contains(planOut, `"type":"rewrite"`) {
		t.Errorf("plan has a rewrite, which no writable subvolume can hold\n%s", planOut)
	}
	var estimate int64
	for _, d := range dedupeLines(t, planOut) {
		estimate += d.Freed
	}
	if estimate != n+m {
		t.Errorf("findsame estimates %d bytes freed; want %d\n%s", estimate, n+m, planOut)
	}
	if freed := testfs.FreeBytes(t, dst) - free; freed < n+m || freed > n+m+metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want %d\n%s", freed, n+m, applyErr)
	}
	if after := testfs.SHA256Tree(t, dst); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
	checkReadOnly(t, filepath.Join(received, "s1"), filepath.Join(received, "s2"))
	planNothingAgain(t, db, dst)
}

// checkReadOnly checks that each of the btrfs subvolumes at paths is
// still read-only.
func checkReadOnly(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if out := strings.TrimSpace(testfs.Run(t, "btrfs", "property", "get", p, "ro")); out != "ro=true" {
			t.Errorf("%s: %s; want ro=true", p, out)
		}
	}
}

func liveSubvolume(t *testing.T) (mnt, live string) {
	t.Helper()
	mnt = testfs.Mount(t, "btrfs", "512M")
	live = filepath.Join(mnt, "live")
	testfs.Run(t, "btrfs", "subvolume", "create", live)
	return mnt, live
}

// copyInALeaf writes name and name.copy holding data in dir, then 100
// empty files: the pair's extent items lie in one tree leaf, and those
// of the files written after them in another.
func copyInALeaf(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	write(t, filepath.Join(dir, name), data)
	write(t, filepath.Join(dir, name+".copy"), data)
	for i := range 100 {
		write(t, filepath.Join(dir, fmt.Sprintf("empty%03d", i)), nil)
	}
}

// snapshotsOf takes n read-only snapshots of live, mnt/snap00 on, as an
// hourly timeline does.
func snapshotsOf(t *testing.T, mnt, live string, n int) {
	t.Helper()
	for h := range n {
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, fmt.Sprintf("snap%02d", h)))
	}
}
