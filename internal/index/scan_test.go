package index

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// listUnder returns the paths a Cursor lists under root.
func listUnder(t *testing.T, ix *Index, root string) []string {
	t.Helper()
	var got []string
	c := ix.Under(context.Background(), root)
	defer c.Close()
	for {
		f, ok := c.Peek()
		if !ok {
			break
		}
		got = append(got, f.Path)
		c.Next()
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// A Cursor lists the file at its root and those below it, in the byte
// order of their paths, across pages, and nothing beside the root that
// only shares its first bytes.
func TestCursor(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	var paths []string
	for i := range 2*cursorPage + 10 {
		paths = append(paths, fmt.Sprintf("/r/d/f%05d", i))
	}
	paths = append(paths, "/r", "/r.txt", "/r-x", "/r0", "/r/a.b", "/r/a/c", "/q")
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if _, err := tx.Put(File{Path: p, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: uint64(i + 1), Size: 1}}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range paths {
		if p == "/r" || len(p) > 3 && p[:3] == "/r/" {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	if got := listUnder(t, ix, "/r"); !slices.Equal(got, want) {
		t.Errorf("Under(/r) listed %d paths, %q...; want %d, %q...", len(got), got[:min(5, len(got))], len(want), want[:5])
	}
	if got := listUnder(t, ix, "/"); len(got) != len(paths) {
		t.Errorf("Under(/) listed %d paths; want %d", len(got), len(paths))
	}
	if got, want := listUnder(t, ix, "/r/a"), []string{"/r/a/c"}; !slices.Equal(got, want) {
		t.Errorf("Under(/r/a) = %q; want %q", got, want)
	}
	// The row at the root is read first, on its own; then the pages
	// grow from cursorFirst rows to cursorPage, doubling.
	c := ix.Under(ctx, "/r")
	defer c.Close()
	var sizes []int
	for _, ok := c.Peek(); ok; _, ok = c.Peek() {
		if c.i == 0 {
			sizes = append(sizes, len(c.page))
		}
		c.Next()
	}
	wantSizes := []int{1}
	for n, left := cursorFirst, len(want)-1; left > 0; n = min(2*n, cursorPage) {
		wantSizes = append(wantSizes, min(n, left))
		left -= n
	}
	if !slices.Equal(sizes, wantSizes) || sizes[1] >= cursorPage {
		t.Errorf("Under(/r) read pages of %v rows; want %v, starting below %d", sizes, wantSizes, cursorPage)
	}
}

// SkipUnder counts the rows of a volume below a directory, from where the
// cursor is, returns those of other volumes and those it is asked to
// check, in path order, and leaves the cursor at the first row past the
// directory, on a page boundary or not, or at the bound it is given.
func TestSkipUnder(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol, other := fsys.Volume{FS: "f1", Subvol: 256}, fsys.Volume{FS: "f1", Subvol: 257}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(path string, v fsys.Volume, ino uint64) {
		if _, err := tx.Put(File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: v, Ino: ino, Size: 1}}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("/m/a", vol, 1)
	for i := range cursorPage + 10 {
		put(fmt.Sprintf("/m/s/f%05d", i), vol, uint64(1000+i))
	}
	put("/m/s/g", other, 7) // left there by a subvolume at /m/s before
	put("/m/s.txt", vol, 2) // beside it, before it in byte order
	put("/m/s0", vol, 3)    // beside it, after it
	put("/m/t", vol, 4)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Marked gone by a run that did not complete: returned, to be met.
	if _, err := ix.db.Exec("UPDATE files SET gone = 3 WHERE path = '/m/s/f00050'"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		first  int // rows Next passes before the skip (/m/a, /m/s.txt, then f00000 on)
		check  []uint64
		before string
		n      int64
		rest   []string
		after  []string
	}{
		{"from its first row", 2, nil, "", cursorPage + 9, []string{"/m/s/f00050", "/m/s/g"}, []string{"/m/s0", "/m/t"}},
		{"from within", 12, []uint64{1003, 1011, 1100, 5}, "/m/t", cursorPage - 3, []string{"/m/s/f00011", "/m/s/f00050", "/m/s/f00100", "/m/s/g"}, []string{"/m/s0", "/m/t"}},
		{"not to before", 2, []uint64{1001}, "/m/s/f00003", 2, []string{"/m/s/f00001"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ix.Under(ctx, "/m")
			defer c.Close()
			// A file recorded below /m/s by another writer between the
			// count and the listing: both see the index as it was.
			betweenSkipQueries = func() {
				tx, err := ix.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Put(File{Path: "/m/s/f00002x", NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: other, Ino: 9, Size: 1}}, nil, nil); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				betweenSkipQueries = nil
				if _, err := ix.db.Exec("DELETE FROM files WHERE path = '/m/s/f00002x'"); err != nil {
					t.Fatal(err)
				}
			}()
			for range tt.first {
				c.Peek()
				c.Next()
			}
			n, rest, err := c.SkipUnder("/m/s", vol, tt.check, tt.before)
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range rest {
				paths = append(paths, f.Path)
			}
			if n != tt.n || !slices.Equal(paths, tt.rest) {
				t.Errorf("SkipUnder = %d, %q; want %d, %q", n, paths, tt.n, tt.rest)
			}
			var after []string
			for f, ok := c.Peek(); ok && len(after) < 2; f, ok = c.Peek() {
				after = append(after, f.Path)
				c.Next()
			}
			want := tt.after
			if want == nil {
				want = []string{tt.before, "/m/s/f00004"}
			}
			if !slices.Equal(after, want) || c.Err() != nil {
				t.Errorf("after SkipUnder, the cursor lists %q (%v); want %q", after, c.Err(), want)
			}
			// What is left after a skip is read a small page first.
			if len(c.page) > cursorFirst {
				t.Errorf("after SkipUnder, the cursor read a page of %d rows; want at most %d", len(c.page), cursorFirst)
			}
		})
	}
}

// A file marked gone is pruned by its scan generation alone, unless a
// rename (or new hash) took it first, or it holds another path by the
// time it is marked, or KeepUnder kept it. Files without a path are
// pruned too.
func TestPruneGone(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	gen, err := ix.NextScan(ctx)
	if err != nil || gen != 1 {
		t.Fatalf("NextScan() = %d, %v; want 1", gen, err)
	}
	if gen, err = ix.NextScan(ctx); err != nil || gen != 2 {
		t.Fatalf("NextScan() = %d, %v; want 2", gen, err)
	}
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	file := func(ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: 4096, Mtime: 1, Ctime: 1}}
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[uint64]int64)
	for i, p := range []string{"/gone", "/renamed", "/moved", "/kept/x", "/old", "/taken"} {
		if ids[uint64(i+1)], err = tx.Put(file(uint64(i+1), p), []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil); err != nil {
			t.Fatal(err)
		}
	}
	steps := []error{
		tx.MarkGone(ids[1], "/gone", gen),
		tx.MarkGone(ids[2], "/renamed", gen),
		tx.Rename(file(2, "/new")),         // met later: the mark goes
		tx.Rename(file(3, "/elsewhere")),   // met earlier...
		tx.MarkGone(ids[3], "/moved", gen), // ...so this is no mark
		tx.MarkGone(ids[4], "/kept/x", gen),
		tx.KeepUnder("/kept", gen),
		tx.MarkGone(ids[5], "/old", gen-1), // of a run that did not complete
		tx.Rename(file(7, "/taken")),       // 6 loses its path
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := ix.CountGone(ctx, gen); err != nil || n != 2 {
		t.Errorf("CountGone(%d) = %d, %v; want 2", gen, n, err)
	}
	var pruned int
	for {
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tx.PruneGone(gen, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if pruned += n; n == 0 {
			break
		}
	}
	got := byIno(t, ix)
	want := map[uint64]string{2: "/new", 3: "/elsewhere", 4: "/kept/x", 5: "/old", 7: "/taken"}
	if pruned != 2 || len(got) != len(want) {
		t.Errorf("pruned %d, index holds %v; want 2 pruned, %v", pruned, got, want)
	}
	for ino, p := range want {
		if got[ino] != p {
			t.Errorf("inode %d at %q; want %q", ino, got[ino], p)
		}
	}
}

// ScanPartDiskExtents gives the references to the disk extents that no
// reference refers to whole, an extent's one after another, and none of
// an extent that one refers to whole or whose key is not known.
func TestScanPartDiskExtents(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	const M = 1 << 20
	ref := func(logical, disk, diskLen, off, n int64) fiemap.Extent {
		return fiemap.Extent{Logical: logical, Physical: disk + off, Length: n, DiskStart: disk, DiskLen: diskLen, Gen: 9, Offset: off}
	}
	files := [][]fiemap.Extent{
		// Extent 1M: whole in file 1, in part in file 2.
		// Extent 9M: in part in files 1 and 2 (bookends).
		// Extent 20M: in part in file 2, its key unknown (gen 0).
		// Extent 30M: in part in file 3, from its start.
		{ref(0, M, M, 0, M), ref(M, 9*M, 8*M, 0, M)},
		{ref(0, M, M, 4096, 8192), ref(M, 9*M, 8*M, 7*M, M), {Logical: 2 * M, Physical: 20 * M, Length: M, DiskStart: 20 * M, DiskLen: 2 * M}},
		{ref(0, 30*M, 2*M, 0, M)},
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, ext := range files {
		if _, err := tx.Put(File{Path: fmt.Sprintf("/m/f%d", i+1), NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: vol, Ino: uint64(i + 1), Size: 3 * M}}, nil, ext); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = ix.ScanPartDiskExtents(ctx, func(id int64, e fiemap.Extent) error {
		got = append(got, fmt.Sprintf("file %d: disk %dM+%d, %d at %d", id, e.DiskStart/M, e.Offset, e.Length, e.Logical))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("file 1: disk 9M+0, %d at %d", M, M),
		fmt.Sprintf("file 2: disk 9M+%d, %d at %d", 7*M, M, M),
		fmt.Sprintf("file 3: disk 30M+0, %d at 0", M),
	}
	if len(got) >= 2 {
		slices.Sort(got[:2]) // the references to one extent come in no set order
	}
	if !slices.Equal(got, want) {
		t.Errorf("ScanPartDiskExtents gave\n%q\nwant\n%q", got, want)
	}
	// The files referring to an extent by its key; none to one whose key
	// is not known.
	for _, c := range []struct {
		disk, diskLen, gen int64
		want               []int64
	}{{M, M, 9, []int64{1, 2}}, {9 * M, 8 * M, 9, []int64{1, 2}}, {30 * M, 2 * M, 9, []int64{3}}, {20 * M, 2 * M, 0, nil}} {
		ids, err := ix.Referrers(ctx, "f1", c.disk, c.diskLen, c.gen)
		if slices.Sort(ids); err != nil || !slices.Equal(ids, c.want) {
			t.Errorf("Referrers of %dM = %v, %v; want %v", c.disk/M, ids, err, c.want)
		}
	}
}

// Pieces finds the pieces of a disk extent that hold an offset among
// thousands that do not: the nearest before it or, when those do not, the
// whole extent a file refers to from its start; never those of NOCOW files, nor of
// another filesystem with an extent of the same key.
func TestPieces(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	const M, K4 = 1 << 20, 4096
	piece := func(logical, off, n int64) fiemap.Extent {
		return fiemap.Extent{Logical: logical, Physical: 100*M + off, Length: n, DiskStart: 100 * M, DiskLen: 64 * M, Gen: 9, Offset: off}
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[int64]string{}
	put := func(path string, nocow int8, ext fiemap.Extent) {
		t.Helper()
		ino := uint64(len(paths) + 1)
		vol := vol
		if strings.HasPrefix(path, "/other/") {
			vol = fsys.Volume{FS: "f2", Subvol: 5}
		}
		id, err := tx.Put(File{Path: path, NoCOW: nocow, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: ext.Logical + ext.Length}}, nil, []fiemap.Extent{ext})
		if err != nil {
			t.Fatal(err)
		}
		paths[id] = path
	}
	put("/m/whole", NoCOWUnset, piece(0, 0, 64*M))
	put("/m/nocow", NoCOWSet, piece(0, 0, 64*M))
	put("/other/whole", NoCOWUnset, piece(0, 0, 64*M))
	// 2000 files, each with one block of every other block of the
	// extent's first 16 MiB, at 4 KiB in the file.
	for i := range int64(2000) {
		put(fmt.Sprintf("/m/small%04d", i), NoCOWUnset, piece(K4, 2*i*K4, K4))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   int64
		want []string
	}{
		{2*1500*K4 + K4, []string{"/m/whole at 0+0, 64M"}},
		{2*1500*K4 + 100, []string{"/m/small1500 at 4096+12288000, 4096"}},
		{40 * M, []string{"/m/whole at 0+0, 64M"}},
		{64 * M, nil},
	} {
		ps, err := ix.Pieces(ctx, "f1", 100*M, 64*M, 9, c.at)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range ps {
			path := paths[p.File]
			n := fmt.Sprint(p.Length)
			if p.Length == 64*M {
				n = "64M"
			}
			got = append(got, fmt.Sprintf("%s at %d+%d, %s", path, p.Logical, p.Offset, n))
		}
		slices.Sort(got) // in no set order, and perhaps twice
		if got = slices.Compact(got); !slices.Equal(got, c.want) {
			t.Errorf("Pieces at %d = %q; want %q", c.at, got, c.want)
		}
	}
}

// Distrust forgets the owner of every file at or below the path, and of
// no other, so that the next run looks at each.
func TestDistrust(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	vol := fsys.Volume{FS: "f1", Subvol: 5}
	paths := []string{"/d", "/d/a", "/d/s/b", "/d.x", "/da", "/e/a"}
	inTx(t, ix, func(tx *Tx) error {
		for i, p := range paths {
			f := File{Path: p, NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: vol, Ino: uint64(i + 1), Size: 4096, Mtime: 1, Ctime: 1}}
			if _, err := tx.Put(f, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil); err != nil {
				return err
			}
		}
		return tx.Distrust("/d")
	})
	got := make(map[string]int64)
	err := ix.Files(ctx, func(f File) error {
		got[f.Path] = f.UID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"/d": UIDUnknown, "/d/a": UIDUnknown, "/d/s/b": UIDUnknown, "/d.x": 1000, "/da": 1000, "/e/a": 1000}
	if !maps.Equal(got, want) {
		t.Errorf("owners after Distrust = %v; want %v", got, want)
	}
}

// SetRetries replaces the directories of one volume to walk again, all of
// them or those met below a path, and leaves the other volumes' as they
// were.
func TestRetries(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	a, b := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 256}
	r := func(ino uint64, path string) Retry { return Retry{Ino: ino, Path: path} }
	for _, step := range []struct {
		vol   fsys.Volume
		under string
		dirs  []Retry
		want  map[fsys.Volume][]uint64
	}{
		{a, "", []Retry{r(300, "/m/x/y"), r(256, "/m")}, map[fsys.Volume][]uint64{a: {256, 300}}},
		{b, "", []Retry{r(260, "/m/s/d")}, map[fsys.Volume][]uint64{a: {256, 300}, b: {260}}},
		{a, "/m/x", nil, map[fsys.Volume][]uint64{a: {256}, b: {260}}},
		{a, "/m/x", []Retry{r(301, "/m/x")}, map[fsys.Volume][]uint64{a: {256, 301}, b: {260}}},
		{a, "/m/xy", nil, map[fsys.Volume][]uint64{a: {256, 301}, b: {260}}},
		{a, "", []Retry{r(257, "/m/z")}, map[fsys.Volume][]uint64{a: {257}, b: {260}}},
		{b, "", nil, map[fsys.Volume][]uint64{a: {257}}},
	} {
		inTx(t, ix, func(tx *Tx) error { return tx.SetRetries(step.vol, step.under, step.dirs) })
		got, err := ix.Retries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range got {
			slices.Sort(d)
		}
		if !maps.EqualFunc(got, step.want, slices.Equal) {
			t.Errorf("after SetRetries(%v, %q, %v): Retries() = %v; want %v", step.vol, step.under, step.dirs, got, step.want)
		}
	}

	// PruneRetries keeps those of a volume the index has a file of, and
	// drops the others'.
	f := File{Path: "/m/s/d/x", NoCOW: NoCOWUnset, Identity: fsys.Identity{Vol: b, Ino: 261, Size: 4096, Mtime: 1, Ctime: 1}}
	inTx(t, ix, func(tx *Tx) error {
		if err := tx.SetRetries(b, "", []Retry{r(260, "/m/s/d")}); err != nil {
			return err
		}
		if _, err := tx.Put(f, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil); err != nil {
			return err
		}
		return tx.PruneRetries()
	})
	got, err := ix.Retries(ctx)
	if want := map[fsys.Volume][]uint64{b: {260}}; err != nil || !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("after PruneRetries: Retries() = %v, %v; want %v", got, err, want)
	}
}
