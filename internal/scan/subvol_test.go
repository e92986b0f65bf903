package scan

import (
	"errors"
	"maps"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
)

// TestTakenAsListed checks which files compare may take as listed: those
// whose inode item was not rewritten since the last complete walk, with
// their extent items in no leaf written since or as the row records
// them, of a volume whose changes are known.
func TestTakenAsListed(t *testing.T) {
	v := fsys.Volume{FS: "fs", Subvol: 256}
	items := []fiemap.Extent{{Logical: 0, Length: 4096, DiskStart: 1 << 20, DiskLen: 4096, Gen: 7}}
	digest := index.ItemsDigest(items)
	s := &subvols{changes: map[fsys.Volume]fiemap.Changes{v: {
		Files:   map[uint64]bool{10: true, 11: true},
		Extents: map[uint64]bool{11: true, 12: true, 13: true},
		Items:   map[uint64][]fiemap.Extent{11: items, 12: items, 13: items[:0]},
	}}}
	for _, tt := range []struct {
		vol   fsys.Volume
		ino   uint64
		items int64
		want  bool
	}{
		{v, 9, digest, true},       // nothing of it changed
		{v, 9, 0, true},            // nor here, digest or not
		{v, 10, digest, false},     // its inode item rewritten
		{v, 11, digest, false},     // and its extent items, as recorded or not
		{v, 12, digest, true},      // in a leaf written since, as recorded
		{v, 12, digest + 1, false}, // not as recorded
		{v, 12, 0, false},          // no digest recorded
		{v, 13, digest, false},     // its items gone from the leaf
		{fsys.Volume{FS: "other", Subvol: 256}, 9, digest, false}, // changes not known
	} {
		if got := s.asRecorded(tt.vol, tt.ino, tt.items); got != tt.want {
			t.Errorf("asRecorded(%v, %d, %x) = %v; want %v", tt.vol, tt.ino, tt.items, got, tt.want)
		}
	}
}

// TestListedAt checks that files go as listed only below the path where a
// subvolume or root was met with its changes known, on its device.
func TestListedAt(t *testing.T) {
	s := &subvols{listable: map[string]uint64{"/mnt/live": 41}}
	for _, tt := range []struct {
		path string
		dev  uint64
		want bool
	}{
		{"/mnt/live", 41, true},
		{"/mnt/live", 42, false},  // another device at that path now
		{"/mnt/other", 41, false}, // the same one elsewhere (a bind mount)
	} {
		st := unix.Stat_t{Dev: tt.dev, Ino: btrfsFirstFree}
		if got := s.listed(tt.path, &st); got != tt.want {
			t.Errorf("listed(%s, dev %d) = %v; want %v", tt.path, tt.dev, got, tt.want)
		}
	}
	s.mountsErr = errors.New("no /proc")
	if st := (unix.Stat_t{Dev: 41}); s.listed("/mnt/live", &st) {
		t.Error("listed where what is mounted where is not known")
	}
}

// TestEntriesChanged checks which directories whose inode items were
// rewritten count as changed: all but those whose ctime is the one a
// record made by a walk no newer than the one the run goes by has.
func TestEntriesChanged(t *testing.T) {
	v := fsys.Volume{FS: "fs", Subvol: 256}
	c := fiemap.Changes{Dirs: map[uint64]int64{300: 1000, 301: 2000, 302: 3000, 303: 4000, 304: 5000}}
	s := newSubvols(nil, Options{BlockSize: 4096}, nil)
	var asked []uint64
	s.dirs = func(got fsys.Volume, inos []uint64) (map[uint64]index.Dir, error) {
		if got != v {
			t.Errorf("dirs asked of %v; want %v", got, v)
		}
		asked = append(asked, inos...)
		return map[uint64]index.Dir{
			300: {Ctime: 1000, Gen: 7}, // access time alone: as the walk gone by recorded it
			301: {Ctime: 2000, Gen: 5}, // as an earlier complete walk recorded it
			302: {Ctime: 2999, Gen: 7}, // its entries changed since
			303: {Ctime: 4000, Gen: 8}, // recorded by a later walk, which did not complete
		}, nil // 304: never recorded
	}
	prev := s.key(7, "/m/live")
	got := s.entriesChanged(v, prev, "/m/live", c)
	if want := map[uint64]bool{302: true, 303: true, 304: true}; !maps.Equal(got, want) {
		t.Errorf("entriesChanged = %v; want %v", got, want)
	}
	if len(asked) != len(c.Dirs) {
		t.Errorf("asked of %v; want all %d", asked, len(c.Dirs))
	}
	// A walk with other options, or none known: every one.
	if got := s.entriesChanged(v, "", "/m/live", c); len(got) != len(c.Dirs) {
		t.Errorf("entriesChanged with no walk before = %v; want all", got)
	}
	s.dirs = func(fsys.Volume, []uint64) (map[uint64]index.Dir, error) { return nil, errors.New("no index") }
	if got := s.entriesChanged(v, prev, "/m/live", c); len(got) != len(c.Dirs) {
		t.Errorf("entriesChanged when the index cannot say = %v; want all", got)
	}
}

func TestMovedWithin(t *testing.T) {
	parts := []string{"/m/snaps/h/a/x/", "/m/snaps/h/d/"}
	for _, tc := range []struct {
		name  string
		moved moves
		want  bool
	}{
		{"none", moves{}, true},
		{"between parts", moves{paths: [][2]string{{"/m/live/a/x/1", "/m/live/d/1"}}}, true},
		{"below a part", moves{paths: [][2]string{{"/m/live/a/x/1", "/m/live/a/x/y/1"}}}, true},
		{"to a directory not walked", moves{paths: [][2]string{{"/m/live/a/x/1", "/m/live/d/1"}, {"/m/live/a/x/2", "/m/live/t2"}}}, false},
		{"from one", moves{paths: [][2]string{{"/m/live/b/1", "/m/live/d/1"}}}, false},
		{"a part's name, not below it", moves{paths: [][2]string{{"/m/live/a/x/1", "/m/live/dd/1"}}}, false},
		{"outside the origin", moves{paths: [][2]string{{"/m/other/a/x/1", "/m/live/d/1"}}}, false},
		{"too many to hold", moves{over: true}, false},
	} {
		if got := movedWithin(tc.moved, "/m/live", "/m/snaps/h", parts); got != tc.want {
			t.Errorf("%s: movedWithin = %v; want %v", tc.name, got, tc.want)
		}
	}
	if movedWithin(moves{paths: [][2]string{{"/m/live/a/x/1", "/m/live/d/1"}}}, "/m/live", "/m/snaps/h", nil) {
		t.Error("movedWithin with nothing walked = true; want false")
	}
}
