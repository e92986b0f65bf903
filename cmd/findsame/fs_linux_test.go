package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
