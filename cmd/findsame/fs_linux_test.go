package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fsys"
	"same/internal/testfs"
)

// mountXFSNoReflink mounts an XFS made without reflink, which testfs does
// not make, and returns its mount point.
func mountXFSNoReflink(t *testing.T) string {
	t.Helper()
	if !testfs.Root() {
		t.Skip("needs root to loop-mount XFS: skipped")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs -m reflink=0: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// Files on filesystems that cannot deduplicate are not planned, and each
// such filesystem is named once; those on btrfs are planned as ever.
func TestCannotDedupe(t *testing.T) {
	ext4 := testfs.Mount(t, "ext4", "64M")
	xfs := mountXFSNoReflink(t)
	btrfs := testfs.Mount(t, "btrfs", "512M")
	db := filepath.Join(t.TempDir(), "index.db")
	for _, mnt := range []string{ext4, xfs, btrfs} {
		writeTree(t, filepath.Join(mnt, "tree"))
		hashTree(t, db, filepath.Join(mnt, "tree"))
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-db", db, "-q"}, nil, &out, &errb); err != nil {
		t.Fatalf("findsame: %v\n%s", err, errb.String())
	}
	want := "findsame: ext4 at " + ext4 + " cannot deduplicate: skipped\n" +
		"findsame: xfs at " + xfs + " cannot deduplicate: skipped\n"
	if errb.String() != want {
		t.Errorf("stderr = %q; want %q", errb.String(), want)
	}
	if strings.Contains(out.String(), ext4) || strings.Contains(out.String(), xfs) {
		t.Errorf("plan names files on ext4 or XFS without reflink:\n%s", out.String())
	}
	if !strings.Contains(out.String(), filepath.Join(btrfs, "tree", "copies", "a1")) {
		t.Errorf("plan lost the copies on btrfs:\n%s", out.String())
	}
}

// A filesystem mounted read-only (a backup disk, or a btrfs that an error
// made read-only), where every line would fail with EROFS, is left out
// and named once, by its mount point rather than the subvolume its first
// file is in; one mounted read-write is planned as ever, and so is the
// first once mounted read-write again. A read-only snapshot on a
// writable mount is planned.
func TestReadOnlyMount(t *testing.T) {
	ro := testfs.Mount(t, "btrfs", "512M")
	rw := testfs.Mount(t, "btrfs", "512M")
	db := filepath.Join(t.TempDir(), "index.db")
	for _, mnt := range []string{ro, rw} {
		writeTree(t, filepath.Join(mnt, "tree"))
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", mnt, filepath.Join(mnt, "snap"))
		hashTree(t, db, mnt)
	}
	testfs.Run(t, "mount", "-o", "remount,ro", ro)
	plan, stderr := findsameOn(t, db, "-q")
	if want := "findsame: btrfs at " + ro + " is mounted read-only and cannot deduplicate: skipped\n"; stderr != want {
		t.Errorf("stderr = %q; want %q", stderr, want)
	}
	if strings.Contains(plan, ro+"/") {
		t.Errorf("plan names files on the read-only mount:\n%s", plan)
	}
	for _, f := range []string{filepath.Join(rw, "tree", "copies", "a1"), filepath.Join(rw, "snap", "tree", "copies", "a1")} {
		if !strings.Contains(plan, f) {
			t.Errorf("plan lost %s:\n%s", f, plan)
		}
	}

	testfs.Run(t, "mount", "-o", "remount,rw", ro)
	plan, stderr = findsameOn(t, db, "-q")
	if stderr != "" || !strings.Contains(plan, filepath.Join(ro, "tree", "copies", "a1")) {
		t.Errorf("mounted read-write again: stderr %q, plan\n%s\nwant no warning, and the copies planned", stderr, plan)
	}
}

// With its index on a full filesystem, findsame plans as it does with
// room: the table of sums and the extents it keeps beside the index are
// left as they were, with a warning. Temporary files in a full -tmpdir fail the run, saying
// where and what to do.
func TestIndexFull(t *testing.T) {
	btrfs := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(btrfs, "tree")
	writeTree(t, dir)
	idx := testfs.Mount(t, "ext4", "32M")
	db := filepath.Join(idx, "index.db")
	hashTree(t, db, dir)
	findsame := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"-db", db}, args...), nil, &out, &errb)
		return out.String(), errb.String(), err
	}
	want, stderr, err := findsame()
	if err != nil || want == "" {
		t.Fatalf("findsame with room: %v, plan %q\n%s", err, want, stderr)
	}
	table, err := os.ReadFile(db + "-sums")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := os.ReadFile(db + "-sums.extents")
	if err != nil {
		t.Fatal(err)
	}

	testfs.Fill(t, idx, 0)
	for _, args := range [][]string{nil, {"-full"}} {
		plan, stderr, err := findsame(args...)
		if err != nil {
			t.Fatalf("findsame %v on a full disk: %v\n%s", args, err, stderr)
		}
		if plan != want {
			t.Errorf("findsame %v on a full disk planned\n%s\nwant\n%s", args, plan, want)
		}
		if !strings.Contains(stderr, ": no space left on device: the next run groups every sum again\n") {
			t.Errorf("findsame %v on a full disk: stderr %q; want a warning that the table of sums was not written", args, stderr)
		}
		if got, err := os.ReadFile(db + "-sums"); err != nil || !bytes.Equal(got, table) {
			t.Errorf("findsame %v on a full disk: table of sums changed (%v)", args, err)
		}
		// -full reads every extent from the index, and fails to keep them.
		if warned := strings.Contains(stderr, ": no space left on device: the next run reads every extent from the index\n"); warned != (args != nil) {
			t.Errorf("findsame %v on a full disk: stderr %q; want a warning that the extents were not kept: %v", args, stderr, args != nil)
		}
		if got, err := os.ReadFile(db + "-sums.extents"); err != nil || !bytes.Equal(got, kept) {
			t.Errorf("findsame %v on a full disk: kept extents changed (%v)", args, err)
		}
	}

	// The sums go to temporary files when they do not fit in -mem.
	_, stderr, err = findsame("-mem", "64", "-no-keep", "-tmpdir", idx)
	if msg := "write a temporary file in " + idx + ": no space left on device: the sums and mappings that do not fit in -mem take up to 16 bytes a block there; free some space, or give -tmpdir another directory, or a larger -mem"; err == nil || err.Error() != msg {
		t.Errorf("findsame -tmpdir on a full disk: error %v; want %q\n%s", err, msg, stderr)
	}
	var names []string
	ents, err := os.ReadDir(idx)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"filler", "index.db", "index.db-shm", "index.db-sums", "index.db-sums.extents", "index.db-wal", "lost+found"}; err != nil || !slices.Equal(names, want) {
		t.Errorf("%s holds %q (%v); want %q: no temporary file left", idx, names, err, want)
	}
}

