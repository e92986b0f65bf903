package index

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// FlaggedFiles names the files with a compressed or an inline extent, and
// no other, through the index of such extents (whose expression spells
// the two flags as 520).
func TestFlaggedFiles(t *testing.T) {
	if m := fiemap.FlagEncoded | fiemap.FlagDataInline; m != 520 {
		t.Fatalf("FlagEncoded|FlagDataInline = %d; FlaggedFiles and schema 010 spell it 520", m)
	}
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.UseBlockSize(4096); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, err := ix.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flags := [][]uint32{
		{fiemap.FlagLast},
		{fiemap.FlagEncoded | fiemap.FlagShared, fiemap.FlagLast},
		{fiemap.FlagDataInline | fiemap.FlagNotAligned | fiemap.FlagLast},
		{fiemap.FlagEncoded, fiemap.FlagDataInline | fiemap.FlagLast},
		{fiemap.FlagShared | fiemap.FlagUnwritten | fiemap.FlagLast},
	}
	ids := make([]int64, len(flags))
	for i, fl := range flags {
		var ext []fiemap.Extent
		for k, f := range fl {
			ext = append(ext, fiemap.Extent{Logical: int64(k) * 4096, Physical: int64(i+1) << 30, Length: 4096, Flags: f})
		}
		f := File{Path: fmt.Sprintf("/f%d", i), Identity: fsys.Identity{Vol: fsys.Volume{FS: "f1"}, Ino: uint64(i + 2), Size: int64(len(fl)) * 4096}}
		if ids[i], err = tx.Put(f, make([]byte, 8*len(fl)), ext); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := flaggedFiles(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]uint32{ids[1]: fiemap.FlagEncoded, ids[2]: fiemap.FlagDataInline, ids[3]: fiemap.FlagEncoded | fiemap.FlagDataInline}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FlaggedFiles: %v; want %v", got, want)
	}
}

// flaggedFiles gathers what FlaggedFiles gives, by file.
func flaggedFiles(ctx context.Context, ix *Index) (map[int64]uint32, error) {
	m := make(map[int64]uint32)
	err := ix.FlaggedFiles(ctx, func(id int64, flags uint32) error { m[id] |= flags; return nil })
	return m, err
}
