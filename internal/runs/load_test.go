package runs

import (
	"context"
	"fmt"
	"testing"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
)

// loadExtents gives a file of a snapshot, which refers to its origin's
// extents (files.extents_of), those extents flagged shared: in one scan
// of the index, whether its origin is wanted or not, and by a query of
// its own where its origin is out of scope, or where the origin was
// recorded again between the references and the scan.
func TestLoadExtentsRefs(t *testing.T) {
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
		var want []bool
		if wanted != nil {
			want = make([]bool, len(files))
			for i := range files {
				want[i] = wanted(files[i].path)
			}
		}
		if err := loadExtents(ctx, ix, files, byID, want, &o); err != nil {
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