// The files of a snapshot deleted since hashfile ran (by its rotation,
// say) are told once and left out, by this run and by the next, which
// plans what a full run plans: their extents, shared with the live
// files', are recorded shared, which would let a run that did not map
// them again take them as recorded, and plan them. Until hashfile runs
// again, their records keep what they shared with live: what live holds
// alone (written since the snapshot) is planned.
func TestGoneSinceHashed(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	live, snap := filepath.Join(mnt, "live"), filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "create", live)
	writeTree(t, live)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, snap)
	rng := rand.New(rand.NewPCG(3, 4))
	late := make([]byte, 300<<10)
	for i := range late {
		late[i] = byte(rng.Uint32())
	}
	for _, name := range []string{"late", "late-copy"} {
		if err := os.WriteFile(filepath.Join(live, name), late, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "index.db")
	hashTree(t, db, mnt)
	testfs.Run(t, "btrfs", "subvolume", "delete", snap)
	full, _ := findsameOn(t, db, "-full", "-q")
	if full == "" || strings.Contains(full, snap) {
		t.Fatalf("findsame -full planned\n%s\nwant lines, none under %s", full, snap)
	}
	for run := 1; run <= 2; run++ {
		plan, stderr := findsameOn(t, db)
		if plan != full {
			t.Errorf("run %d planned\n%s\nwant what -full plans\n%s", run, plan, full)
		}
		var gone []string
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, snap) {
				gone = append(gone, line)
			}
		}
		want := "findsame: 5 files under " + snap + " gone since they were hashed (the first: " + snap + "/copies/a1): left out; run hashfile again"
		if len(gone) != 1 || gone[0] != want {
			t.Errorf("run %d: stderr says of the deleted snapshot %q; want %q", run, gone, want)
		}
	}
	// hashfile again, and the cleaner done with the snapshot's tree
	// (until then its references hold the extents): the copies of a in
	// live are planned.
	hashTree(t, db, mnt)
	testfs.Run(t, "timeout", "120", "btrfs", "subvolume", "sync", mnt)
	plan, _ := findsameOn(t, db, "-q")
	for _, name := range []string{"copies/a1", "copies/a2"} {
		if !strings.Contains(plan, `"path":"`+filepath.Join(live, name)+`"`) {
			t.Errorf("after hashfile again, findsame planned\n%s\nwant %s among the destinations", plan, name)
		}
	}
}

// The files of a filesystem that is not mounted tonight (a disk that did
// not mount, its mount point left empty) are left out with a warning that
// says so, not that they are gone and hashfile should run again: hashfile
// keeps them, and they are planned again once the disk is back.
func TestNotMounted(t *testing.T) {
	root := testfs.Mount(t, "btrfs", "256M")
	disk := testfs.Mount(t, "btrfs", "256M")
	writeTree(t, disk)
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "mount", "--bind", disk, data)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			testfs.Run(t, "umount", data)
		}
	})
	d, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := fsys.StatFS(d)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "index.db")
	hashTree(t, db, root)
	full, _ := findsameOn(t, db, "-q")
	if full == "" {
		t.Fatal("findsame planned nothing with the disk mounted")
	}
	testfs.Run(t, "umount", data)
	mounted = false
	plan, stderr := findsameOn(t, db, "-q")
	want := "findsame: 6 files under " + data + " left out: their filesystem (" + fs.ID + ") is not mounted there; the index keeps them until it is (hashfile -new-fs prunes them)\n"
	if plan != "" || stderr != want {
		t.Errorf("findsame with the disk not mounted: plan %q, stderr %q; want none and %q", plan, stderr, want)
	}
	testfs.Run(t, "mount", "--bind", disk, data)
	mounted = true
	if plan, stderr = findsameOn(t, db, "-q"); plan != full || stderr != "" {
		t.Errorf("findsame with the disk back: plan\n%s\nstderr %q; want what it planned before, no warning\n%s", plan, stderr, full)
	}
}

// findsameOn runs findsame on the index db with args, failing the test on
// an error, and returns its plan and standard error.
func findsameOn(t *testing.T, db string, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"-db", db}, args...), nil, &out, &errb); err != nil {
		t.Fatalf("findsame %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}
