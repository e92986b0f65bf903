package fiemap_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/testfs"
)

const mib = 1 << 20

// fill returns n bytes of incompressible data from seed.
func fill(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeAt writes data at off in path, creating it, and fsyncs if asked.
func writeAt(t *testing.T, path string, off int64, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// diskExtents opens path and returns its DiskExtents and FIEMAP Extents.
func diskExtents(t *testing.T, path string) (items, fm []fiemap.Extent) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	items, err = fiemap.DiskExtents(f)
	if err != nil {
		t.Fatalf("DiskExtents(%s): %v", path, err)
	}
	fm, err = fiemap.Extents(f)
	if err != nil {
		t.Fatalf("Extents(%s): %v", path, err)
	}
	t.Logf("DiskExtents(%s) = %+v", filepath.Base(path), items)
	t.Logf("Extents(%s) = %+v", filepath.Base(path), fm)
	return items, fm
}

// writeSpaced writes data n times into f, a hole of its length after
// each (an extent item each), and returns the spans written.
func writeSpaced(t *testing.T, f *os.File, n int, data []byte) []span {
	t.Helper()
	var out []span
	for i := range n {
		off := int64(2 * i * len(data))
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
		out = append(out, span{off, int64(len(data))})
	}
	return out
}

// checkLast checks that only the last item has FlagLast.
func checkLast(t *testing.T, items []fiemap.Extent) {
	t.Helper()
	for i, e := range items {
		if got, want := e.Flags&fiemap.FlagLast != 0, i == len(items)-1; got != want {
			t.Errorf("item %d FlagLast = %v; want %v", i, got, want)
		}
	}
}

// span is the part of an Extent the tests compare.
type span struct{ Logical, Length int64 }

func spans(items []fiemap.Extent) []span {
	s := make([]span, len(items))
	for i, e := range items {
		s[i] = span{e.Logical, e.Length}
	}
	return s
}

// joined returns s with the spans that follow each other joined: the
// ranges that hold data, however the filesystem split a write into
// extents (under memory pressure, write-back may start on a write's first
// pages before the rest is written).
func joined(s []span) []span {
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && out[n-1].Logical+out[n-1].Length == x.Logical {
			out[n-1].Length += x.Length
			continue
		}
		out = append(out, x)
	}
	return out
}

func equalSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDiskExtentsBtrfs(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")

	t.Run("two writes", func(t *testing.T) {
		path := filepath.Join(mnt, "two")
		writeAt(t, path, 0, fill(1, 32*mib), true)
		writeAt(t, path, 32*mib, fill(2, 32*mib), true)
		items, fm := diskExtents(t, path)
		t.Logf("FIEMAP shows %d extent(s)", len(fm))
		// Each write is a disk extent of its own, or more than one where
		// writeback under memory pressure cut it: items cover the file
		// in order, none across the 32 MiB boundary, each a whole disk
		// extent of its own.
		pos := int64(0)
		seen := make(map[int64]bool)
		for i, e := range items {
			if e.Logical != pos || e.Length <= 0 {
				t.Fatalf("item %d = %+v; want one starting at %d", i, e, pos)
			}
			pos = e.End()
			if e.Logical < 32*mib && e.End() > 32*mib {
				t.Errorf("item %d = %+v crosses the second write's start", i, e)
			}
			if e.DiskStart == 0 || e.DiskLen != e.Length || e.Physical != e.DiskStart || seen[e.DiskStart] {
				t.Errorf("item %d = %+v; want DiskStart = Physical != 0, a disk extent of its own, whole", i, e)
			}
			seen[e.DiskStart] = true
			if e.Flags&^fiemap.FlagLast != 0 {
				t.Errorf("item %d Flags = %#x; want only FlagLast at most", i, e.Flags)
			}
		}
		if pos != 64*mib {
			t.Errorf("items end at %d; want %d", pos, 64*mib)
		}
		checkLast(t, items)
	})

	t.Run("overwrite middle", func(t *testing.T) {
		path := filepath.Join(mnt, "middle")
		writeAt(t, path, 0, fill(3, 4*mib), true)
		const off = 3 * mib / 2
		writeAt(t, path, off, fill(4, mib), true)
		items, _ := diskExtents(t, path)
		want := []span{{0, off}, {off, mib}, {off + mib, 4*mib - off - mib}}
		if got := spans(items); !equalSpans(got, want) {
			t.Fatalf("DiskExtents spans = %v; want %v", got, want)
		}
		a, m, b := items[0], items[1], items[2]
		if a.DiskStart != b.DiskStart || a.DiskLen != 4*mib || b.DiskLen != 4*mib {
			t.Errorf("outer items %+v, %+v; want one disk extent of 4 MiB", a, b)
		}
		if a.Physical != a.DiskStart || b.Physical != b.DiskStart+off+mib {
			t.Errorf("outer Physical = %d, %d; want DiskStart and DiskStart+%d", a.Physical, b.Physical, off+mib)
		}
		if m.DiskStart == a.DiskStart || m.DiskLen != mib || m.Physical != m.DiskStart {
			t.Errorf("middle item %+v; want its own 1 MiB disk extent", m)
		}
		checkLast(t, items)
	})

	t.Run("unsynced", func(t *testing.T) {
		// Written without fsync: the FIEMAP sync in DiskExtents must make
		// the items exist before the tree search.
		path := filepath.Join(mnt, "unsynced")
		writeAt(t, path, 0, fill(5, 8*mib), false)
		items, _ := diskExtents(t, path)
		if len(items) == 0 {
			t.Fatal("DiskExtents = no items; want 8 MiB mapped")
		}
		var end int64
		for i, e := range items {
			if e.Logical != end || e.DiskStart == 0 || e.Flags&^fiemap.FlagLast != 0 {
				t.Errorf("item %d = %+v; want Logical %d, on disk, no flags", i, e, end)
			}
			end = e.End()
		}
		if end != 8*mib {
			t.Errorf("items end at %d; want %d", end, 8*mib)
		}
		checkLast(t, items)
	})

	t.Run("inline", func(t *testing.T) {
		path := filepath.Join(mnt, "inline")
		writeAt(t, path, 0, fill(6, 100), true)
		items, _ := diskExtents(t, path)
		want := fiemap.Extent{Logical: 0, Length: 100, Flags: fiemap.FlagDataInline | fiemap.FlagNotAligned | fiemap.FlagLast}
		if len(items) != 1 || items[0] != want {
			t.Fatalf("DiskExtents = %+v; want [%+v]", items, want)
		}
	})

	t.Run("empty", func(t *testing.T) {
		path := filepath.Join(mnt, "empty")
		writeAt(t, path, 0, nil, true)
		if items, _ := diskExtents(t, path); len(items) != 0 {
			t.Fatalf("DiskExtents = %+v; want none", items)
		}
	})

	t.Run("sparse", func(t *testing.T) {
		path := filepath.Join(mnt, "sparse")
		writeAt(t, path, 0, fill(7, mib), true)
		writeAt(t, path, 3*mib, fill(8, mib), true)
		items, _ := diskExtents(t, path)
		want := []span{{0, mib}, {3 * mib, mib}}
		if got := joined(spans(items)); !equalSpans(got, want) {
			t.Fatalf("DiskExtents spans = %v; want %v", got, want)
		}
		checkLast(t, items)
	})

	t.Run("prealloc", func(t *testing.T) {
		path := filepath.Join(mnt, "prealloc")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), 0, 0, 2*mib); err != nil {
			t.Fatal(err)
		}
		items, _ := diskExtents(t, path)
		if len(items) != 1 || items[0].Length != 2*mib || items[0].Flags != fiemap.FlagUnwritten|fiemap.FlagLast || items[0].DiskLen != 2*mib {
			t.Fatalf("DiskExtents = %+v; want one unwritten 2 MiB item", items)
		}
	})

	t.Run("compressed", func(t *testing.T) {
		path := filepath.Join(mnt, "compressed")
		writeAt(t, path, 0, nil, false)
		out, err := exec.Command("btrfs", "property", "set", path, "compression", "zstd").CombinedOutput()
		if err != nil {
			t.Skipf("btrfs property set compression: %v\n%s", err, out)
		}
		data := make([]byte, 512<<10)
		for i := range data {
			data[i] = byte(i / 4096)
		}
		writeAt(t, path, 0, data, true)
		items, _ := diskExtents(t, path)
		var end int64
		for i, e := range items {
			if e.Logical != end || e.Flags&fiemap.FlagEncoded == 0 || e.Physical != e.DiskStart || e.DiskLen >= e.Length {
				t.Errorf("item %d = %+v; want compressed, Physical = DiskStart, DiskLen < Length", i, e)
			}
			end = e.End()
		}
		if end != int64(len(data)) {
			t.Errorf("items end at %d; want %d", end, len(data))
		}
		checkLast(t, items)
	})

	t.Run("many items", func(t *testing.T) {
		// More items than one 64 KiB search buffer holds (about 770), so
		// the search resumes after the last key of each batch.
		const n, block = 2000, 4096
		path := filepath.Join(mnt, "many")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		want := writeSpaced(t, f, n, fill(12, block))
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		items, err := fiemap.DiskExtents(f)
		if err != nil {
			t.Fatalf("DiskExtents: %v", err)
		}
		if got := spans(items); !equalSpans(got, want) {
			t.Fatalf("DiskExtents: %d items, first %v; want %d items, first %v", len(got), got[:min(len(got), 3)], n, want[:3])
		}
		checkLast(t, items)
	})

	t.Run("inode item and extended attributes", func(t *testing.T) {
		// DiskExtentsNoDataSum reads from the inode item on: past
		// extended attributes larger than a search buffer holds, then
		// the extent items of the "many" subtest's layout; the file is
		// NOCOW (no checksums), another one is not.
		const n, block = 1000, 4096
		path := filepath.Join(mnt, "xattrs")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fsys.SetNoCOW(f, true); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			if err := unix.Fsetxattr(int(f.Fd()), fmt.Sprintf("user.big%d", i), fill(uint64(20+i), 14000), 0); err != nil {
				t.Fatal(err)
			}
		}
		want := writeSpaced(t, f, n, fill(13, block))
		if err := unix.Syncfs(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		items, noSum, err := fiemap.DiskExtentsNoDataSum(f)
		if err != nil || !noSum {
			t.Fatalf("DiskExtentsNoDataSum: no checksums %v, %v; want true, nil", noSum, err)
		}
		if got := spans(items); !equalSpans(got, want) {
			t.Fatalf("DiskExtentsNoDataSum: %d items, first %v; want %d items, first %v", len(got), got[:min(len(got), 3)], n, want[:3])
		}
		checkLast(t, items)
		if plain, err := fiemap.DiskExtents(f); err != nil || !slices.Equal(plain, items) {
			t.Errorf("DiskExtents = %d items, %v; want the %d of DiskExtentsNoDataSum", len(plain), err, len(items))
		}
		if no, err := fiemap.NoDataSum(f, inoOf(t, path)); err != nil || !no {
			t.Errorf("NoDataSum = %v, %v; want true, nil", no, err)
		}
		other := openT(t, filepath.Join(mnt, "many"))
		if _, noSum, err := fiemap.DiskExtentsNoDataSum(other); err != nil || noSum {
			t.Errorf("DiskExtentsNoDataSum(many): no checksums %v, %v; want false, nil", noSum, err)
		}
	})

	t.Run("reflink", func(t *testing.T) {
		src := filepath.Join(mnt, "orig")
		dst := filepath.Join(mnt, "copy")
		writeAt(t, src, 0, fill(9, 2*mib), true)
		writeAt(t, src, 2*mib, fill(10, 2*mib), true)
		if out, err := exec.Command("cp", "--reflink=always", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp --reflink=always: %v\n%s", err, out)
		}
		orig, _ := diskExtents(t, src)
		cp, _ := diskExtents(t, dst)
		if len(orig) != 2 || len(cp) != len(orig) {
			t.Fatalf("DiskExtents: %d items in original, %d in copy; want 2 and 2", len(orig), len(cp))
		}
		// The extent tree is searched as last committed.
		if err := unix.Syncfs(int(openT(t, src).Fd())); err != nil {
			t.Fatal(err)
		}
		refs, ok, err := fiemap.ExtentRefs(openT(t, src), orig[0].DiskStart)
		if err != nil || !ok {
			t.Fatalf("ExtentRefs = %v, %v, %v", refs, ok, err)
		}
		want := []fiemap.Ref{{Root: 5, Ino: inoOf(t, src)}, {Root: 5, Ino: inoOf(t, dst)}}
		slices.SortFunc(refs, func(a, b fiemap.Ref) int { return cmp.Compare(a.Ino, b.Ino) })
		if !slices.Equal(refs, want) {
			t.Errorf("ExtentRefs = %v; want %v: the original and its copy", refs, want)
		}
		for i := range orig {
			o, c := orig[i], cp[i]
			if o.DiskStart != c.DiskStart || o.Physical != c.Physical || o.DiskLen != c.DiskLen {
				t.Errorf("item %d: original %+v, copy %+v; want the same disk extent", i, o, c)
			}
			if o.Flags&fiemap.FlagShared == 0 || c.Flags&fiemap.FlagShared == 0 {
				t.Errorf("item %d: original Flags %#x, copy Flags %#x; want FlagShared on both", i, o.Flags, c.Flags)
			}
		}
	})
}

