package scan

import (
	"bytes"
	"context"
	"testing"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
)

// On a filesystem where the index held no extent when the run began, the
// reuser asks the index only about extents this run recorded: a file
// whose extent another file of the run recorded (and committed) takes its
// sums from there; a new extent is not asked about; and another
// filesystem, or one the index knew before, is asked about everything.
func TestReuseFresh(t *testing.T) {
	ctx := context.Background()
	ix := openIndex(t)
	const bs = 4096
	r := &reuser{ix: ix, bs: bs}
	ext := func(start int64) fiemap.Extent {
		return fiemap.Extent{Logical: 0, Physical: start, Length: 4 * bs, DiskStart: start, DiskLen: 4 * bs, Gen: 7}
	}
	sums := make([]byte, 4*blockhash.SumSize)
	for i := range sums {
		sums[i] = byte(i + 1)
	}
	put := func(fs string, ino uint64, e fiemap.Extent) {
		t.Helper()
		r.record(fs, []fiemap.Extent{e}) // as the writer does, before it commits
		tx, err := ix.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := index.File{Path: fs + "/" + string(rune('a'+ino)), NoCOW: index.NoCOWUnset,
			Identity: fsys.Identity{Vol: fsys.Volume{FS: fs, Subvol: 5}, Ino: ino, Size: 4 * bs}}
		if _, err := tx.Put(f, sums, []fiemap.Extent{e}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	may := func(fs string, e fiemap.Extent) bool {
		t.Helper()
		ok, err := r.mayBeRecorded(ctx, keyOf(fs, e))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// f1 held nothing: a new extent is not asked about.
	if may("f1", ext(1<<20)) {
		t.Errorf("f1, a new extent: may be recorded; want not")
	}
	// One recorded in this run is, and its sums serve another file.
	put("f1", 1, ext(1<<20))
	if !may("f1", ext(1<<20)) {
		t.Errorf("f1, an extent recorded in this run: not asked about")
	}
	got, missing, ok, release, err := r.sums(ctx, "f1", []fiemap.Extent{ext(1 << 20)}, 4*bs, nil)
	release()
	if err != nil || !ok || len(missing) > 0 || !bytes.Equal(got, sums) {
		t.Errorf("sums of a copy = %x, missing %v, %v, %v; want %x, none missing", got, missing, ok, err, sums)
	}
	if may("f1", ext(2<<20)) {
		t.Errorf("f1, another new extent: may be recorded; want not")
	}

	// f2 held an extent before it was first asked about: everything is
	// asked about there.
	put("f2", 2, ext(3<<20))
	if !may("f2", ext(4<<20)) {
		t.Errorf("f2, known to the index: an extent not asked about")
	}
}

// A file of many extents that no file hashed before holds is claimed once,
// every extent at once, and read whole: a claim for each extent not found
// went over every extent of the file each time, and a file of 102,400
// extents (a VM image that btrfs's copy-on-write has cut up) took ten
// minutes to hash.
func TestClaimOnce(t *testing.T) {
	ctx := context.Background()
	const bs, n = 4096, 2000
	r := &reuser{ix: openIndex(t), bs: bs}
	var items []fiemap.Extent
	for i := range int64(n) {
		items = append(items, fiemap.Extent{Logical: i * bs, Physical: (i + 1) << 20, Length: bs, DiskStart: (i + 1) << 20, DiskLen: bs, Gen: 7})
	}
	visits := 0
	claimVisits = func(k int) { visits += k }
	t.Cleanup(func() { claimVisits = nil })
	_, missing, ok, release, err := r.sums(ctx, "fs", items, n*bs, nil)
	if err != nil || !ok || len(missing) != 1 || missing[0] != (span{0, n * bs}) {
		t.Fatalf("sums = missing %v, %v, %v; want all of it missing", missing, ok, err)
	}
	if visits != n {
		t.Errorf("claims went over %d extents; want %d, each once", visits, n)
	}
	if len(r.inflight) != n {
		t.Errorf("%d extents claimed; want %d", len(r.inflight), n)
	}
	release()
	if len(r.inflight) != 0 {
		t.Errorf("%d extents still claimed after release", len(r.inflight))
	}
}
