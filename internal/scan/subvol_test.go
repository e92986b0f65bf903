package scan

import (
	"errors"
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
