package scan

import (
	"context"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
)

// TestAsRecorded compares extent items found by a tree search with the
// extents the index records: equal but for whether another file shares
// them or which is last, they are as recorded; any other difference, or
// an item at an offset the record does not have, is not.
func TestAsRecorded(t *testing.T) {
	ix := openIndex(t)
	ctx := context.Background()
	rec := []fiemap.Extent{
		{Logical: 0, Physical: 1 << 20, Length: 8192, DiskStart: 1 << 20, DiskLen: 8192, Gen: 7, Flags: fiemap.FlagShared},
		{Logical: 8192, Physical: 2 << 20, Length: 4096, DiskStart: 2 << 20, DiskLen: 16384, Gen: 9, Offset: 0, Flags: fiemap.FlagLast},
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tx.Put(index.File{Path: "/f", Identity: fsys.Identity{Vol: fsys.Volume{FS: "u", Subvol: 5}, Ino: 257, Size: 12288}}, nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	item := func(i int, change func(*fiemap.Extent)) []fiemap.Extent {
		e := rec[i]
		e.Flags = 0
		change(&e)
		return []fiemap.Extent{e}
	}
	for _, c := range []struct {
		name  string
		items []fiemap.Extent
		want  bool
	}{
		{"none", nil, true},
		{"the first, unshared", item(0, func(*fiemap.Extent) {}), true},
		{"the last, not flagged last", item(1, func(*fiemap.Extent) {}), true},
		{"moved", item(1, func(e *fiemap.Extent) { e.DiskStart += 1 << 20; e.Physical += 1 << 20 }), false},
		{"another generation", item(0, func(e *fiemap.Extent) { e.Gen++ }), false},
		{"another offset in the extent", item(1, func(e *fiemap.Extent) { e.Offset = 4096; e.Physical += 4096 }), false},
		{"at an offset not recorded", item(0, func(e *fiemap.Extent) { e.Logical = 4096 }), false},
		{"prealloc now", item(0, func(e *fiemap.Extent) { e.Flags = fiemap.FlagUnwritten }), false},
	} {
		if got := asRecorded(ctx, ix, id, c.items); got != c.want {
			t.Errorf("%s: asRecorded = %v; want %v", c.name, got, c.want)
		}
	}
}
