package runs

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/testfs"
)

// btrfsFile returns the file at path as load would, with its extents.
func btrfsFile(t *testing.T, path string) file {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	in, err := fsys.Describe(f)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := fiemap.DiskExtents(f)
	if err != nil || len(ext) == 0 {
		t.Fatalf("%s: extents %v, %v", path, ext, err)
	}
	s := fsys.FromStat(&st)
	return file{path: path, vol: &volume{Volume: in.Volume, btrfs: true}, Ino: s.Ino, Size: s.Size, Mtime: s.Mtime, extents: ext}
}

// TestExtentRefs checks that the references to a disk extent are the
// filesystem's whichever file asks, also one that no longer opens as
// hashed, and that extents at the same address of two filesystems are
// told apart.
func TestExtentRefs(t *testing.T) {
	var files []file
	var roots []uint64
	for _, name := range []string{"one", "two"} {
		mnt := testfs.Mount(t, "btrfs", "256M")
		// The second filesystem's file lies in a subvolume, so that its
		// references differ from the first's where the address is the
		// same.
		dir := mnt
		if name == "two" {
			dir = filepath.Join(mnt, "sv")
			testfs.Run(t, "btrfs", "subvolume", "create", dir)
		}
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		if err := os.WriteFile(a, randomData(64<<10, int64(len(files))), 0o644); err != nil {
			t.Fatal(err)
		}
		testfs.Run(t, "cp", "--reflink=always", a, b)
		testfs.Run(t, "sync")
		files = append(files, btrfsFile(t, a), btrfsFile(t, b))
		roots = append(roots, files[len(files)-1].vol.Subvol)
	}
	refs, done := extentRefs(files)
	defer done()
	disk := files[0].extents[0].DiskStart
	if d := files[2].extents[0].DiskStart; d != disk {
		t.Skipf("the two filesystems' files lie at %d and %d: no address to tell apart", disk, d)
	}
	want := func(root uint64, f ...file) []fiemap.Ref {
		var rs []fiemap.Ref
		for _, f := range f {
			rs = append(rs, fiemap.Ref{Root: root, Ino: f.Ino})
		}
		slices.SortFunc(rs, func(x, y fiemap.Ref) int { return int(x.Ino - y.Ino) })
		return rs
	}
	check := func(fi int, w []fiemap.Ref) {
		t.Helper()
		rs, ok := refs(fi, disk)
		rs = slices.Clone(rs)
		slices.SortFunc(rs, func(x, y fiemap.Ref) int { return int(x.Ino - y.Ino) })
		if !ok || !slices.Equal(rs, w) {
			t.Errorf("refs(%s, %d) = %v, %v; want %v, true", files[fi].path, disk, rs, ok, w)
		}
	}
	check(0, want(roots[0], files[0], files[1]))
	// b of the second filesystem is gone before it is asked: its
	// filesystem's a answers, once asked through.
	check(2, want(roots[1], files[2], files[3]))
	if err := os.Remove(files[3].path); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	if rs, ok := refs(3, disk); !ok || len(rs) != 2 {
		t.Errorf("refs(%s) = %v, %v; want the two references known", files[3].path, rs, ok)
	}
	// A new extent of that filesystem, asked through the file removed,
	// which no longer opens: the file kept open answers.
	c := filepath.Join(filepath.Dir(files[2].path), "c")
	if err := os.WriteFile(c, randomData(64<<10, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	cf := btrfsFile(t, c)
	disk = cf.extents[0].DiskStart
	check(3, want(roots[1], cf))
}

// randomData returns n bytes of the pseudo-random stream of seed.
func randomData(n int, seed int64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// The mappings' lists are sorted over themselves on XFS, which writes in
// place, and not on btrfs, which copies on write (see sortedMappings).
func TestWritesInPlace(t *testing.T) {
	for _, c := range []struct {
		fs   string
		want bool
	}{{"xfs", true}, {"btrfs", false}} {
		mnt := testfs.Mount(t, c.fs, "320M")
		f, err := os.CreateTemp(mnt, "list")
		if err != nil {
			t.Fatal(err)
		}
		if got := writesInPlace(f); got != c.want {
			t.Errorf("writesInPlace on %s = %v, want %v", c.fs, got, c.want)
		}
		f.Close()
	}
}
