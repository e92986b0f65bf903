package runs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/sumtab"
)

// refsIndex returns an index of two files of a live subvolume and of two
// snapshots of it, whose files refer to theirs (files.extents_of): its
// file /m/live/a, and that file's extents.
func refsIndex(t *testing.T) (*index.Index, index.File, []fiemap.Extent) {
	ctx := context.Background()
	ix := newIndex(t)
	live := fsys.Volume{FS: "f1", Subvol: 5}
	snaps := []fsys.Volume{{FS: "f1", Subvol: 256}, {FS: "f1", Subvol: 257}}
	ext := []fiemap.Extent{
		{Logical: 0, Physical: 1 << 30, Length: 2 * bs, DiskStart: 1 << 30, DiskLen: 2 * bs, Gen: 7},
		{Logical: 2 * bs, Length: bs, Flags: fiemap.FlagDataInline | fiemap.FlagLast}, // stays unshared
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append([]fsys.Volume{live}, snaps...) {
		if err := tx.PutVolume(fsys.Info{Volume: v, Magic: fstype.Btrfs, BlockSize: bs}, 0); err != nil {
			t.Fatal(err)
		}
	}
	f := index.File{Path: "/m/live/a", Identity: fsys.Identity{Vol: live, Ino: 100, Size: 3 * bs, Mtime: 1, Ctime: 1}}
	if _, err := tx.Put(f, make([]byte, 3*8), ext); err != nil {
		t.Fatal(err)
	}
	// Another file, so that the files wanted below are few enough for a
	// scan yet not all.
	g := index.File{Path: "/m/live/b", Identity: fsys.Identity{Vol: live, Ino: 101, Size: bs, Mtime: 1, Ctime: 1}}
	if _, err := tx.Put(g, make([]byte, 8), []fiemap.Extent{{Physical: 2 << 30, Length: bs, Flags: fiemap.FlagLast}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i, s := range snaps {
		before, err := ix.WriteSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Adopt(live, s, "/m/live", fmt.Sprintf("/m/snaps/%d", i), before, ix.MaxFileID(ctx), 1, false, false); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return ix, f, ext
}

// wantedOf marks the files whose paths wanted takes, as loadExtents's
// want; nil (all) for a nil wanted.
func wantedOf(files []file, wanted func(path string) bool) []bool {
	if wanted == nil {
		return nil
	}
	want := make([]bool, len(files))
	for i := range files {
		want[i] = wanted(files[i].path)
	}
	return want
}

// loadExtents gives a file of a snapshot, which refers to its origin's
// extents (files.extents_of), those extents flagged shared: in one scan
// of the index, whether its origin is wanted or not, and by a query of
// its own where its origin is out of scope, or where the origin was
// recorded again between the references and the scan.
func TestLoadExtentsRefs(t *testing.T) {
	ctx := context.Background()
	ix, f, ext := refsIndex(t)
	shared := []fiemap.Extent{ext[0], ext[1]}
	shared[0].Flags |= fiemap.FlagShared
	// check loads the files (those include names) and the extents of
	// those wanted (nil: all), and checks that each has its own, live/a
	// those given, a snapshot's those of its origin as it was, shared.
	check := func(t *testing.T, include []string, wanted func(path string) bool, liveA []fiemap.Extent) {
		t.Helper()
		var sum Summary
		o := Options{Include: include}
		files, byID, _, err := load(ctx, ix, o, bs, &sum)
		if err != nil {
			t.Fatal(err)
		}
		want := wantedOf(files, wanted)
		if err := loadExtents(ctx, ix, files, byID, want, &o, nil); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			var w []fiemap.Extent
			switch p := files[i].path; {
			case want != nil && !want[i]:
			case p == "/m/live/a":
				w = liveA
			case p == "/m/live/b":
				w = []fiemap.Extent{{Physical: 2 << 30, Length: bs, Flags: fiemap.FlagLast}}
			case p == "/m/snaps/0/b" || p == "/m/snaps/1/b":
				w = []fiemap.Extent{{Physical: 2 << 30, Length: bs, Flags: fiemap.FlagLast | fiemap.FlagShared}}
			default:
				w = shared
			}
			if fmt.Sprint(files[i].extents) != fmt.Sprint(w) {
				t.Errorf("%s: extents %+v; want %+v", files[i].path, files[i].extents, w)
			}
		}
	}
	for _, tt := range []struct {
		name    string
		include []string
		want    func(path string) bool // nil: all
	}{
		{"all", nil, nil},
		{"the snapshots' files alone wanted", nil, func(p string) bool { return p != "/m/live/a" && p != "/m/live/b" }},
		{"the origin out of scope", []string{"/m/snaps"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.include, tt.want, ext) })
	}

	// hashfile records the origin again between the references and the
	// scan: its extents pass to the first snapshot's file, which the
	// other's then refers to; each gets the extents it has after the
	// write, not the origin's new ones.
	now := []fiemap.Extent{{Logical: 0, Physical: 3 << 30, Length: 3 * bs, Flags: fiemap.FlagLast, DiskStart: 3 << 30, DiskLen: 3 * bs, Gen: 9}}
	fault = func(point string) {
		if point != "references read" {
			return
		}
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.Mtime = 2
		if _, err := tx.Put(f, make([]byte, 3*8), now); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { fault = nil })
	t.Run("written meanwhile", func(t *testing.T) { check(t, nil, nil, now) })
}

// loadExtents takes the kept extents of the files unchanged in the index
// since they were kept, reads from the index those of the files changed
// since and of the files that refer to a changed file's (a file of a
// snapshot, which may hold them now), and keeps what it read after a
// scan of the index. Kept extents damaged or of another index are not
// used.
func TestKeptExtents(t *testing.T) {
	ctx := context.Background()
	ix, f, ext := refsIndex(t)
	// More files, so that those changed below are few enough to be read
	// one by one.
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	filler := func(n int) []fiemap.Extent {
		return []fiemap.Extent{{Physical: int64(4+n) << 30, Length: bs, Flags: fiemap.FlagLast}}
	}
	for n := range 30 {
		z := index.File{Path: fmt.Sprintf("/m/live/z%02d", n), Identity: fsys.Identity{Vol: f.Vol, Ino: uint64(200 + n), Size: bs, Mtime: 1, Ctime: 1}}
		if _, err := tx.Put(z, make([]byte, 8), filler(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.db-sums"+sumtab.ExtentsSuffix)
	var warned []string
	o := Options{Warn: func(path string, err error) { warned = append(warned, err.Error()) }}
	shared := []fiemap.Extent{ext[0], ext[1]}
	shared[0].Flags |= fiemap.FlagShared
	liveB := []fiemap.Extent{{Physical: 2 << 30, Length: bs, Flags: fiemap.FlagLast}}
	// run loads the files and the extents of those wanted (nil: all),
	// with the extents kept at path (or none, with full), and checks
	// each file's against want.
	run := func(t *testing.T, full bool, wanted func(path string) bool, want func(path string) []fiemap.Extent) {
		t.Helper()
		seq, err := ix.WriteSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var sum Summary
		files, byID, seqs, err := load(ctx, ix, o, bs, &sum)
		if err != nil {
			t.Fatal(err)
		}
		ro := o
		ro.Full = full
		kx := openKept(ctx, ix, path, seq, files, seqs, &ro)
		defer kx.close()
		wm := wantedOf(files, wanted)
		if err := loadExtents(ctx, ix, files, byID, wm, &o, kx); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			var w []fiemap.Extent
			if wm == nil || wm[i] {
				w = want(files[i].path)
			}
			if fmt.Sprint(files[i].extents) != fmt.Sprint(w) {
				t.Errorf("%s: extents %+v; want %+v", files[i].path, files[i].extents, w)
			}
		}
	}
	// as gives the extents each file has with live/a's and live/b's
	// those given, their snapshots' files those of before, shared.
	as := func(liveA, b []fiemap.Extent) func(string) []fiemap.Extent {
		return func(p string) []fiemap.Extent {
			var n int
			switch {
			case p == "/m/live/a":
				return liveA
			case p == "/m/live/b":
				return b
			case p == "/m/snaps/0/b" || p == "/m/snaps/1/b":
				return []fiemap.Extent{{Physical: 2 << 30, Length: bs, Flags: fiemap.FlagLast | fiemap.FlagShared}}
			case strings.HasPrefix(p, "/m/live/z"):
				fmt.Sscanf(p, "/m/live/z%d", &n)
				return filler(n)
			}
			return shared
		}
	}
	// tamper sets the physical place of the first extent of file p in
	// the index, its row unchanged: a run that reads it there shows it.
	tamper := func(p string, physical int64) {
		t.Helper()
		if _, err := ix.DB().ExecContext(ctx, "UPDATE extents SET physical = ? WHERE logical = 0 AND file = (SELECT id FROM files WHERE path = ?)", physical, p); err != nil {
			t.Fatal(err)
		}
	}
	moved := []fiemap.Extent{{Physical: 9 << 30, Length: bs, Flags: fiemap.FlagLast}}
	snapsOnly := func(p string) bool { return strings.HasPrefix(p, "/m/snaps/") }
	put := func(f index.File, ext []fiemap.Extent) {
		t.Helper()
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Put(f, make([]byte, f.Size/bs*8), ext); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	now := []fiemap.Extent{{Logical: 0, Physical: 3 << 30, Length: 3 * bs, Flags: fiemap.FlagLast, DiskStart: 3 << 30, DiskLen: 3 * bs, Gen: 9}}

	t.Run("first run keeps what it scanned", func(t *testing.T) {
		run(t, false, nil, as(ext, liveB))
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unchanged files take the kept", func(t *testing.T) {
		tamper("/m/live/b", 9<<30)
		run(t, false, nil, as(ext, liveB))
		run(t, false, snapsOnly, as(ext, liveB))
		tamper("/m/live/b", 2<<30)
	})
	t.Run("a changed file and its snapshots' read one by one", func(t *testing.T) {
		// live/b recorded again: its extents pass to the first snapshot's
		// file, which the other's then refers to. Three files of 36 to
		// read.
		put(index.File{Path: "/m/live/b", Identity: fsys.Identity{Vol: f.Vol, Ino: 101, Size: bs, Mtime: 2, Ctime: 2}}, moved)
		run(t, false, nil, as(ext, moved))
		run(t, false, snapsOnly, as(ext, moved))
	})
	t.Run("changed files scanned", func(t *testing.T) {
		// live/a too: six files to read, in a scan, whose extents are
		// kept; and those kept are taken by the run after.
		f.Mtime = 2
		put(f, now)
		run(t, false, nil, as(now, moved))
		tamper("/m/snaps/0/a", 9<<30)
		tamper("/m/live/z07", 9<<30)
		run(t, false, nil, as(now, moved))
		run(t, false, snapsOnly, as(now, moved))
		tamper("/m/snaps/0/a", 1<<30)
		tamper("/m/live/z07", 11<<30)
	})
	if len(warned) > 0 {
		t.Errorf("warned %q", warned)
	}
	t.Run("of another index", func(t *testing.T) {
		bogus := func(yield func(int64, []fiemap.Extent) bool) {
			for id := range int64(64) {
				if !yield(id, moved) {
					return
				}
			}
		}
		if err := sumtab.WriteExtents(path, sumtab.ExtentsHeader{Key: "another", Seq: 1 << 40}, nil, bogus); err != nil {
			t.Fatal(err)
		}
		run(t, false, nil, as(now, moved))
		if len(warned) > 0 {
			t.Errorf("warned %q", warned)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)/2] ^= 1
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, false, nil, as(now, moved))
		want := []string{path + ": not a table of sums of this version: every extent read from the index"}
		if fmt.Sprint(warned) != fmt.Sprint(want) {
			t.Errorf("warned %q; want %q", warned, want)
		}
	})
}

// sortByPath sorts files by path whatever runs they come in, moving
// each file whole.
func TestSortByPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 10, 100, 1000} {
		for _, runs := range []int{1, 2, 3, 7, n} {
			files := make([]file, n)
			for i := range files {
				files[i] = file{id: int64(i), path: fmt.Sprintf("/m/%04d", rng.IntN(n+1))}
			}
			// runs ascending stretches, as a night's files come
			for r := range max(runs, 1) {
				lo, hi := r*n/max(runs, 1), (r+1)*n/max(runs, 1)
				slices.SortFunc(files[lo:hi], func(a, b file) int { return strings.Compare(a.path, b.path) })
			}
			want := slices.Clone(files)
			slices.SortStableFunc(want, func(a, b file) int { return strings.Compare(a.path, b.path) })
			sortByPath(files)
			if !slices.IsSortedFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) }) {
				t.Fatalf("%d files in %d runs: not sorted", n, runs)
			}
			for i := range files {
				if files[i].path != want[i].path || files[i].id != want[i].id {
					t.Fatalf("%d files in %d runs: file %d is %d %s, want %d %s", n, runs, i, files[i].id, files[i].path, want[i].id, want[i].path)
				}
			}
		}
	}
}

// TestExtentsSchema is a tripwire for the key of kept extents: a new
// schema of the index must say whether it changes what the rows of
// extents say (then extentsSchema becomes it, and kept extents are read
// again once), and this test then names it as the last one looked at.
func TestExtentsSchema(t *testing.T) {
	const lastLookedAt = 18
	if v := index.Version(); v != lastLookedAt || extentsSchema > v {
		t.Errorf("index schema %d, kept extents keyed to schema %d: decide whether schema %d changes the rows of extents (if so, raise extentsSchema to it), then set lastLookedAt", v, extentsSchema, v)
	}
}
