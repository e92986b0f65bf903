//go:build linux

package fsys_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/testfs"
)

func open(t *testing.T, path string) (*os.File, *unix.Stat_t) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, &st
}

// TestBtrfs names a btrfs and its subvolumes by their UUID and ids, the
// same after a remount that changes every st_dev, and tells a read-only
// snapshot, a subvolume holding others, and a change by its generation.
func TestBtrfs(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	sv := filepath.Join(mnt, "sv")
	testfs.Run(t, "btrfs", "subvolume", "create", sv)
	if err := os.WriteFile(filepath.Join(sv, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", sv, filepath.Join(mnt, "ro"))

	describe := func(path string) fsys.Info {
		f, _ := open(t, path)
		defer f.Close()
		in, err := fsys.Describe(f)
		if err != nil {
			t.Fatalf("Describe(%s): %v", path, err)
		}
		return in
	}
	top, sub, ro := describe(mnt), describe(filepath.Join(sv, "f")), describe(filepath.Join(mnt, "ro", "f"))
	if len(top.FS) != 32 || top.Subvol != 5 || sub.FS != top.FS || sub.Subvol < 256 || ro.FS != top.FS || ro.Subvol == sub.Subvol {
		t.Errorf("Describe: top %+v, sv %+v, ro %+v; want one 32-digit UUID, subvolumes 5, 256+ and another", top, sub, ro)
	}
	if top.Magic != unix.BTRFS_SUPER_MAGIC || top.BlockSize != 4096 {
		t.Errorf("Describe(%s) = %+v; want btrfs, 4096", mnt, top)
	}

	for path, want := range map[string]bool{filepath.Join(sv, "f"): false, filepath.Join(mnt, "ro", "f"): true} {
		f, _ := open(t, path)
		if got := fsys.ReadOnly(f); got != want {
			t.Errorf("ReadOnly(%s) = %v; want %v", path, got, want)
		}
		f.Close()
	}
	// The snapshot names the subvolume it was taken from, by the UUID
	// the tree search finds it by, and is unchanged since it was made.
	roDir, _ := open(t, filepath.Join(mnt, "ro"))
	sn, err := fsys.SnapshotOf(roDir)
	if err != nil || !sn.ReadOnly || sn.Made == 0 || sn.Changed > sn.Made {
		t.Errorf("SnapshotOf(ro) = %+v, %v; want read-only, unchanged since made", sn, err)
	}
	if id, ok, err := fiemap.SubvolByUUID(roDir, sn.Origin); err != nil || !ok || id != sub.Subvol {
		t.Errorf("SubvolByUUID(%x) = %d, %v, %v; want %d", sn.Origin, id, ok, err, sub.Subvol)
	}
	if id, ok, err := fiemap.SubvolByUUID(roDir, [16]byte{1}); err != nil || ok {
		t.Errorf("SubvolByUUID of no subvolume = %d, %v, %v; want none", id, ok, err)
	}
	roDir.Close() // before the remount below
	topDir, _ := open(t, mnt)
	svDir, _ := open(t, sv)
	if sn, err := fsys.SnapshotOf(svDir); err != nil || sn.Origin != [16]byte{} || sn.ReadOnly {
		t.Errorf("SnapshotOf(sv) = %+v, %v; want no origin, writable", sn, err)
	}
	if !fsys.HasSubvols(topDir) || fsys.HasSubvols(svDir) {
		t.Errorf("HasSubvols: top %v, sv %v; want true, false", fsys.HasSubvols(topDir), fsys.HasSubvols(svDir))
	}

	// Metadata is DUP on one device, in 16 KiB nodes; single once
	// converted.
	if m, err := fsys.MetadataOf(topDir); err != nil || m != (fsys.Metadata{NodeSize: 16384, Copies: 2}) {
		t.Errorf("MetadataOf = %+v, %v; want 16 KiB nodes, DUP", m, err)
	}
	testfs.Run(t, "btrfs", "balance", "start", "-f", "-mconvert=single", mnt)
	if m, err := fsys.MetadataOf(topDir); err != nil || m != (fsys.Metadata{NodeSize: 16384, Copies: 1}) {
		t.Errorf("MetadataOf after -mconvert=single = %+v, %v; want 16 KiB nodes, single", m, err)
	}

	// A change shows in the generation once committed.
	id, gen, err := fsys.SubvolGen(svDir)
	if err != nil || id != sub.Subvol {
		t.Fatalf("SubvolGen(%s) = %d, %d, %v; want id %d", sv, id, gen, err, sub.Subvol)
	}
	if err := os.WriteFile(filepath.Join(sv, "g"), []byte("more"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Syncfs(int(svDir.Fd())); err != nil {
		t.Fatal(err)
	}
	if _, gen2, err := fsys.SubvolGen(svDir); err != nil || gen2 <= gen {
		t.Errorf("SubvolGen after a change = %d, %v; want more than %d", gen2, err, gen)
	}

	// The cache keeps a volume per mount: after a remount, whatever
	// st_dev the subvolume gets, the same names.
	var vols fsys.Volumes
	f, st := open(t, filepath.Join(sv, "f"))
	before, err := vols.Of(f, st)
	if err != nil || before.Volume != sub.Volume {
		t.Fatalf("Volumes.Of = %+v, %v; want %+v", before, err, sub.Volume)
	}
	f.Close()
	topDir.Close()
	svDir.Close()
	testfs.Remount(t, mnt)
	f, st = open(t, filepath.Join(sv, "f"))
	if after, err := vols.Of(f, st); err != nil || after.Volume != sub.Volume {
		t.Errorf("Volumes.Of after a remount = %+v, %v; want %+v", after, err, sub.Volume)
	}
}

// TestXFS names an XFS by the UUID it reports, not by its loop device.
func TestXFS(t *testing.T) {
	mnt := testfs.Mount(t, "xfs", "300M")
	f, _ := open(t, mnt)
	in, err := fsys.Describe(f)
	if err != nil || len(in.FS) != 32 || in.Subvol != 0 || in.Magic != unix.XFS_SUPER_MAGIC {
		t.Fatalf("Describe(%s) = %+v, %v; want a 32-digit UUID, no subvolume, xfs", mnt, in, err)
	}
	uuid := strings.ReplaceAll(strings.TrimSpace(testfs.Run(t, "findmnt", "-n", "-o", "UUID", "--target", mnt)), "-", "")
	if in.FS != uuid {
		t.Errorf("Describe(%s).FS = %s; want the UUID findmnt shows, %s", mnt, in.FS, uuid)
	}
	// After a remount on another loop device, the same.
	f.Close()
	testfs.Remount(t, mnt)
	f, _ = open(t, mnt)
	if again, err := fsys.Describe(f); err != nil || again.Volume != in.Volume {
		t.Errorf("Describe after a remount = %+v, %v; want %+v", again, err, in.Volume)
	}
}