func TestDiskExtentsXFS(t *testing.T) {
	mnt := testfs.Mount(t, "xfs", "300M")
	path := filepath.Join(mnt, "f")
	writeAt(t, path, 0, fill(11, mib), true)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	items, err := fiemap.DiskExtents(f)
	if !errors.Is(err, fiemap.ErrNoTreeSearch) {
		t.Fatalf("DiskExtents on XFS = %+v, %v; want %v", items, err, fiemap.ErrNoTreeSearch)
	}
}

// TestDiskExtentsNotBtrfs needs no root: the temporary directory is
// rarely on btrfs.
func TestDiskExtentsNotBtrfs(t *testing.T) {
	dir := t.TempDir()
	magic := testfs.Magic(t, dir)
	if magic == unix.BTRFS_SUPER_MAGIC {
		t.Skipf("%s is on btrfs", dir)
	}
	path := filepath.Join(dir, "f")
	writeAt(t, path, 0, []byte("data"), false)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fiemap.DiskExtents(f); !errors.Is(err, fiemap.ErrNoTreeSearch) {
		t.Fatalf("DiskExtents on filesystem %#x = %v; want %v", magic, err, fiemap.ErrNoTreeSearch)
	}
}

func openT(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func inoOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestChanged changes one file of many on btrfs and asks what changed
// since: that file's extents, and at most those of the files sharing a
// tree leaf with it, not the subvolume; that file's inode alone; and no
// directory, until a file is created.
func TestChanged(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	const n = 2000
	for i := range n {
		writeAt(t, filepath.Join(mnt, fmt.Sprintf("f%04d", i)), 0, fill(uint64(i), 8192), false)
	}
	root, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	gen := func() uint64 {
		t.Helper()
		if err := unix.Syncfs(int(root.Fd())); err != nil {
			t.Fatal(err)
		}
		_, g, err := fsys.SubvolGen(root)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	before := gen()
	all, err := fiemap.Changed(root, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Extents) != n || len(all.Files) != n || !all.Others {
		t.Fatalf("Changed since 0: extents of %d files, %d files, others %v; want all %d, and the directory", len(all.Extents), len(all.Files), all.Others, n)
	}
	changed := filepath.Join(mnt, "f1234")
	writeAt(t, changed, 4096, fill(99, 4096), false)
	now := gen()
	got, err := fiemap.Changed(root, before+1)
	if err != nil {
		t.Fatal(err)
	}
	ino := inoOf(t, changed)
	t.Logf("extents of %d of %d files in leaves written since", len(got.Extents), n)
	if !got.Extents[ino] || len(got.Extents) > n/10 {
		t.Errorf("Changed since %d: extents of %d files, f1234 (inode %d) among them: %v; want it, and few others", before+1, len(got.Extents), ino, got.Extents[ino])
	}
	if want := map[uint64]bool{ino: true}; !maps.Equal(got.Files, want) || got.Others {
		t.Errorf("Changed since %d: files %v, others %v; want %v and no others", before+1, got.Files, got.Others, want)
	}
	if got, err := fiemap.Changed(root, now+1); err != nil || len(got.Extents) != 0 || len(got.Files) != 0 || got.Others {
		t.Errorf("Changed since %d (nothing changed): %+v, %v; want nothing", now+1, got, err)
	}
	writeAt(t, filepath.Join(mnt, "new"), 0, fill(100, 4096), false)
	if got, err := fiemap.Changed(root, gen()); err != nil || !got.Others || len(got.Files) != 1 {
		t.Errorf("Changed since a file was created: %+v, %v; want the directory and the new file", got, err)
	}
}

// TestLastSnapshot reads when the last snapshot of a subvolume was taken:
// never, for a new one; for one snapshotted, the transaction that made
// the snapshot, after its files' extent items, before those written
// since. A snapshot's own is the same.
func TestLastSnapshot(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	sv := filepath.Join(mnt, "sv")
	testfs.Run(t, "btrfs", "subvolume", "create", sv)
	items := func(path string) []fiemap.Extent {
		t.Helper()
		ext, err := fiemap.DiskExtents(openT(t, path))
		if err != nil || len(ext) != 1 {
			t.Fatalf("DiskExtents(%s) = %v, %v; want one item", path, ext, err)
		}
		return ext
	}
	last := func(path string) uint64 {
		t.Helper()
		f := openT(t, path)
		in, err := fsys.Describe(f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := fiemap.LastSnapshot(f, in.Subvol)
		if err != nil {
			t.Fatalf("LastSnapshot(%s): %v", path, err)
		}
		return n
	}
	writeAt(t, filepath.Join(sv, "old"), 0, fill(1, 8192), true)
	if n := last(sv); n != 0 {
		t.Errorf("LastSnapshot of a subvolume never snapshotted = %d; want 0", n)
	}
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", sv, snap)
	writeAt(t, filepath.Join(sv, "new"), 0, fill(2, 8192), true)
	sn, err := fsys.SnapshotOf(openT(t, snap))
	if err != nil {
		t.Fatal(err)
	}
	old, fresh := items(filepath.Join(sv, "old"))[0].Gen, items(filepath.Join(sv, "new"))[0].Gen
	if n := last(sv); n != sn.Made || uint64(old) > n || uint64(fresh) <= n {
		t.Errorf("LastSnapshot(sv) = %d; want the snapshot's transaction %d, at or after the old file's item (%d), before the new one's (%d)", n, sn.Made, old, fresh)
	}
	if n := last(snap); n != sn.Made {
		t.Errorf("LastSnapshot(snap) = %d; want %d", n, sn.Made)
	}
}

// TestDirEntries reads a directory's entries in a subvolume and, by the
// subvolume's id, in a read-only snapshot of it: the same until an entry
// is renamed in the subvolume, when DirChanged shows the directory's inode
// item rewritten there and not in the snapshot. Its times alone written,
// the entries are the same again.
func TestDirEntries(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	sv := filepath.Join(mnt, "sv")
	testfs.Run(t, "btrfs", "subvolume", "create", sv)
	d := filepath.Join(sv, "d")
	if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b", "a", "long name of a file"} {
		writeAt(t, filepath.Join(d, name), 0, fill(1, 4096), false)
	}
	if err := os.Symlink("a", filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", sv, snap)
	in, err := fsys.Describe(openT(t, snap))
	if err != nil {
		t.Fatal(err)
	}
	f, dir := openT(t, sv), inoOf(t, d)
	entries := func(tree uint64) []fiemap.DirEntry {
		t.Helper()
		got, err := fiemap.DirEntries(f, tree, dir)
		if err != nil {
			t.Fatalf("DirEntries(%d, %d): %v", tree, dir, err)
		}
		return got
	}
	changed := func(tree, ino uint64) (uint64, bool) {
		t.Helper()
		gen, isDir, err := fiemap.DirChanged(f, tree, ino)
		if err != nil {
			t.Fatalf("DirChanged(%d, %d): %v", tree, ino, err)
		}
		return gen, isDir
	}
	const btrfsFtRegFile, btrfsFtDir, btrfsFtSymlink, btrfsInodeItemKey = 1, 2, 7, 1
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "link"), &st); err != nil {
		t.Fatal(err)
	}
	linkIno := st.Ino
	want := []fiemap.DirEntry{
		{Name: "a", Object: inoOf(t, filepath.Join(d, "a")), KeyType: btrfsInodeItemKey, Type: btrfsFtRegFile},
		{Name: "b", Object: inoOf(t, filepath.Join(d, "b")), KeyType: btrfsInodeItemKey, Type: btrfsFtRegFile},
		{Name: "link", Object: linkIno, KeyType: btrfsInodeItemKey, Type: btrfsFtSymlink},
		{Name: "long name of a file", Object: inoOf(t, filepath.Join(d, "long name of a file")), KeyType: btrfsInodeItemKey, Type: btrfsFtRegFile},
		{Name: "sub", Object: inoOf(t, filepath.Join(d, "sub")), KeyType: btrfsInodeItemKey, Type: btrfsFtDir},
	}
	if got := entries(0); !slices.Equal(got, want) {
		t.Fatalf("DirEntries of sv/d = %+v; want %+v", got, want)
	}
	if got := entries(in.Subvol); !slices.Equal(got, want) {
		t.Fatalf("DirEntries of snap/d = %+v; want %+v", got, want)
	}
	made, isDir := changed(in.Subvol, dir)
	if !isDir {
		t.Fatalf("DirChanged(snap/d) says it is no directory")
	}

	if err := os.Rename(filepath.Join(d, "b"), filepath.Join(d, "c")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "sync")
	renamed := slices.Clone(want)
	renamed[1].Name = "c"
	if got := entries(0); !slices.Equal(got, renamed) {
		t.Errorf("DirEntries of sv/d after a rename = %+v; want %+v", got, renamed)
	}
	if got := entries(in.Subvol); !slices.Equal(got, want) {
		t.Errorf("DirEntries of snap/d after a rename in sv = %+v; want %+v", got, want)
	}
	if gen, _ := changed(0, dir); gen <= made {
		t.Errorf("DirChanged(sv/d) after a rename = %d; want after %d", gen, made)
	}
	if gen, _ := changed(in.Subvol, dir); gen != made {
		t.Errorf("DirChanged(snap/d) after a rename in sv = %d; want %d", gen, made)
	}
	if err := os.Rename(filepath.Join(d, "c"), filepath.Join(d, "b")); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "touch", "-d", "2001-01-01", d)
	testfs.Run(t, "sync")
	if got := entries(0); !slices.Equal(got, want) {
		t.Errorf("DirEntries of sv/d renamed back, its times written = %+v; want %+v", got, want)
	}
	if _, isDir := changed(0, inoOf(t, filepath.Join(d, "a"))); isDir {
		t.Errorf("DirChanged(sv/d/a) says a file is a directory")
	}
	if gen, isDir := changed(0, 1<<40); gen != 0 || isDir {
		t.Errorf("DirChanged of an inode that is not there = %d, %v; want 0, false", gen, isDir)
	}

	// More entries than one search returns.
	big := filepath.Join(sv, "big")
	if err := os.Mkdir(big, 0o755); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 3000 {
		name := fmt.Sprintf("%04d-a-name-long-enough-to-fill-the-buffer", i)
		names = append(names, name)
		writeAt(t, filepath.Join(big, name), 0, nil, false)
	}
	testfs.Run(t, "sync")
	got, err := fiemap.DirEntries(f, 0, inoOf(t, big))
	if err != nil {
		t.Fatal(err)
	}
	var gotNames []string
	for _, e := range got {
		gotNames = append(gotNames, e.Name)
	}
	if !slices.Equal(gotNames, names) {
		t.Errorf("DirEntries of a directory of %d entries: %d entries", len(names), len(got))
	}
}
