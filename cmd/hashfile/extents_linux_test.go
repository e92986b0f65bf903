//go:build linux

package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"same/internal/cli"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/testfs"
	"same/internal/walk"
)

// TestSnapshotsReadOnce builds a small snapshot host on btrfs -- a
// subvolume holding every kind of extent, two read-only snapshots with
// changes between them, a reflinked copy -- and checks that hashfile reads
// each stored extent once: the snapshots' files and the copy take their
// sums from the extents already hashed, and every file's sums are still
// those of its bytes.
func TestSnapshotsReadOnce(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	live, p := liveSubvol(t, mnt)

	// Two extents, written apart.
	writeFile(t, p("two"), randomBytes(1, 3<<20))
	appendSync(t, p("two"), randomBytes(2, 1<<20))
	writeFile(t, p("tail"), randomBytes(3, 100<<10+123)) // a partial last block
	sparse(t, p("sparse"), randomBytes(4, 1<<20), 2<<20) // data, hole, data
	writeFile(t, p("inline"), randomBytes(5, 1000))      // stored in metadata
	prealloc(t, p("prealloc"), randomBytes(6, 256<<10), 1<<20)
	testfs.Run(t, "sync")
	testfs.Run(t, "cp", "--reflink=always", p("two"), p("copy-of-two"))
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap1"))
	// A day of changes: an overwrite in place, an append, a new file.
	overwrite(t, p("two"), 1<<20, randomBytes(7, 8192))
	appendSync(t, p("tail"), randomBytes(8, 5000))
	writeFile(t, p("new"), randomBytes(9, 1<<20))
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap2"))

	db := filepath.Join(t.TempDir(), "index.db")
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	checkTree(t, db, mnt)

	var liveBytes int64
	for _, name := range []string{"two", "tail", "sparse", "inline", "prealloc", "copy-of-two", "new"} {
		fi, err := os.Stat(p(name))
		if err != nil {
			t.Fatal(err)
		}
		liveBytes += fi.Size()
	}
	m := regexp.MustCompile(`(\d+) files seen, (\d+) hashed \((\d+) from extents already hashed\)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in\n%s", stderr)
	}
	// 7 files in live, 6 in snap1, 7 in snap2: of the 20, the 10 whose
	// every extent was hashed before -- in any order the readers take
	// them -- are not read.
	if m[1] != "20" || m[3] != "10" {
		t.Errorf("%s files seen, %s from extents already hashed; want 20 and 10\n%s", m[1], m[3], stderr)
	}

	// Read: at most each file of live once (of two, overwritten in place,
	// and its copy, which alone holds the bytes two's overwrite replaced,
	// the second met reads only what the first lacks), and in the
	// snapshots the inline files and the first version of tail, whose last
	// block is partial (its extent's next bytes, written later, are not in
	// its sums). Without reuse it would be three times live.
	read := readBytes(t, stderr)
	if want := liveBytes + 2*1000 + 100<<10 + 123; read > want+want/100 {
		t.Errorf("read %d bytes; want at most %d (live once, the inline files and the first tail again)\n%s", read, want, stderr)
	}

	// A re-run after a remount reads nothing and reuses nothing: every
	// file is known, and the two snapshots, unchanged since the first run
	// walked them, are not walked again, nor is live, skimmed: reading
	// its files and listing its directories wrote their access times,
	// and no directory's ctime changed (the files looked at again, their
	// items sharing a tree leaf with what changed, are as recorded).
	testfs.Remount(t, mnt)
	_, stderr, err = hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile after remount = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 20, unchanged: 20, subvols: 2, skimmed: 1})

	// A day of changes in live and one more snapshot: live and the new
	// snapshot are walked, the two old snapshots are not, and nothing is
	// read but what changed.
	overwrite(t, p("new"), 0, randomBytes(10, 4096))
	if err := os.Rename(p("sparse"), p("sparse-renamed")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("prealloc")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap3"))
	_, stderr, err = hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile after a day = %v\n%s", err, stderr)
	}
	// live: 6 files (new hashed again, sparse renamed, prealloc pruned);
	// snap1 and snap2 as they were. live's other 4 are taken as listed.
	// Read: the 4 KiB of live's new that
	// were overwritten (the rest of it is in extents hashed before).
	// snap3: the same 6, recorded from live's rows as the walker met it,
	// then walked: 4 as those rows have them; sparse-renamed too if live's
	// rename was committed by then, else found renamed from sparse; new
	// too if live's was, else read again from the extents hashed before.
	// prealloc's row is recorded too unless live's was marked gone by then
	// (a directory changed since live's last walk: the snapshot may not
	// hold the file), and then pruned.
	var wants []string
	for _, renamedFirst := range []bool{false, true} {
		for _, newFirst := range []bool{false, true} {
			for _, goneFirst := range []bool{false, true} {
				want := counts{seen: 25, hashed: 6, reused: 5, copied: 4, unchanged: 19, renamed: 2, pruned: 2, subvols: 2, listed: 4, read: 4096}
				if renamedFirst {
					want.hashed, want.reused, want.copied, want.unchanged, want.renamed = 7, 6, 5, 18, 1
				}
				if newFirst {
					want.copied++
				}
				if goneFirst {
					want.pruned--
				}
				wants = append(wants, want.String())
			}
		}
	}
	if got := summaryOf(stderr); !slices.Contains(wants, got) {
		t.Errorf("summary = %q; want one of\n%s", got, strings.Join(wants, "\n"))
	}
	checkTree(t, db, mnt)
}

// TestSnapshotFromOrigin checks that a snapshot made after the last walk
// of the subvolume it was taken from (its origin) is recorded from that
// walk's rows, for the files with the identity their row has: copied
// whole where the extent items are unchanged since, with the extent
// items read again from the tree where they may have changed (the file
// opened in neither case);
// and that every row is then what reading the file gives: identity, sums
// and extents. Before two snapshots are taken, one file is overwritten in
// place (hashed again in the snapshots) and one deduplicated (its extents
// change, its identity does not). After, one file of the origin is
// overwritten and one deduplicated. The first snapshot is walked alone,
// and copies what the origin's rows say of these two, as it holds them;
// the second is walked with the origin, which records both again first.
// A writable snapshot copies nothing.
func TestSnapshotFromOrigin(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	live, p := liveSubvol(t, mnt)
	// Files enough for many tree leaves; the changes after the snapshots
	// are to inodes made first, those before to inodes made last, so that
	// their items lie in other leaves.
	const n = 600
	writeFile(t, p("d03/f003-copy"), randomBytes(103, 8192+3))
	for i := range n {
		writeFile(t, p(fmt.Sprintf("d%02d/f%03d", i%20, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("d02/f002-copy"), randomBytes(102, 8192+2))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}

	overwrite(t, p("d19/f599"), 0, randomBytes(1, 4096))
	dedupe(t, p("d02/f002"), p("d02/f002-copy"), 8192+2)
	testfs.Run(t, "sync")
	alone, with := filepath.Join(mnt, "snap1"), filepath.Join(mnt, "snap2")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, alone)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, with)
	// A writable snapshot takes nothing from live's rows: a file made in
	// it could have the inode number of another made in live.
	testfs.Run(t, "btrfs", "subvolume", "snapshot", live, filepath.Join(mnt, "writable"))
	overwrite(t, p("d01/f001"), 0, randomBytes(2, 4096))
	dedupe(t, p("d03/f003"), p("d03/f003-copy"), 8192+3)
	testfs.Run(t, "sync")

	copied := func(stderr string) int {
		t.Helper()
		m := regexp.MustCompile(` (\d+) as recorded in the subvolume snapshotted\),.* 0 failed,`).FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("no files recorded as in the subvolume snapshotted, or some failed:\n%s", stderr)
		}
		c, _ := strconv.Atoi(m[1])
		return c
	}
	_, stderr, err := hashfile(t, "", "-db", db, alone)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", alone, err, stderr)
	}
	// Of its 602 files, all but the one overwritten before the snapshot.
	if c := copied(stderr); c != n+1 {
		t.Errorf("%d files as recorded in live; want %d\n%s", c, n+1, stderr)
	}
	checkExtents(t, db, alone)
	_, stderr, err = hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", mnt, err, stderr)
	}
	// All but the one overwritten in live since, in the second read-only
	// snapshot, and the one overwritten before the snapshots unless live's
	// row of it, hashed again in this run, is committed by the time the
	// snapshot's file is met (then that row is the snapshot's file, and
	// serves); none in the writable one.
	if c := copied(stderr); c != n && c != n+1 {
		t.Errorf("%d files as recorded in live; want %d or %d\n%s", c, n, n+1, stderr)
	}
	checkTree(t, db, mnt)
	checkExtents(t, db, alone)
	checkExtents(t, db, with)
	// Each copied row, and each whose items are the ones of live's row
	// (a change elsewhere in their tree leaf named them), is marked a
	// clone of live's row for findsame: most of both snapshots' files.
	if c := checkClones(t, db); c < 2*n-4 {
		t.Errorf("%d files recorded as clones of live's; want about %d", c, 2*n)
	}
	// Their sums are live's, stored once: each file holds one chunk at
	// most, and those that share another's none.
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var sharing, stored, files int
	if err := ix.DB().QueryRow(`SELECT (SELECT count(*) FROM files WHERE blocks_of IS NOT NULL),
		(SELECT count(*) FROM blocks), (SELECT count(*) FROM files)`).Scan(&sharing, &stored, &files); err != nil {
		t.Fatal(err)
	}
	if sharing < 2*n-4 || stored > files-sharing {
		t.Errorf("%d of %d files share another's sums, %d chunks stored; want about %d, at most %d", sharing, files, stored, 2*n, files-sharing)
	}
}

// TestSnapshotFromSibling checks that a read-only snapshot whose origin
// has no walk made before it (a first run on a host of snapshots) is
// recorded from the rows of an older read-only snapshot of the same
// subvolume, for the files with the identity their row has, as from an
// origin's (see TestSnapshotFromOrigin); and that every row is then what
// reading the file gives: identity, sums and extents. Between the two
// snapshots one file is overwritten in place (read again), one
// deduplicated (its extents change, its identity does not: its extent
// items are read again from the tree), one deleted and one made (read).
// The older snapshot is walked first, in a run of its own, so that its
// rows are committed when the second run meets the newer one; a
// writable snapshot, and the origin itself, take nothing from it.
func TestSnapshotFromSibling(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	live, p := liveSubvol(t, mnt)
	const n = 600
	for i := range n {
		writeFile(t, p(fmt.Sprintf("d%02d/f%03d", i%20, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("d02/f002-copy"), randomBytes(102, 8192+2))
	testfs.Run(t, "sync")
	older, newer := filepath.Join(mnt, "snaps", "1"), filepath.Join(mnt, "snaps", "2")
	if err := os.Mkdir(filepath.Join(mnt, "snaps"), 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, older)
	overwrite(t, p("d19/f599"), 0, randomBytes(1, 4096))
	dedupe(t, p("d02/f002"), p("d02/f002-copy"), 8192+2)
	if err := os.Remove(p("d05/f005")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("d06/new"), randomBytes(2, 8192))
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, newer)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", live, filepath.Join(mnt, "writable"))

	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, older); err != nil {
		t.Fatalf("hashfile %s = %v\n%s", older, err, stderr)
	}
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", mnt, err, stderr)
	}
	// Of the newer snapshot's 601 files, all but the one overwritten and
	// the new one: 599 (the deduplicated one with its sums, and its
	// extents as the tree has them now). Nothing in live or the writable
	// snapshot, nor in the older, walked before.
	m := regexp.MustCompile(` (\d+) as recorded in the subvolume snapshotted\),.* 0 failed,`).FindStringSubmatch(stderr)
	if m == nil || m[1] != "599" {
		t.Errorf("files recorded from the older snapshot's rows: %v; want 599\n%s", m, stderr)
	}
	checkTree(t, db, mnt)
	checkExtents(t, db, newer)
	checkExtents(t, db, older)
}

// TestSnapshotAdopted checks that a new read-only snapshot whose top
// directory the walk meets has its files recorded from the rows of the
// subvolume it was taken from, all at once, before it is walked (as if
// that subvolume's last walk had been its own), and that the walk then
// settles what changed between that walk and the snapshot as it would in
// any subvolume walked again: a file deduplicated has its extents
// recorded again, one overwritten is read, one renamed is found renamed,
// one deleted is pruned, one new is read. Paths that are not UTF-8 keep
// their bytes. The old per-file way counts none of those as renamed,
// pruned or remapped, and the rename as read from extents.
func TestSnapshotAdopted(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	for i := range 30 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%3, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("\xc3\xa9\xff/g"), randomBytes(200, 5000))
	pair := randomBytes(300, 64<<10)
	writeFile(t, p("pair/src"), pair)
	testfs.Run(t, "sync")
	writeFile(t, p("pair/dst"), pair)
	writeFile(t, p("ow"), randomBytes(400, 16384))
	writeFile(t, p("mv-from"), randomBytes(500, 12000))
	writeFile(t, p("rm"), randomBytes(600, 9000))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}

	// Between live's walk and the snapshot.
	dedupe(t, p("pair/src"), p("pair/dst"), 64<<10)
	overwrite(t, p("ow"), 0, randomBytes(401, 16384))
	if err := os.Rename(p("mv-from"), p("mv-to")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("rm")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("new"), randomBytes(700, 8192))
	testfs.Run(t, "sync")
	snaps := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(snaps, "s1")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	// After it, in live alone, which this run does not walk.
	overwrite(t, p("d0/f00"), 0, randomBytes(800, 4096))
	testfs.Run(t, "sync")

	_, stderr, err := hashfile(t, "", "-db", db, snaps)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", snaps, err, stderr)
	}
	// 36 files: 33 as live's rows have them (pair/dst with its extents
	// recorded again), mv-to renamed, ow and new read; rm's row pruned.
	checkSummary(t, stderr, counts{seen: 36, hashed: 35, reused: 33, copied: 33, unchanged: 1, renamed: 1,
		pruned: 1, remapped: 1, read: 16384 + 8192})
	checkTree(t, db, snap)
	checkExtents(t, db, snap)
	if c := checkClones(t, db); c < 32 {
		t.Errorf("%d files recorded as clones of live's; want at least 32", c)
	}
	// Walked as any: unchanged, it is left unwalked the next time.
	_, stderr, err = hashfile(t, "", "-db", db, snaps)
	if err != nil {
		t.Fatalf("hashfile %s again = %v\n%s", snaps, err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 36, unchanged: 36, subvols: 1})
}

// TestSnapshotsAdoptedTogether checks that the new read-only snapshots
// the walk decides one after the other (hourly snapshots of one
// subvolume, in one directory) have their files recorded from the
// origin's rows in one transaction, not one each: each adoption writes
// most pages of the indexes on the rows it refers to, and a commit
// writes every page it changed. The rows adopted carry the write
// sequence number of their transaction (files.changed). Each snapshot's
// rows are still what reading its files gives, a file changed between
// two snapshots included.
func TestSnapshotsAdoptedTogether(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	for i := range 30 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%3, i)), randomBytes(uint64(100+i), 8192+i))
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	snaps := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	for h := range 3 {
		overwrite(t, p(fmt.Sprintf("d%d/f%02d", h, h)), 0, randomBytes(uint64(400+h), 4096))
		testfs.Run(t, "sync")
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(snaps, fmt.Sprintf("h%d", h)))
	}

	_, stderr, err := hashfile(t, "", "-db", db, snaps)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", snaps, err, stderr)
	}
	// 90 files: 84 as live's rows have them; the file overwritten before
	// each snapshot read in it (4 KiB), and recorded from its extents in
	// the snapshots after it.
	checkSummary(t, stderr, counts{seen: 90, hashed: 90, reused: 87, copied: 84, listed: 84, skimmed: 3, read: 3 * 4096})
	checkTree(t, db, snaps)
	checkExtents(t, db, snaps)
	raw := openRaw(t, db)
	var seqs []int64
	for h := range 3 {
		top := filepath.Join(snaps, fmt.Sprintf("h%d", h))
		var seq int64
		if err := raw.QueryRow("SELECT min(changed) FROM files WHERE path > ? AND path < ?", top+"/", top+"0").Scan(&seq); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	if seqs[0] != seqs[1] || seqs[1] != seqs[2] {
		t.Errorf("the snapshots' rows were adopted at write sequence numbers %v; want one transaction", seqs)
	}
}

// TestSnapshotSkimmed checks that a new read-only snapshot taken whole
// from its origin's rows is not walked when no directory changed in it
// since the origin's last walk (a snapshot taken after a night's
// deduplication, before the day's changes): only the files whose items
// changed since, and those whose origin's rows this run wrote before, are
// looked at again, and every row is then what reading the file gives,
// although the origin changed again after the snapshot and is walked in
// the same run, first. With --exclude it is walked: a pattern may name the
// origin's paths and not the snapshot's.
func TestSnapshotSkimmed(t *testing.T) {
	for _, exclude := range []bool{false, true} {
		t.Run(fmt.Sprintf("exclude=%v", exclude), func(t *testing.T) { testSnapshotSkimmed(t, exclude) })
	}
}

func testSnapshotSkimmed(t *testing.T, exclude bool) {
	var opts []string
	if exclude {
		opts = []string{"--exclude", "*.never"}
	}
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	for i := range 40 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%4, i)), randomBytes(uint64(100+i), 8192+i))
	}
	pair := randomBytes(300, 64<<10)
	writeFile(t, p("pair/src"), pair)
	testfs.Run(t, "sync")
	writeFile(t, p("pair/dst"), pair)
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", append(append([]string{"-db", db}, opts...), mnt)...); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}

	// Between live's walk and the snapshot: no directory changes.
	dedupe(t, p("pair/src"), p("pair/dst"), 64<<10)
	overwrite(t, p("d1/f01"), 0, randomBytes(401, 4096))
	testfs.Run(t, "sync")
	snap := filepath.Join(mnt, "snaps", "s1")
	if err := os.Mkdir(filepath.Dir(snap), 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	// After it, in live: an overwrite, a deletion, a new file.
	overwrite(t, p("d2/f02"), 0, randomBytes(402, 4096))
	if err := os.Remove(p("d3/f03")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("d0/new"), randomBytes(700, 8192))
	testfs.Run(t, "sync")

	_, stderr, err := hashfile(t, "", append(append([]string{"-db", db}, opts...), mnt)...)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// live walked only below d0 and d3 (see TestPartWalk), the
	// snapshot skimmed. Read: live's two overwrites and
	// its new file, 16 KiB, and of the snapshot nothing, or the 8 KiB of
	// d1/f01 when live's row of it was not committed by then (its new
	// extent not known yet). pair/dst's extents recorded again in live,
	// and in the snapshot unless live's row had them when it was taken.
	sum := summaryOf(stderr)
	for _, want := range []string{" 0 failed,", " 1 pruned,", " walked only where directories changed;"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q lacks %q", sum, want)
		}
	}
	if skimmed := strings.Contains(sum, " 1 btrfs subvolume looked at only where files changed,"); skimmed == exclude {
		t.Errorf("summary %q: skimmed %v; want %v", sum, skimmed, !exclude)
	}
	if !regexp.MustCompile(` [12] unchanged with extents recorded again[,;].* read (16|24)\.0 KiB$`).MatchString(sum) {
		t.Errorf("summary %q: want 1 or 2 remapped, 16 or 24 KiB read", sum)
	}
	checkTree(t, db, mnt)
	checkExtents(t, db, live)
	checkExtents(t, db, snap)
	if c := checkClones(t, db); c < 38 {
		t.Errorf("%d files recorded as clones of live's; want at least 38", c)
	}
}

// checkClones checks that every row the index records as a clone of
// another (index.File.CloneOf) that has not changed since has that row's
// sums and extents (but for whether another file shares them), and
// returns how many there are.
func checkClones(t *testing.T, db string) int {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ctx := context.Background()
	var clones [][2]int64
	changed := make(map[int64]int64)
	seq := make(map[int64]int64)
	err = ix.Files(ctx, func(f index.File) error {
		changed[f.ID] = f.Changed
		if f.CloneOf != 0 {
			clones = append(clones, [2]int64{f.ID, f.CloneOf})
			seq[f.ID] = f.CloneSeq
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	strip := func(es []fiemap.Extent) []fiemap.Extent {
		for i := range es {
			es[i].Flags &^= fiemap.FlagShared | fiemap.FlagLast
		}
		return es
	}
	n := 0
	for _, c := range clones {
		if changed[c[1]] != seq[c[0]] {
			continue // its origin changed since
		}
		n++
		s1, err1 := ix.Sums(ctx, c[0])
		s2, err2 := ix.Sums(ctx, c[1])
		e1, err3 := ix.Extents(ctx, c[0])
		e2, err4 := ix.Extents(ctx, c[1])
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s1, s2) || !slices.Equal(strip(e1), strip(e2)) {
			t.Errorf("row %d, a clone of row %d: sums equal %v, extents %v and %v", c[0], c[1], bytes.Equal(s1, s2), e1, e2)
		}
	}
	return n
}

// TestSnapshotLink checks that in a new snapshot, whose files the index
// does not look up one by one (it has no file of that volume), a second
// name of a file is still one: the file keeps the name met first, even
// when that is committed long before the second is met.
func TestSnapshotLink(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	writeFile(t, p("a"), randomBytes(1, 8192))
	const many = 4500 // more than two batches of the writer between the two names
	for i := range many {
		writeFile(t, p(fmt.Sprintf("m/%04d", i)), []byte{byte(i), byte(i >> 8)})
	}
	if err := os.Mkdir(p("z"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(p("a"), p("z/a-link")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	// The snapshot as a root: its files are recorded one by one (met from
	// above, it would be taken whole from live's rows, and skimmed).
	_, stderr, err := hashfile(t, "", "-db", db, snap)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// The snapshot's files copied from live's rows but for the second
	// name.
	checkSummary(t, stderr, counts{seen: many + 2, hashed: many + 1, reused: many + 1, copied: many + 1, links: 1})
	checkTree(t, db, snap)
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var path string
	if err := ix.DB().QueryRow("SELECT path FROM files WHERE path LIKE ? AND ino = (SELECT ino FROM files WHERE path = ?)",
		snap+"/%", p("a")).Scan(&path); err != nil || path != filepath.Join(snap, "a") {
		t.Errorf("the snapshot's file is recorded at %q (%v); want %q", path, err, filepath.Join(snap, "a"))
	}
}

// TestSkim checks that a btrfs subvolume in which no directory changed
// since its last complete walk is not walked again: the files whose items
// changed are looked at where the index has them, the others count as
// unchanged. A read-only snapshot deduplicated into has the extents of
// the file deduplicated recorded again, and after a balance every file
// has; in a writable subvolume, a file
// overwritten in place is hashed again and one truncated to nothing is
// pruned; a rename has the subvolume walked again, and so does renaming
// the snapshot itself.
func TestSkim(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	writeFile(t, p("a"), randomBytes(1, 1<<20))
	writeFile(t, p("b"), randomBytes(1, 1<<20))
	writeFile(t, p("c"), randomBytes(2, 64<<10))
	writeFile(t, p("d"), randomBytes(3, 8<<10))
	writeFile(t, p("sub/e"), randomBytes(4, 8<<10))
	testfs.Run(t, "sync")
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts) {
		t.Helper()
		runChecked(t, db, mnt, want, mnt)
		checkExtents(t, db, live)
		checkExtents(t, db, snap)
	}
	run(counts{seen: 10, hashed: 10, reused: 5, read: 2<<20 + 64<<10 + 8<<10 + 8<<10})

	dedupe(t, filepath.Join(snap, "a"), filepath.Join(snap, "b"), 1<<20)
	testfs.Run(t, "sync")
	run(counts{seen: 10, unchanged: 10, remapped: 1, listed: 4, subvols: 1, skimmed: 1})

	// A balance moves every data extent: no inode item is rewritten, no
	// directory changes, but the extent items do; every file has them
	// recorded again.
	testfs.Run(t, "btrfs", "balance", "start", "-d", mnt)
	testfs.Run(t, "sync")
	run(counts{seen: 10, unchanged: 10, remapped: 10, skimmed: 2})

	overwrite(t, p("d"), 0, randomBytes(5, 4096))
	if err := os.Truncate(p("c"), 0); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 9, hashed: 1, unchanged: 8, skipped: 1, pruned: 1, listed: 3, subvols: 1, skimmed: 1, read: 4096})

	if err := os.Rename(p("sub/e"), p("e")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 9, unchanged: 9, renamed: 1, skipped: 1, subvols: 1, listed: 3})

	// A snapshot renamed is unchanged, but its files are no longer where
	// the index has them: it is walked again, and they are found renamed
	// (not pruned, and forgotten while it stays unchanged).
	moved := filepath.Join(mnt, "snap-moved")
	if err := os.Rename(snap, moved); err != nil {
		t.Fatal(err)
	}
	snap = moved
	testfs.Run(t, "sync")
	run(counts{seen: 9, unchanged: 9, renamed: 5, subvols: 1})
	run(counts{seen: 9, unchanged: 9, subvols: 2})
}

// TestPartWalk checks that a subvolume in which directories changed since
// its last complete walk is walked only below them, and skimmed elsewhere
// (its files taken as the index has them, but those whose items changed),
// and that the index then holds every file as it is: files added,
// deleted, renamed with their directory, hard-linked and written in
// place, and a directory new with all below it.
func TestPartWalk(t *testing.T) {
	mnt, _, p := noatimeLive(t)
	partWalkTree(t, p)
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts) {
		t.Helper()
		runChecked(t, db, mnt, want, mnt)
		var marked int
		if err := openRaw(t, db).QueryRow("SELECT count(*) FROM files WHERE gone != 0").Scan(&marked); err != nil || marked != 0 {
			t.Errorf("%d rows marked gone after the run (%v); want 0", marked, err)
		}
	}
	run(counts{seen: 9, hashed: 8, links: 1, read: 8 * 8 << 10})

	// h's name in a/x removed: a/x is walked, d is not, and h is found
	// under its other name there, not pruned.
	if err := os.Remove(p("a/x/h")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 8, unchanged: 8, renamed: 1, part: 1, listed: 7})

	// A file added to a/x, one deleted from b/c, one written in place in
	// d: a/x and b/c are walked (a/x's two files taken as listed), the
	// rest skimmed, d/6 looked at again where the index has it. A row
	// skimmed that a run which did not complete marked gone is unmarked.
	if _, err := openRaw(t, db).Exec("UPDATE files SET gone = 1 WHERE path = ?", p("b/4")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("a/x/new"), randomBytes(20, 8<<10))
	if err := os.Remove(p("b/c/5")); err != nil {
		t.Fatal(err)
	}
	overwrite(t, p("d/6"), 0, randomBytes(21, 4096))
	testfs.Run(t, "sync")
	run(counts{seen: 8, hashed: 2, unchanged: 6, pruned: 1, part: 1, listed: 5, read: 8<<10 + 4096})

	// a/y moved to b/y2: a and b are walked, and y2 below b; d and t
	// skimmed.
	if err := os.Rename(p("a/y"), p("b/y2")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 8, unchanged: 8, renamed: 1, part: 1, listed: 7})

	// A second name for d/6 in a/x, and a new directory with all below
	// it in b. d/6 is looked at again where the index has it (its ctime
	// changed: its sums are taken from its extents, as a whole walk
	// takes them).
	if err := os.Link(p("d/6"), p("a/x/link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("b/n/m/7"), randomBytes(22, 8<<10))
	testfs.Run(t, "sync")
	run(counts{seen: 10, hashed: 2, reused: 1, unchanged: 7, links: 1, part: 1, listed: 7, read: 8 << 10})

	// Nothing changed: unwalked.
	run(counts{seen: 9, unchanged: 9, subvols: 1})

	// The top directory changed: walked whole.
	writeFile(t, p("u"), randomBytes(23, 8<<10))
	testfs.Run(t, "sync")
	run(counts{seen: 11, hashed: 1, unchanged: 9, links: 1, listed: 9, read: 8 << 10})
}

// TestPartWalkEmptyFiles checks that files the index has no row of whose
// inode items changed since the last walk (written in place after they
// were met empty), in directories that did not change, are looked at
// where they are, and nothing else: each is found without a walk of its
// directory, which for one in the top directory would be the whole
// subvolume, in the subvolume and in a snapshot taken of it since.
func TestPartWalkEmptyFiles(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	writeFile(t, p("a/1"), randomBytes(30, 8<<10))
	writeFile(t, p("b/2"), randomBytes(31, 8<<10))
	writeFile(t, p("a/e"), nil)
	writeFile(t, p("a/e2"), nil)
	writeFile(t, p("e0"), nil)
	writeFile(t, p("e1"), nil)
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	runChecked(t, db, mnt, counts{seen: 2, hashed: 2, skipped: 4, read: 2 * 8 << 10}, mnt)

	// a/e written in place: found where it is; a is not walked.
	overwrite(t, p("a/e"), 0, randomBytes(32, 8<<10))
	testfs.Run(t, "sync")
	runChecked(t, db, mnt, counts{seen: 3, hashed: 1, unchanged: 2, skimmed: 1, listed: 2, read: 8 << 10}, mnt)

	// e0, in the top directory, written in place, and a snapshot taken:
	// neither is walked (the snapshot's files taken from live's rows),
	// and e0 is found in each.
	overwrite(t, p("e0"), 0, randomBytes(33, 8<<10))
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, "snap"))
	runChecked(t, db, mnt, counts{seen: 8, hashed: 5, reused: 4, copied: 3, unchanged: 3, skimmed: 2, listed: 6, read: 8 << 10}, mnt)

	// b changed (a file added), and elsewhere a/e2 written in place and
	// e1 touched (still empty): b is walked, a/e2 found before it in path
	// order, e1 left out.
	writeFile(t, p("b/3"), randomBytes(35, 8<<10))
	overwrite(t, p("a/e2"), 0, randomBytes(36, 8<<10))
	now := time.Now()
	if err := os.Chtimes(p("e1"), now, now); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	runChecked(t, db, mnt, counts{seen: 10, hashed: 2, unchanged: 8, subvols: 1, part: 1, listed: 4, read: 2 * 8 << 10}, mnt)
}

// TestPartWalkExcluded checks that a file the walk leaves out (-exclude)
// that changes in the top directory of a subvolume costs no walk of it,
// and stays out of the index.
func TestPartWalkExcluded(t *testing.T) {
	mnt, _, p := noatimeLive(t)
	writeFile(t, p("a/1"), randomBytes(30, 8<<10))
	writeFile(t, p("x.log"), randomBytes(31, 8<<10))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts) {
		t.Helper()
		_, stderr, err := hashfile(t, "", "-db", db, "-exclude", "*.log", mnt)
		if err != nil {
			t.Fatalf("hashfile = %v\n%s", err, stderr)
		}
		checkSummary(t, stderr, want)
		checkTreeExcept(t, db, mnt, func(path string) bool { return strings.HasSuffix(path, ".log") })
	}
	run(counts{seen: 1, hashed: 1, read: 8 << 10})
	appendSync(t, p("x.log"), randomBytes(32, 4096))
	run(counts{seen: 1, unchanged: 1, skimmed: 1, listed: 1})
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var n int
	if err := ix.DB().QueryRow("SELECT count(*) FROM files WHERE path = ?", p("x.log")).Scan(&n); err != nil || n != 0 {
		t.Errorf("the index has %d rows of x.log (%v), which the walk leaves out", n, err)
	}
}

// partWalkTree writes the tree TestPartWalk and TestPartWalkSnapshots
// start from, p naming a file in its subvolume: seven files of 8 KiB in
// a/x, a/y, b, b/c, d and the top, and h, with a name in a/x (the one the
// index records) and one in d.
func partWalkTree(t *testing.T, p func(string) string) {
	t.Helper()
	for i, name := range []string{"a/x/1", "a/x/2", "a/y/3", "b/4", "b/c/5", "d/6", "t"} {
		writeFile(t, p(name), randomBytes(uint64(10+i), 8<<10))
	}
	writeFile(t, p("a/x/h"), randomBytes(30, 8<<10))
	if err := os.Link(p("a/x/h"), p("d/h")); err != nil {
		t.Fatal(err)
	}
}

// checkPartWalkTree checks that index db holds exactly the files
// partWalkTree made (one row for a/x/h, of which d/h is a second name),
// named by p, and the paths more.
func checkPartWalkTree(t *testing.T, db string, p func(string) string, more ...string) {
	t.Helper()
	var paths []string
	for path := range indexed(t, db) {
		paths = append(paths, path)
	}
	want := slices.Clone(more)
	for _, name := range []string{"a/x/1", "a/x/2", "a/y/3", "b/4", "b/c/5", "d/6", "t", "a/x/h"} {
		want = append(want, p(name))
	}
	slices.Sort(paths)
	slices.Sort(want)
	if !slices.Equal(paths, want) {
		t.Errorf("indexed:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
}

// TestPartWalkSnapshots checks that new read-only snapshots in which
// directories changed between their origin's last complete walk and the
// moment they were made (snapshots taken every hour, a run every night)
// are walked only below those directories, their files elsewhere taken
// from the origin's rows, and that the index then holds every file of
// every snapshot as it is: files added, deleted, written in place and
// renamed with their directory before each snapshot, a name of a file
// with two removed, and a file deleted in the origin after the snapshots
// were made, which they hold; and files moved in the origin before and
// after a snapshot, one to a directory the snapshot's walk does not go
// below (see movedWithin).
func TestPartWalkSnapshots(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	partWalkTree(t, p)
	snaps := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	runChecked(t, db, mnt, counts{seen: 9, hashed: 8, links: 1, read: 8 * 8 << 10}, mnt)
	snapshot := func(name string) {
		t.Helper()
		testfs.Run(t, "sync")
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(snaps, name))
	}

	// The first hour: a file added to a/x, b/c/5 deleted, d/6 written
	// in place.
	writeFile(t, p("a/x/new"), randomBytes(20, 8<<10))
	if err := os.Remove(p("b/c/5")); err != nil {
		t.Fatal(err)
	}
	overwrite(t, p("d/6"), 0, randomBytes(21, 4096))
	snapshot("h1")
	// The second: a/y moved to b/y2, h's name in a/x removed.
	if err := os.Rename(p("a/y"), p("b/y2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("a/x/h")); err != nil {
		t.Fatal(err)
	}
	snapshot("h2")
	// The snapshots alone first, live's rows as its last walk left them.
	// h1 is walked below a/x and b/c, h2 below a and b; elsewhere their
	// files are live's rows. Read: a/x/new and d/6's new block, once
	// (h2 takes them by their extents). Found renamed in h2: a/y/3, and
	// h under its name in d, which h2 does not walk. Pruned: b/c/5 in
	// each. As listed, besides 4 where the walk does not go: a/x/1,
	// a/x/2 and a/x/h in h1, a/x/1, a/x/2 and b/4 in h2.
	runChecked(t, db, snaps, counts{seen: 16, hashed: 14, reused: 12, copied: 10, unchanged: 2, renamed: 2, pruned: 2,
		listed: 4 + 6, part: 2, read: 8<<10 + 4096}, snaps)
	checkExtents(t, db, filepath.Join(snaps, "h1"))
	checkExtents(t, db, filepath.Join(snaps, "h2"))
	// Then live, below a and b (see TestPartWalk), the snapshots
	// unchanged.
	runChecked(t, db, mnt, counts{seen: 24, hashed: 2, reused: 2, unchanged: 22, renamed: 2, pruned: 1, subvols: 2,
		part: 1, listed: -1}, mnt)

	// A snapshot, then in live a file moved from a directory the
	// snapshot walks to one it does not; and a file deleted. Whether
	// live's row of the file took its new path before the snapshot's
	// files are taken from live's rows depends on which of the two the
	// run gets to first; either way the index holds each file where it
	// is.
	if err := os.Rename(p("a/x/1"), p("d/1")); err != nil {
		t.Fatal(err)
	}
	snapshot("h3")
	if err := os.Rename(p("a/x/2"), p("t2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("b/4")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	if sum := summaryOf(stderr); !strings.Contains(sum, " 0 failed,") || !strings.Contains(sum, " 0 skipped,") {
		t.Errorf("summary %q", sum)
	}
	checkTree(t, db, mnt)
	checkExtents(t, db, filepath.Join(snaps, "h3"))
}

// TestPartWalkRoots checks that a root inside a subvolume is walked
// only below the directories that changed in it since its last complete
// walk, whatever changed above it, and whole when it changed itself; and
// that two roots in one subvolume are each walked only below their own.
func TestPartWalkRoots(t *testing.T) {
	_, _, p := noatimeLive(t)
	for i, name := range []string{"r/a/1", "r/b/2", "r/c/3", "o/x/4", "o/y/5"} {
		writeFile(t, p(name), randomBytes(uint64(40+i), 8<<10))
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts, roots ...string) {
		t.Helper()
		runChecked(t, db, roots[0], want, roots...)
		for _, r := range roots[1:] {
			checkTree(t, db, r)
		}
	}
	run(counts{seen: 3, hashed: 3, read: 3 * 8 << 10}, p("r"))

	// A file added in r/a, and one in the subvolume's top, above r.
	writeFile(t, p("r/a/new"), randomBytes(50, 4096))
	writeFile(t, p("top"), randomBytes(51, 4096))
	testfs.Run(t, "sync")
	run(counts{seen: 4, hashed: 1, unchanged: 3, rootsPart: 1, listed: 3, read: 4096}, p("r"))

	// r/b moved below r/c: r changed, and is walked whole.
	if err := os.Rename(p("r/b"), p("r/c/b")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 4, unchanged: 4, renamed: 1, listed: 3}, p("r"))

	// Two roots in the subvolume, o new to the index.
	run(counts{seen: 6, hashed: 2, unchanged: 4, roots: 1, read: 2 * 8 << 10}, p("r"), p("o"))
	writeFile(t, p("r/a/newer"), randomBytes(52, 4096))
	writeFile(t, p("o/x/new"), randomBytes(53, 4096))
	testfs.Run(t, "sync")
	run(counts{seen: 8, hashed: 2, unchanged: 6, rootsPart: 2, listed: 6, read: 2 * 4096}, p("r"), p("o"))
}

// TestPartWalkRootsSingles checks that files the index has no row of
// whose inode items changed, in two roots skimmed in one run, are each
// handed over in the walk of their own root: the files each root's last
// walk met, which the next run's progress counts on, are its own.
func TestPartWalkRootsSingles(t *testing.T) {
	_, _, p := noatimeLive(t)
	writeFile(t, p("r/a/1"), randomBytes(60, 8<<10))
	writeFile(t, p("o/x/2"), randomBytes(61, 8<<10))
	writeFile(t, p("r/e"), nil)
	writeFile(t, p("o/e"), nil)
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts) {
		t.Helper()
		runChecked(t, db, p("r"), want, p("r"), p("o"))
		checkTree(t, db, p("o"))
	}
	run(counts{seen: 2, hashed: 2, skipped: 2, read: 2 * 8 << 10})
	overwrite(t, p("r/e"), 0, randomBytes(62, 8<<10))
	overwrite(t, p("o/e"), 0, randomBytes(63, 8<<10))
	testfs.Run(t, "sync")
	run(counts{seen: 4, hashed: 2, unchanged: 2, rootsSkimmed: 2, listed: 2, read: 2 * 8 << 10})
	rows, err := openRaw(t, db).Query("SELECT path, files FROM roots ORDER BY path")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var path string
		var n int
		if err := rows.Scan(&path, &n); err != nil {
			t.Fatal(err)
		}
		got[path] = n
	}
	if want := map[string]int{p("o"): 2, p("r"): 2}; !maps.Equal(got, want) {
		t.Errorf("files met by each root's walk = %v; want %v", got, want)
	}
}

// TestPartWalkAccessTimes checks that a directory whose access time alone
// was written since the last complete walk (relatime, as another tool
// lists it) is not walked: its ctime is the one recorded.
func TestPartWalkAccessTimes(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	testfs.Run(t, "mount", "-o", "remount,relatime", mnt)
	_, p := liveSubvol(t, mnt)
	for i, name := range []string{"a/x/1", "a/x/2", "b/y/3", "b/y/4", "c/5"} {
		writeFile(t, p(name), randomBytes(uint64(60+i), 8<<10))
	}
	// Met only where the walk goes: skipped.
	for _, name := range []string{"a/x/link", "b/y/link", "c/link"} {
		if err := os.Symlink("1", p(name)); err != nil {
			t.Fatal(err)
		}
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	runChecked(t, db, mnt, counts{seen: 5, hashed: 5, skipped: 3, read: 5 * 8 << 10}, mnt)

	// The check after the run listed every directory, the first time
	// since its entries were made: its access time was written then.
	for _, d := range []string{"", "a", "a/x", "b", "b/y", "c"} {
		var st unix.Stat_t
		if err := unix.Stat(p(d), &st); err != nil {
			t.Fatal(err)
		}
		if st.Atim.Nano() <= st.Ctim.Nano() {
			t.Fatalf("%s: access time %d, ctime %d; want it written since", p(d), st.Atim.Nano(), st.Ctim.Nano())
		}
	}
	writeFile(t, p("b/y/new"), randomBytes(70, 4096))
	testfs.Run(t, "sync")
	// Only b/y walked (its symlink skipped); the files elsewhere looked
	// at again where the index has them (their access times were
	// written: none is known unchanged without a look).
	runChecked(t, db, mnt, counts{seen: 6, hashed: 1, unchanged: 5, skipped: 1, part: 1, read: 4096}, mnt)

	// a/x removed: a is walked, and the record of a/x dropped; the
	// index records every directory there is, and no other.
	if err := os.RemoveAll(p("a/x")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	runChecked(t, db, mnt, counts{seen: 4, unchanged: 4, pruned: 2, part: 1, listed: -1}, mnt)
	var recorded []string
	rows, err := openRaw(t, db).Query("SELECT path FROM dirs WHERE path LIKE ? ORDER BY path", p("")+"%")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var path string
		if err := rows.Scan(&path); err != nil {
			t.Fatal(err)
		}
		recorded = append(recorded, strings.TrimPrefix(path, mnt))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/live", "/live/a", "/live/b", "/live/b/y", "/live/c"}; !slices.Equal(recorded, want) {
		t.Errorf("directories recorded %q; want %q", recorded, want)
	}
}

// TestDirsOfSnapshotsNotRecorded checks that the directories of a
// read-only snapshot, which do not change, are not recorded, and those of
// a writable subvolume are.
func TestDirsOfSnapshotsNotRecorded(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	writeFile(t, p("a/b/f"), randomBytes(80, 4096))
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	db := filepath.Join(t.TempDir(), "index.db")
	runChecked(t, db, mnt, counts{seen: 2, hashed: 2, reused: 1, read: 4096}, mnt)
	count := func(under string) (n int) {
		t.Helper()
		if err := openRaw(t, db).QueryRow("SELECT count(*) FROM dirs WHERE path = ? OR path LIKE ?", under, under+"/%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n, m := count(live), count(snap); n != 3 || m != 0 {
		t.Errorf("directories recorded: %d in live, %d in the snapshot; want 3 and 0", n, m)
	}
}

// TestPartWalkUnmarks checks that a row in a directory a subvolume walked
// in part does not walk, marked gone by a run that did not complete, is
// unmarked: the file is there. Its inode and extent items lie in tree
// leaves far from those written since (300 files made after it).
func TestPartWalkUnmarks(t *testing.T) {
	mnt, _, p := noatimeLive(t)
	writeFile(t, p("keep/f"), randomBytes(1, 8<<10))
	const fill = 300
	for i := range fill {
		writeFile(t, p(fmt.Sprintf("fill/%03d", i)), randomBytes(uint64(100+i), 4096))
	}
	writeFile(t, p("w/x"), randomBytes(2, 8<<10))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	runChecked(t, db, mnt, counts{seen: fill + 2, hashed: fill + 2, read: fill*4096 + 2*8<<10}, mnt)

	if _, err := openRaw(t, db).Exec("UPDATE files SET gone = 1 WHERE path = ?", p("keep/f")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("w/y"), randomBytes(3, 4096))
	testfs.Run(t, "sync")
	runChecked(t, db, mnt, counts{seen: fill + 3, hashed: 1, unchanged: fill + 2, part: 1, listed: -1, read: 4096}, mnt)
	var marked int
	if err := openRaw(t, db).QueryRow("SELECT count(*) FROM files WHERE gone != 0").Scan(&marked); err != nil || marked != 0 {
		t.Errorf("%d rows marked gone after the run (%v); want 0", marked, err)
	}
}

// runChecked runs hashfile with the index db on roots, and checks that it
// succeeds with the summary want and that the index holds the files under
// tree as they are (checkTree).
func runChecked(t *testing.T, db, tree string, want counts, roots ...string) {
	t.Helper()
	_, stderr, err := hashfile(t, "", append([]string{"-db", db}, roots...)...)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, want)
	checkTree(t, db, tree)
}

// noatimeLive mounts a btrfs of 256 MiB with noatime (the checks read
// every file: no access time changes) and creates the subvolume "live"
// in it, as liveSubvol does; it returns the mount point too.
func noatimeLive(t *testing.T) (mnt, live string, p func(string) string) {
	t.Helper()
	mnt = testfs.Mount(t, "btrfs", "256M")
	testfs.Run(t, "mount", "-o", "remount,noatime", mnt)
	live, p = liveSubvol(t, mnt)
	return mnt, live, p
}

// liveSubvol creates the btrfs subvolume "live" in mnt and returns its
// path, and a function that names a file in it.
func liveSubvol(t *testing.T, mnt string) (string, func(string) string) {
	t.Helper()
	live := filepath.Join(mnt, "live")
	testfs.Run(t, "btrfs", "subvolume", "create", live)
	return live, func(name string) string { return filepath.Join(live, name) }
}

// dedupe shares the first n bytes of src into dst (FIDEDUPERANGE), without
// changing src's access time.
func dedupe(t *testing.T, src, dst string, n uint64) {
	t.Helper()
	s, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOATIME, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := os.Open(dst) // as root, also in a read-only snapshot
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := unix.FileDedupeRange{Src_length: n, Info: []unix.FileDedupeRangeInfo{{Dest_fd: int64(d.Fd())}}}
	if err := unix.IoctlFileDedupeRange(int(s.Fd()), &r); err != nil || r.Info[0].Status != 0 || r.Info[0].Bytes_deduped != n {
		t.Fatalf("dedupe %s into %s: %v, %+v", src, dst, err, r.Info[0])
	}
}

// checkExtents checks that the extents the index records of each file
// under root are its btrfs file extent items now, but for whether another
// file shares them.
func checkExtents(t *testing.T, db, root string) {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var checked int
	err = ix.Files(context.Background(), func(f index.File) error {
		if !strings.HasPrefix(f.Path, root+"/") {
			return nil
		}
		had, err := ix.Extents(context.Background(), f.ID)
		if err != nil {
			return err
		}
		file, err := os.Open(f.Path)
		if err != nil {
			return err
		}
		defer file.Close()
		now, err := fiemap.DiskExtents(file)
		if err != nil {
			return err
		}
		unshared := func(ext []fiemap.Extent) []fiemap.Extent {
			out := slices.Clone(ext)
			for i := range out {
				out[i].Flags &^= fiemap.FlagShared
			}
			return out
		}
		if !slices.Equal(unshared(had), unshared(now)) {
			t.Errorf("extents of %s: index %+v; file %+v", f.Path, had, now)
		}
		checked++
		return nil
	})
	if err != nil || checked == 0 {
		t.Fatalf("checked the extents of %d files under %s: %v", checked, root, err)
	}
}

// readBytes returns the exact bytes read that hashfile's summary reports,
// from the index: the summary rounds them.
func readBytes(t *testing.T, stderr string) int64 {
	t.Helper()
	m := regexp.MustCompile(`; read ([0-9.]+) (B|KiB|MiB|GiB) in`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no bytes read in\n%s", stderr)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]]
	return int64(v * unit)
}

func appendSync(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// sparse writes data, a hole of hole bytes, and data again.
func sparse(t *testing.T, path string, data []byte, hole int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, int64(len(data))+hole); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// prealloc preallocates size bytes and writes data at the start.
func prealloc(t *testing.T, path string, data []byte, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestUnmountedRoot refuses a root whose filesystem is no longer mounted
// there (the mount point is an empty directory of the filesystem above):
// it is an error, and the files recorded under it stay in the index.
func TestUnmountedRoot(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	writeFile(t, filepath.Join(mnt, "a"), randomBytes(1, 9000))
	writeFile(t, filepath.Join(mnt, "d", "b"), randomBytes(2, 9000))
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	testfs.Run(t, "umount", mnt)
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if got := cli.Status(err); got != cli.ExitError || err == nil ||
		!strings.Contains(err.Error(), "root "+mnt+": on ") || !strings.Contains(err.Error(), "is a filesystem not mounted there?") {
		t.Errorf("hashfile on the unmounted root = %v (exit %d)\n%s; want exit 1, the root named, the filesystem not mounted", err, got, stderr)
	}
	if got := indexed(t, db); len(got) != 2 {
		t.Errorf("index holds %d files; want the 2 recorded", len(got))
	}
}

// TestTwoFilesystemsAlike hashes two btrfs filesystems made and written
// alike, whose files' extents have the same keys (disk start, length,
// generation) but other bytes: a key names an extent only within its
// filesystem, so neither file takes the other's sums.
func TestTwoFilesystemsAlike(t *testing.T) {
	// A pair made alike can differ by a transaction the kernel commits
	// on one of them on its own (a busy machine took 7 and 8): another
	// pair is made then.
	var mnts, keys []string
	for try := 1; ; try++ {
		mnts, keys = nil, nil
		for i := range 2 {
			mnt := testfs.Mount(t, "btrfs", "256M")
			p := filepath.Join(mnt, "f")
			writeFile(t, p, randomBytes(uint64(20+i), 128<<10))
			testfs.Run(t, "sync")
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			items, err := fiemap.DiskExtents(f)
			f.Close()
			if err != nil || len(items) != 1 {
				t.Fatalf("%s: extent items %v, %v", p, items, err)
			}
			mnts, keys = append(mnts, mnt), append(keys, fmt.Sprint(items[0].DiskStart, items[0].DiskLen, items[0].Gen))
		}
		if keys[0] == keys[1] {
			break
		}
		if try == 5 {
			t.Fatalf("the two files' extents have the keys %q and %q: the filesystems were not made alike, and this test shows nothing", keys[0], keys[1])
		}
	}

	db := filepath.Join(t.TempDir(), "index.db")
	_, stderr, err := hashfile(t, "", "-db", db, mnts[0], mnts[1])
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 2, hashed: 2, read: 256 << 10}) // both read
	for _, mnt := range mnts {
		checkTree(t, db, mnt)
	}
}

// TestListed walks a btrfs subvolume again after changes in some of its
// directories: the files whose inodes did not change since its last walk
// are taken as their directories list them (without lstat) where the
// index has them, with the inode number listed, and every other file is
// looked at as before: one changed in place, one new, one moved to
// another directory, one deleted, two directories swapped
// (RENAME_EXCHANGE), whose files keep their inodes and items but not
// their paths, a file given to another owner, a row marked gone by a run
// that did not complete, and every file after a balance, which moves
// their extents without rewriting their inodes. Also given as a root
// inside the subvolume. The files of the swapped directories are made
// apart from those that change (their inode numbers, so their tree
// leaves), so that only their inode numbers tell them apart.
func TestListed(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	for _, d := range []string{"one/x", "two/x", "moved/to"} {
		if err := os.MkdirAll(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const fill = 200 // files between those swapped and the others
	for i := range fill {
		writeFile(t, p(fmt.Sprintf("fill1/%03d", i)), randomBytes(uint64(1000+i), 4096))
	}
	writeFile(t, p("one/x/f"), randomBytes(200, 16384))
	writeFile(t, p("two/x/f"), randomBytes(201, 20480))
	writeFile(t, p("two/x/g"), randomBytes(202, 4096))
	for i := range fill {
		writeFile(t, p(fmt.Sprintf("fill2/%03d", i)), randomBytes(uint64(2000+i), 4096))
	}
	for i := range 30 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%3, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("moved/from"), randomBytes(203, 4096))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(root string, want counts) {
		t.Helper()
		runChecked(t, db, mnt, want, root)
		checkExtents(t, db, live)
		var marked int
		if err := openRaw(t, db).QueryRow("SELECT count(*) FROM files WHERE gone != 0").Scan(&marked); err != nil || marked != 0 {
			t.Errorf("%d rows marked gone after the run (%v); want 0", marked, err)
		}
	}
	const n = 2*fill + 34
	run(mnt, counts{seen: n, hashed: n, read: 2*fill*4096 + 30*8192 + 435 + 16384 + 20480 + 2*4096})

	overwrite(t, p("d0/f03"), 0, randomBytes(300, 4096))
	writeFile(t, p("d1/new"), randomBytes(301, 4096))
	if err := os.Remove(p("d2/f05")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("moved/from"), p("moved/to/from")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, p("one/x"), unix.AT_FDCWD, p("two/x"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	// Only the directories that changed are walked (see TestPartWalk):
	// d1, d2, moved and one and two with all below them. Their files are
	// taken as listed, but for those stat'ed: the new one, the one moved
	// and the three swapped are found renamed. The one changed in d0 is
	// looked at where the index has it.
	run(mnt, counts{seen: n, hashed: 2, unchanged: n - 2, renamed: 4, pruned: 1, part: 1, listed: -1, read: 2 * 4096})

	// Another owner: the file's identity changes (ctime), not its data.
	if err := os.Chown(p("d1/f04"), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	// A row marked gone by a run that did not complete, its file there.
	if _, err := openRaw(t, db).Exec("UPDATE files SET gone = 1 WHERE path = ?", p("d1/f07")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("d2/new"), randomBytes(302, 4096))
	testfs.Run(t, "sync")
	run(mnt, counts{seen: n + 1, hashed: 2, reused: 1, unchanged: n - 1, part: 1, listed: -1, read: 4096})

	// A balance moves every data extent without rewriting an inode
	// item: no file is taken as listed, each has its extents recorded
	// again.
	testfs.Run(t, "btrfs", "balance", "start", "-d", mnt)
	writeFile(t, p("d2/newer"), randomBytes(304, 4096))
	testfs.Run(t, "sync")
	run(mnt, counts{seen: n + 2, hashed: 1, unchanged: n + 1, remapped: n + 1, part: 1, read: 4096})

	// A root inside the subvolume: its own last walk is the one to go by.
	overwrite(t, p("d1/f01"), 0, randomBytes(305, 4096))
	testfs.Run(t, "sync")
	run(p("d1"), counts{seen: 11, hashed: 1, unchanged: 10, read: 4096})
	writeFile(t, p("d1/another"), randomBytes(306, 4096))
	testfs.Run(t, "sync")
	run(p("d1"), counts{seen: 12, hashed: 1, unchanged: 11, listed: 11, read: 4096})
	// Nothing changed since: the subvolume's generation is the same, and
	// the root is left unwalked, its rows counted.
	run(p("d1"), counts{seen: 12, unchanged: 12, roots: 1})
	// Nor is a file that changes then missed; no directory changed, and
	// the root is skimmed, as a subvolume is.
	overwrite(t, p("d1/f04"), 0, randomBytes(307, 4096))
	testfs.Run(t, "sync")
	run(p("d1"), counts{seen: 12, hashed: 1, unchanged: 11, rootsSkimmed: 1, listed: 11, read: 4096})
}

// openRaw opens the index db with database/sql, closed when the test ends.
func openRaw(t *testing.T, db string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// TestMountInSubvolume checks that a filesystem mounted below a btrfs
// subvolume is walked when the subvolume is unchanged since its last
// walk: the subvolume's generation does not show what changes in it,
// and its files were once pruned from the index by the run that left
// the subvolume unwalked. A file mounted over one of the subvolume's is
// the one recorded at that path, although the directory lists the one
// below it.
func TestMountInSubvolume(t *testing.T) {
	mnt, _, p := noatimeLive(t)
	writeFile(t, p("a"), randomBytes(1, 100000))
	xfs := testfs.Mount(t, "xfs", "300M")
	writeFile(t, filepath.Join(xfs, "x"), randomBytes(2, 50000))
	if err := os.Mkdir(p("data"), 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	testfs.Run(t, "mount", "--bind", xfs, p("data"))
	t.Cleanup(func() { exec.Command("umount", p("data")).Run() })
	db := filepath.Join(t.TempDir(), "index.db")
	run := func(want counts) {
		t.Helper()
		runChecked(t, db, mnt, want, mnt)
	}
	run(counts{seen: 2, hashed: 2, read: 150000})
	// live is unchanged, but walked, its file as listed.
	run(counts{seen: 2, unchanged: 2, listed: 1})
	writeFile(t, filepath.Join(xfs, "y"), randomBytes(3, 4096))
	testfs.Run(t, "sync")
	run(counts{seen: 3, hashed: 1, unchanged: 2, listed: 1, read: 4096})

	// A file mounted over a's path: its directory lists a, the walk
	// meets the other (met again in data, a link), which takes a's place
	// in the index.
	writeFile(t, filepath.Join(xfs, "over"), randomBytes(4, 8192))
	testfs.Run(t, "mount", "--bind", filepath.Join(xfs, "over"), p("a"))
	t.Cleanup(func() { exec.Command("umount", p("a")).Run() })
	run(counts{seen: 4, hashed: 1, unchanged: 2, links: 1, pruned: 1, read: 8192})
}

// TestRootsUnchanged gives read-only snapshots as roots, as a host that
// names each snapshot does: one unchanged since its last walk is left
// unwalked, its rows counted, while the subvolume that changed is walked.
func TestRootsUnchanged(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	for i := range 6 {
		writeFile(t, p(fmt.Sprintf("d/f%d", i)), randomBytes(uint64(400+i), 8192))
	}
	if err := os.Mkdir(p("m"), 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	snaps := []string{filepath.Join(mnt, "s1"), filepath.Join(mnt, "s2")}
	for _, s := range snaps {
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, s)
	}
	db := filepath.Join(t.TempDir(), "index.db")
	roots := append(slices.Clone(snaps), live)
	run := func(want counts) {
		t.Helper()
		runChecked(t, db, mnt, want, roots...)
	}
	run(counts{seen: 18, hashed: 18, reused: 12, read: 6 * 8192})
	// A file written in place in live, no directory changed: live, a
	// root, is skimmed, not walked.
	overwrite(t, p("d/f0"), 0, randomBytes(500, 4096))
	testfs.Run(t, "sync")
	run(counts{seen: 18, hashed: 1, unchanged: 17, listed: 5, roots: 2, skimmed: 1, read: 4096})
	run(counts{seen: 18, unchanged: 18, roots: 3})

	// A filesystem mounted below live: its generation does not show it,
	// and live is walked (its own files as listed).
	xfs := testfs.Mount(t, "xfs", "300M")
	writeFile(t, filepath.Join(xfs, "x"), randomBytes(501, 4096))
	testfs.Run(t, "mount", "--bind", xfs, p("m"))
	t.Cleanup(func() { exec.Command("umount", p("m")).Run() })
	run(counts{seen: 19, hashed: 1, unchanged: 18, listed: 6, roots: 2, read: 4096})
}

// TestRetryFailed checks that a file that fails every night (here a path
// too long to look up; on hosts, a bad sector, or a file in use) no
// longer keeps a run from recording its walk: the next run, with nothing
// changed, walks only below the directory that holds it and reports it
// again, as does the first run of a snapshot taken since; once it is
// gone, that directory is not walked again.
func TestRetryFailed(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	partWalkTree(t, p)
	deep, far := tooLong(t, p("deep"))
	dir, err := unix.Open(deep, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	snaps := filepath.Join(mnt, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")

	// runOn checks that hashfile on root fails with exactly the error for
	// far in each tree, and the summary want.
	runOn := func(db, root string, want counts, trees ...string) {
		t.Helper()
		var fars []string
		for _, tree := range trees {
			fars = append(fars, tree+strings.TrimPrefix(far, live))
		}
		failsTooLong(t, db, root, want, fars...)
	}
	run := func(want counts, trees ...string) {
		t.Helper()
		runOn(db, mnt, want, trees...)
	}
	// retriedIn checks the directories index db has to walk again.
	retriedIn := func(db string, want ...string) {
		t.Helper()
		if got := retriedDirs(t, db); !slices.Equal(got, want) {
			t.Errorf("directories to walk again = %q; want %q", got, want)
		}
	}
	retried := func(want ...string) {
		t.Helper()
		retriedIn(db, want...)
	}

	run(counts{seen: 10, hashed: 9, links: 1, failed: 1, read: 9 * 8 << 10}, live)
	retried(deep)
	var walked int
	var rootWalked string
	raw := openRaw(t, db)
	if err := raw.QueryRow("SELECT count(*) FROM volumes WHERE walked != ''").Scan(&walked); err != nil || walked != 1 {
		t.Errorf("%d walks of subvolumes recorded (%v); want 1, live's", walked, err)
	}
	if err := raw.QueryRow("SELECT walked FROM roots WHERE path = ?", mnt).Scan(&rootWalked); err != nil || rootWalked == "" {
		t.Errorf("the walk of %s is not recorded (%q, %v)", mnt, rootWalked, err)
	}

	// Nothing changed: live is walked only below deep, where far fails
	// again; the rest is as the index has it.
	run(counts{seen: 9, unchanged: 9, failed: 1, part: 1, listed: 1}, live)
	retried(deep)

	// A root inside live, not its top: its walk is recorded with the
	// root, and the next run walks again only below deep there too.
	inner, innerDB := p("deep"), filepath.Join(t.TempDir(), "inner.db")
	runOn(innerDB, inner, counts{seen: 1, hashed: 1, failed: 1, read: 8 << 10}, live)
	retriedIn(innerDB, deep)
	runOn(innerDB, inner, counts{seen: 1, unchanged: 1, failed: 1, rootsPart: 1, listed: 1}, live)
	retriedIn(innerDB, deep)

	// A snapshot of live: its files taken from live's rows, and walked
	// below deep there too.
	snap := filepath.Join(snaps, "1")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	testfs.Run(t, "sync")
	run(counts{seen: 18, hashed: 9, reused: 9, copied: 9, unchanged: 9, failed: 2, part: 2, listed: -1}, live, snap)
	snapDeep := snap + strings.TrimPrefix(deep, live)
	retried(deep, snapDeep)

	// Gone from live: only the snapshot's is left to walk again.
	if err := unix.Unlinkat(dir, filepath.Base(far), 0); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	run(counts{seen: 18, unchanged: 18, failed: 1, part: 2, listed: -1}, snap)
	retried(snapDeep)
	if _, ok := indexed(t, db)[filepath.Join(deep, "near")]; !ok {
		t.Errorf("%s is not indexed", filepath.Join(deep, "near"))
	}

	// The snapshot deleted: nothing fails, and its directory to walk
	// again goes with its files.
	testfs.Run(t, "btrfs", "subvolume", "delete", snap)
	testfs.Run(t, "sync")
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 9, unchanged: 9, pruned: 9, subvols: 1})
	retried()
}

// failsTooLong runs hashfile -db db root and checks that it exits with
// status 3, having reported exactly the error of each path in fars, too
// long to look up (see runTooLong), and the summary want.
func failsTooLong(t *testing.T, db, root string, want counts, fars ...string) {
	t.Helper()
	checkSummary(t, runTooLong(t, db, root, fars...), want)
}

// runTooLong runs hashfile -db db root and checks that it exits with
// status 3, having reported exactly the error of each path in fars, too
// long to look up; it returns what hashfile wrote to standard error.
func runTooLong(t *testing.T, db, root string, fars ...string) string {
	t.Helper()
	_, stderr, err := hashfile(t, "", "-db", db, root)
	if cli.Status(err) != cli.ExitPartial {
		t.Fatalf("hashfile = %v; want exit status %d\n%s", err, cli.ExitPartial, stderr)
	}
	var wantErrs []string
	for _, far := range fars {
		wantErrs = append(wantErrs, fmt.Sprintf("hashfile: lstat %s: file name too long", far))
	}
	slices.Sort(wantErrs)
	if errs := errorLines(stderr); !slices.Equal(errs, wantErrs) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
	}
	return stderr
}

// retriedDirs returns the paths of the directories index db has to walk
// again, sorted.
func retriedDirs(t *testing.T, db string) []string {
	t.Helper()
	rows, err := openRaw(t, db).Query("SELECT path FROM retry ORDER BY path")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var path string
		if err := rows.Scan(&path); err != nil {
			t.Fatal(err)
		}
		got = append(got, path)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRetrySwapped checks that a directory kept to walk again, which its
// owner (another user) trades places with a symbolic link to a directory outside the
// root (renameat2 RENAME_EXCHANGE) after the run listed their parent and
// before it opens the directory (walk.Fault), does not lead hashfile out
// of the root: the run reports the directory, indexes nothing from
// outside, keeps the rows of what it holds and walks its parent again
// next time. The next run finds the directory under the link's name,
// where far is not too long; and with the two traded back, the run after
// that fails on far again, as the first did.
func TestRetrySwapped(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	partWalkTree(t, p)
	deep, far := tooLong(t, p("deep"))
	bait := filepath.Join(mnt, "bait")
	writeFile(t, filepath.Join(bait, "secret"), randomBytes(42, 8<<10))
	link := filepath.Join(filepath.Dir(deep), "link")
	if err := os.Symlink(bait, link); err != nil {
		t.Fatal(err)
	}
	// The owner is another user: the directory holding the two is hers,
	// and she exchanges them with her own credentials.
	owner := filepath.Dir(deep)
	allowTraverse(t, owner)
	if err := os.Chown(owner, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	exchange := func() {
		if err := asUser(nobody, func() error {
			return unix.Renameat2(unix.AT_FDCWD, deep, unix.AT_FDCWD, link, unix.RENAME_EXCHANGE)
		}); err != nil {
			t.Errorf("exchange %s and %s as user %d: %v", deep, link, nobody, err)
		}
	}
	// check checks that the index holds exactly the files of live but
	// far, those of the directory that holds it named below dir, and that
	// it has to walk again exactly the directories retry.
	check := func(dir string, retry ...string) {
		t.Helper()
		more := []string{filepath.Join(dir, "near")}
		if dir != deep {
			more = append(more, filepath.Join(dir, filepath.Base(far)))
		}
		checkPartWalkTree(t, db, p, more...)
		if got := retriedDirs(t, db); !slices.Equal(got, retry) {
			t.Errorf("directories to walk again = %q; want %q", got, retry)
		}
	}
	failsTooLong(t, db, live, counts{seen: 10, hashed: 9, links: 1, skipped: 1, failed: 1, read: 9 * 8 << 10}, far)
	check(deep, deep)

	// run runs hashfile on live and checks that it reports exactly the
	// errors errs (exiting with status 3 if any) and the summary want.
	run := func(want counts, errs ...string) {
		t.Helper()
		_, stderr, err := hashfile(t, "", "-db", db, live)
		if status := cli.Status(err); (len(errs) > 0) != (status == cli.ExitPartial) || (len(errs) == 0 && err != nil) {
			t.Errorf("hashfile = %v with errors %q\n%s", err, errs, stderr)
		}
		slices.Sort(errs)
		if got := errorLines(stderr); !slices.Equal(got, errs) {
			t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(errs, "\n"))
		}
		checkSummary(t, stderr, want)
	}
	var once sync.Once
	walk.Fault = func(path string) {
		if path == deep {
			once.Do(exchange)
		}
	}
	t.Cleanup(func() { walk.Fault = nil })
	// O_NOFOLLOW|O_DIRECTORY: the link is not a directory. The directory
	// that held it is walked again.
	run(counts{seen: 8, unchanged: 8, failed: 1, part: 1}, "hashfile: open "+deep+": not a directory")
	walk.Fault = nil
	check(deep, filepath.Dir(deep))

	// near is found renamed, and far is not too long there.
	run(counts{seen: 10, hashed: 1, unchanged: 9, renamed: 1, skipped: 1, part: 1, read: 8 << 10})
	check(link)

	exchange()
	testfs.Run(t, "sync")
	run(counts{seen: 9, unchanged: 9, renamed: 1, skipped: 1, failed: 1, pruned: 1, part: 1}, "hashfile: lstat "+far+": file name too long")
	check(deep, deep)
}

// asUser calls fn on an OS thread of its own that has the user and group
// id (and no other groups) of uid, as a process of that user would; the
// thread ends with it. (setresuid and setgroups as raw system calls
// change the calling thread alone, where Go's wrappers change them all.)
func asUser(uid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is not reused
		for _, call := range [][4]uintptr{
			{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(uid), uintptr(uid), uintptr(uid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)},
		} {
			if _, _, errno := unix.RawSyscall(call[0], call[1], call[2], call[3]); errno != 0 {
				errc <- errno
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// tooLong makes below top directories nested until a name of 250 bytes
// no longer fits in PATH_MAX (4096 with its NUL) below them, the deepest
// holding a file "near" and one whose path is too long, far.
func tooLong(t *testing.T, top string) (deep, far string) {
	t.Helper()
	deep = top
	for len(deep) < 4096-250 {
		deep = filepath.Join(deep, strings.Repeat("d", 200))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(deep, "near"), randomBytes(40, 8<<10))
	far = filepath.Join(deep, strings.Repeat("f", 250))
	if len(far) < 4096 {
		t.Fatalf("%d bytes: not too long", len(far))
	}
	dir, err := unix.Open(deep, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	f, err := unix.Openat(dir, filepath.Base(far), unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, err = unix.Write(f, randomBytes(41, 8<<10))
	unix.Close(f)
	if err != nil {
		t.Fatal(err)
	}
	return deep, far
}

// TestRetryMoved checks that a directory to walk again is found by its
// inode, wherever its owner moved it, and never by the path it had: the
// next run, after the directory was renamed and a symbolic link to a
// directory outside the root put in its place, reports the file that
// fails at its new path, walks nothing through the link, and keeps the
// directory to walk again under its new path.
func TestRetryMoved(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	partWalkTree(t, p)
	deep, far := tooLong(t, p("deep"))
	bait := filepath.Join(mnt, "bait")
	writeFile(t, filepath.Join(bait, "secret"), randomBytes(42, 8<<10))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")

	// run checks that hashfile on live fails with exactly the error for
	// far, and the summary want; and that the index then has to walk
	// again the directory that holds far, and no other.
	run := func(far string, want counts) {
		t.Helper()
		failsTooLong(t, db, live, want, far)
		if got, want := retriedDirs(t, db), filepath.Dir(far); !slices.Equal(got, []string{want}) {
			t.Errorf("directories to walk again = %q; want [%q]", got, want)
		}
		// Every file of live but far, and nothing else.
		checkPartWalkTree(t, db, p, filepath.Join(filepath.Dir(far), "near"))
	}
	run(far, counts{seen: 10, hashed: 9, links: 1, failed: 1, read: 9 * 8 << 10})

	// The owner renames the directory that holds far and puts in its
	// place a link to a directory outside live.
	moved := filepath.Join(filepath.Dir(deep), strings.Repeat("m", 200))
	if err := os.Rename(deep, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bait, deep); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	movedFar := filepath.Join(moved, filepath.Base(far))
	// near is renamed with the directory; the link is not followed.
	run(movedFar, counts{seen: 9, unchanged: 9, renamed: 1, skipped: 1, failed: 1, part: 1})
	// Nothing changed: the directory is walked again where it is now.
	run(movedFar, counts{seen: 9, unchanged: 9, failed: 1, part: 1, listed: 1})
}

// TestSnapshotMadeDuringWalk checks a read-only snapshot made while its
// origin's walk was under way, after the walk began: a file of the
// origin changed after the snapshot was made and before the walk met it
// is recorded as changed, while the snapshot holds it as it was, in tree
// leaves no newer than the walk's start. The next run must not take the
// origin's rows for the snapshot's files (it took z/f's, with the wrong
// identity and sums, before each walk recorded the generation its run
// ended at): the snapshot is walked, its files compared one by one.
// One made after that run ended is recorded from the origin's rows.
func TestSnapshotMadeDuringWalk(t *testing.T) {
	mnt, live, p := noatimeLive(t)
	// Enough files that z/f's items lie in a tree leaf of their own,
	// which nothing rewrites before the snapshot is made.
	for i := range 400 {
		writeFile(t, p(fmt.Sprintf("a/f%03d", i)), randomBytes(uint64(10+i), 4096))
	}
	writeFile(t, p("z/f"), randomBytes(2, 8192))
	testfs.Run(t, "sync")
	// Before live in the walk's order: the walk has passed it when the
	// snapshot is made.
	snaps := filepath.Join(mnt, "a-snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	walk.Fault = func(path string) {
		if path == p("z") {
			once.Do(func() {
				testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(snaps, "s1"))
				overwrite(t, p("z/f"), 0, randomBytes(3, 8192))
				testfs.Run(t, "sync")
			})
		}
	}
	t.Cleanup(func() { walk.Fault = nil })
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	walk.Fault = nil
	checkTree(t, db, live)
	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", mnt, err, stderr)
	}
	// s1's files: z/f read, the others as the rows of live have them.
	checkSummary(t, stderr, counts{seen: 802, hashed: 401, reused: 400, unchanged: 401, listed: -1, skimmed: 1, read: 8192})
	checkTree(t, db, snaps)

	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(snaps, "s2"))
	_, stderr, err = hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", mnt, err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 1203, hashed: 401, reused: 401, copied: 401, unchanged: 802, subvols: 1, skimmed: 2, read: 0})
	checkTree(t, db, snaps)
}

// TestSnapshotReceived goes through the nights of a backup host that
// receives its snapshots (btrfs send | btrfs receive, as btrbk does):
// each incremental snapshot is made as a snapshot of its parent there and
// the stream then applied to it, so it has changed since it was made. Its
// files are recorded from its parent's rows all the same, and those the
// stream changed, renamed, linked, replaced or deleted are found: every
// row is then what reading the file gives, and what a fresh index holds.
func TestSnapshotReceived(t *testing.T) {
	src := testfs.Mount(t, "btrfs", "256M")
	dst := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, src)
	for i := range 30 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%3, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("same-size"), randomBytes(200, 16384))
	writeFile(t, p("grows"), randomBytes(201, 12288))
	writeFile(t, p("shrinks"), randomBytes(202, 20000))
	writeFile(t, p("mv-from"), randomBytes(203, 9000))
	writeFile(t, p("dir-from/x"), randomBytes(204, 7000))
	writeFile(t, p("rm"), randomBytes(205, 9000))
	writeFile(t, p("rm-dir/y"), randomBytes(206, 5000))
	writeFile(t, p("becomes-dir"), randomBytes(207, 6000))
	writeFile(t, p("small"), []byte("inline data\n"))
	db := receiveFirst(t, src, dst, live)

	// A day on the sending host: each kind of change a stream carries.
	sameSize := filepath.Join(src, "snaps", "s1", "same-size")
	overwrite(t, p("same-size"), 4096, randomBytes(300, 4096))
	testfs.Run(t, "touch", "-r", sameSize, p("same-size")) // its mtime as before
	f, err := os.OpenFile(p("grows"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randomBytes(301, 5000)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(p("shrinks"), 4096); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][2]string{{"mv-from", "d1/mv-to"}, {"dir-from", "dir-to"}} {
		if err := os.Rename(p(mv[0]), p(mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, rm := range []string{"rm", "rm-dir", "becomes-dir"} {
		if err := os.RemoveAll(p(rm)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, p("becomes-dir/z"), randomBytes(302, 6000))
	if err := os.Link(p("d0/f00"), p("d2/f00-link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("new"), randomBytes(303, 8192))
	testfs.Run(t, "cp", "--reflink=always", p("d0/f03"), p("d0/f03-copy"))
	testfs.Run(t, "sync")
	sendSnapshot(t, src, dst, live, "s2", "s1")
	s2 := filepath.Join(dst, "received", "s2")
	sn := snapshotInfo(t, s2)
	if !sn.ReadOnly || sn.Changed <= sn.Made {
		t.Fatalf("received %s: read-only %v, changed at %d, made at %d: want one changed since it was made", s2, sn.ReadOnly, sn.Changed, sn.Made)
	}

	_, stderr, err := hashfile(t, "", "-db", db, dst)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// s2's 40 names: 30 files as s1's rows have them; mv-to and dir-to/x
	// renamed; d2/f00-link a link to d0/f00, whose inode changed with it,
	// recorded again from its extents, as shrinks is and d0/f03-copy is
	// from d0/f03's; of same-size and grows only what s1's files do not
	// hold read (4096 and 5000 bytes), becomes-dir/z and new whole (6000
	// and 8192 bytes). The rows of rm, rm-dir/y and the file becomes-dir
	// copied, and pruned. s1, whose tree the snapshot made of it wrote,
	// is looked at where files changed.
	checkSummary(t, stderr, counts{seen: 79, hashed: 37, reused: 33, copied: 30, unchanged: 41, renamed: 2, links: 1, pruned: 3,
		skimmed: 1, read: 4096 + 5000 + 6000 + 8192})
	checkTree(t, db, dst)
	checkExtents(t, db, dst)
	checkAsFresh(t, db, dst)

	_, stderr, err = hashfile(t, "", "-db", db, dst)
	if err != nil {
		t.Fatalf("hashfile again = %v\n%s", err, stderr)
	}
	checkSummary(t, stderr, counts{seen: 78, unchanged: 78, subvols: 2})
}

// TestSnapshotReceivedInPart receives a snapshot whose stream changed
// files in two directories, and added and removed entries there alone.
// btrfs receive writes the times of the snapshot's top directory too,
// whose entries are those of the snapshot before: the snapshot is walked
// only below the two directories, and the files there go as listed but
// for those that changed.
func TestSnapshotReceivedInPart(t *testing.T) {
	src := testfs.Mount(t, "btrfs", "256M")
	dst := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, src)
	for i := range 30 {
		writeFile(t, p(fmt.Sprintf("d%d/f%02d", i%3, i)), randomBytes(uint64(100+i), 8192+i))
	}
	db := receiveFirst(t, src, dst, live)

	overwrite(t, p("d0/f00"), 4096, randomBytes(300, 4096))
	writeFile(t, p("d1/new"), randomBytes(301, 8192))
	if err := os.Remove(p("d2/f02")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	sendSnapshot(t, src, dst, live, "s2", "s1")
	top, err := os.Stat(filepath.Join(dst, "received", "s2"))
	if err != nil {
		t.Fatal(err)
	}
	if made := snapshotInfo(t, filepath.Join(dst, "received", "s2")).Made; top.ModTime().Before(time.Now().Add(-time.Hour)) || made == 0 {
		t.Fatalf("received s2: top directory's mtime %v, made at %d", top.ModTime(), made)
	}

	_, stderr, err := hashfile(t, "", "-db", db, dst)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// s1's 30 files as the index has them (s1 looked at only where files
	// changed). s2's 28 others as s1's rows have them: 19 as d1 and d2,
	// the two directories walked, list them, and 9 in d0, not walked, as
	// the tree search shows them. d0/f00 read where s1's file does not
	// hold it, d1/new read whole, the row of d2/f02 pruned.
	checkSummary(t, stderr, counts{seen: 60, hashed: 30, reused: 28, copied: 28, unchanged: 30, pruned: 1,
		skimmed: 1, part: 1, listed: 30 + 19 + 9, read: 4096 + 8192})
	checkTree(t, db, dst)
	checkExtents(t, db, dst)
	checkAsFresh(t, db, dst)
}

// TestSnapshotWrittenReusesInode takes a read-only snapshot written
// after it was made, before it was made read-only, whose origin deleted
// its newest file after the origin's walk and before the snapshot: the
// snapshot's own new file then takes that file's inode number, and the
// origin's row of it, copied into the snapshot, names a path the file is
// not at. The row ends as what reading the file gives.
func TestSnapshotWrittenReusesInode(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	live, p := liveSubvol(t, mnt)
	for i := range 10 {
		writeFile(t, p(fmt.Sprintf("d/f%02d", i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("last"), randomBytes(200, 12000))
	testfs.Run(t, "sync")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, mnt); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	last := identity(t, p("last")).Ino
	if err := os.Remove(p("last")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", live, snap)
	other := filepath.Join(snap, "d", "other")
	writeFile(t, other, randomBytes(201, 12000))
	if got := identity(t, other).Ino; got != last {
		t.Fatalf("the snapshot's new file has inode %d; want %d, the number of the file its origin deleted", got, last)
	}
	testfs.Run(t, "sync")
	testfs.Run(t, "btrfs", "property", "set", "-ts", snap, "ro", "true")

	_, stderr, err := hashfile(t, "", "-db", db, mnt)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// The snapshot's 10 other files as live's rows have them, other read;
	// the row of last copied, and pruned.
	checkSummary(t, stderr, counts{seen: 21, hashed: 11, reused: 10, copied: 10, unchanged: 10, pruned: 1, listed: -1, read: 12000})
	checkTree(t, db, mnt)
	checkExtents(t, db, mnt)
	checkAsFresh(t, db, mnt)
}

// snapshotInfo describes the btrfs subvolume at path.
func snapshotInfo(t *testing.T, path string) fsys.Snapshot {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sn, err := fsys.SnapshotOf(f)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// checkAsFresh checks that the rows of db under root are those a fresh
// index of root holds: the same paths, inodes, sizes, times and sums.
func checkAsFresh(t *testing.T, db, root string) {
	t.Helper()
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	if _, stderr, err := hashfile(t, "", "-db", fresh, root); err != nil {
		t.Fatalf("hashfile of a fresh index = %v\n%s", err, stderr)
	}
	rows := func(db string) []string {
		raw := openRaw(t, db)
		r, err := raw.Query("SELECT path, ino, size, mtime, ctime FROM files ORDER BY path")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var path string
			var ino, size, mtime, ctime int64
			if err := r.Scan(&path, &ino, &size, &mtime, &ctime); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s ino %d size %d mtime %d ctime %d", path, ino, size, mtime, ctime))
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := rows(db), rows(fresh); !slices.Equal(got, want) {
		t.Errorf("rows:\n%s\nwant, as a fresh index holds them:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestReceivedFirstRun hashes a backup host's snapshots received one
// after the other (btrfs send | btrfs receive, each incremental from the
// one before): each is made as a snapshot of the one received before it,
// read-only by then, and then written. A snapshot met for the first time
// whose origin's walk is no use to it (s3, made before s2 was walked)
// takes s2's rows for the files that the stream left alone, without
// opening them, as a snapshot takes an older sibling's. Where s2 changed
// after s3 was made (deduplicated into, here), s3 takes nothing from it.
// Every row is then what reading the file gives, its extents what FIEMAP
// gives.
func TestReceivedFirstRun(t *testing.T) {
	for _, changed := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin-changed=%v", changed), func(t *testing.T) { testReceivedFirstRun(t, changed) })
	}
}

func testReceivedFirstRun(t *testing.T, changed bool) {
	src := testfs.Mount(t, "btrfs", "512M")
	dst := testfs.Mount(t, "btrfs", "512M")
	live, p := liveSubvol(t, src)
	const n = 300
	for i := range n {
		writeFile(t, p(fmt.Sprintf("d%02d/f%03d", i%10, i)), randomBytes(uint64(100+i), 8192+i))
	}
	writeFile(t, p("d00/f000-copy"), randomBytes(100, 8192))
	testfs.Run(t, "sync")
	for _, d := range []string{filepath.Join(src, "snaps"), filepath.Join(dst, "received")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	received := func(name string) string { return filepath.Join(dst, "received", name) }
	sendSnapshot(t, src, dst, live, "s1", "")
	overwrite(t, p("d01/f001"), 0, randomBytes(1, 4096))
	writeFile(t, p("d02/new"), randomBytes(2, 8192))
	testfs.Run(t, "sync")
	sendSnapshot(t, src, dst, live, "s2", "s1")
	overwrite(t, p("d03/f003"), 0, randomBytes(3, 4096))
	if err := os.Remove(p("d04/f004")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	sendSnapshot(t, src, dst, live, "s3", "s2")
	if changed {
		// s2, deduplicated into after s3 was made of it: its extents are
		// no longer those s3's files have.
		dedupe(t, filepath.Join(received("s2"), "d00/f000"), filepath.Join(received("s2"), "d00/f000-copy"), 8192)
	}
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, received("s1"), received("s2")); err != nil {
		t.Fatalf("hashfile s1 s2 = %v\n%s", err, stderr)
	}

	_, stderr, err := hashfile(t, "", "-db", db, dst)
	if err != nil {
		t.Fatalf("hashfile %s = %v\n%s", dst, err, stderr)
	}
	// s3's 301 files but the one overwritten take s2's rows; none where
	// s2 changed after.
	m := regexp.MustCompile(` (\d+) as recorded in the subvolume snapshotted\),.* 0 failed,`).FindStringSubmatch(stderr)
	switch {
	case changed && m != nil:
		t.Errorf("files recorded from the snapshot received before, changed since: %s; want none\n%s", m[1], stderr)
	case !changed && (m == nil || m[1] != "300"):
		t.Errorf("files recorded from the snapshot received before: %v; want 300\n%s", m, stderr)
	}
	checkTree(t, db, dst)
	for _, s := range []string{"s1", "s2", "s3"} {
		checkExtents(t, db, received(s))
	}
}

// receiveFirst sends live's first read-only snapshot, s1, from the btrfs
// at src to the one at dst (into dst/received, with snaps and received
// made beside live), and returns an index that hashfile then filled from
// dst.
func receiveFirst(t *testing.T, src, dst, live string) string {
	t.Helper()
	testfs.Run(t, "sync")
	for _, s := range []string{"snaps", "received"} {
		if err := os.Mkdir(filepath.Join(filepath.Dir(live), s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dst, "received"), 0o755); err != nil {
		t.Fatal(err)
	}
	sendSnapshot(t, src, dst, live, "s1", "")
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, err := hashfile(t, "", "-db", db, dst); err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	return db
}

// sendSnapshot takes the read-only snapshot src/snaps/name of live and
// receives it into dst/received, incremental from src/snaps/parent where
// parent is not "".
func sendSnapshot(t *testing.T, src, dst, live, name, parent string) {
	t.Helper()
	snap := filepath.Join(src, "snaps", name)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	if parent != "" {
		parent = filepath.Join(src, "snaps", parent)
	}
	testfs.Receive(t, snap, parent, filepath.Join(dst, "received"))
}
