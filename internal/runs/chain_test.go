package runs

import (
	"math/rand/v2"
	"slices"
	"testing"

	"same/internal/fiemap"
)

// TestRunsByFile checks dstRuns and srcRanges against the runs filtered
// file by file, on runs in destination order with files that have none.
func TestRunsByFile(t *testing.T) {
	const bs = 4096
	rng := rand.New(rand.NewPCG(5, 5))
	for round := range 200 {
		nfiles := 1 + rng.IntN(12)
		var runs []run
		for range rng.IntN(40) {
			src, dst := mkloc(rng.IntN(nfiles), rng.Int64N(100)), mkloc(rng.IntN(nfiles), rng.Int64N(100))
			n := 1 + rng.Int64N(8)
			runs = append(runs, run{src: src, dst: dst, n: n, len: n*bs - rng.Int64N(bs)})
		}
		slices.SortFunc(runs, func(a, b run) int { return int(a.dst>>32) - int(b.dst>>32) })
		byDst, srcs := newDstRuns(runs, nfiles), newSrcRanges(runs, nfiles, bs)
		for fi := range nfiles {
			var wantDst []run
			var wantSrc []span
			for _, r := range runs {
				if r.dst.file() == fi {
					wantDst = append(wantDst, r)
				}
				if r.src.file() == fi {
					wantSrc = append(wantSrc, span{r.src.block() * bs, r.src.block()*bs + r.len})
				}
			}
			if got := byDst.of(fi); !slices.Equal(got, wantDst) || cap(got) != len(got) {
				t.Fatalf("round %d: runs to file %d: %v (cap %d); want %v", round, fi, got, cap(got), wantDst)
			}
			if got := srcs.of(fi); !slices.Equal(got, wantSrc) {
				t.Fatalf("round %d: ranges read of file %d: %v; want %v", round, fi, got, wantSrc)
			}
		}
	}
	if got := (srcRanges{}).of(3); got != nil {
		t.Errorf("no ranges: %v", got)
	}
}

// TestShareableCompressed: pieces of one compressed btrfs extent all show
// its start as their physical offset. Blocks at the same offset in its
// data already share it; blocks at other offsets do not, nor do blocks of
// two uncompressed files at other physical offsets.
func TestShareableCompressed(t *testing.T) {
	const bs, D = 4096, 100 << 20
	vol := &volume{btrfs: true}
	enc := uint32(fiemap.FlagEncoded | fiemap.FlagShared)
	// s refers to the whole extent (128 KiB of data); d to its last 124
	// KiB, from file offset 4096, as a dedupe of that range leaves it.
	s := &file{vol: vol, Size: 128 << 10, extents: []fiemap.Extent{
		{Logical: 0, Physical: D, Length: 128 << 10, DiskStart: D, DiskLen: 40 << 10, Offset: 0, Flags: enc | fiemap.FlagLast}}}
	d := &file{vol: vol, Size: 128 << 10, extents: []fiemap.Extent{
		{Logical: 0, Physical: 200 << 20, Length: bs, DiskStart: 200 << 20, DiskLen: bs},
		{Logical: bs, Physical: D, Length: 124 << 10, DiskStart: D, DiskLen: 40 << 10, Offset: bs, Flags: enc | fiemap.FlagLast}}}
	// u and v: uncompressed, recorded by FIEMAP alone (no disk extent).
	u := &file{vol: vol, Size: 8 * bs, extents: []fiemap.Extent{{Logical: 0, Physical: D, Length: 8 * bs, Flags: fiemap.FlagShared | fiemap.FlagLast}}}
	v := &file{vol: vol, Size: 8 * bs, extents: []fiemap.Extent{{Logical: 0, Physical: D + bs, Length: 8 * bs, Flags: fiemap.FlagShared | fiemap.FlagLast}}}
	for _, tt := range []struct {
		name       string
		d, s       *file
		doff, soff int64
		want       bool
	}{
		{"compressed, same offset in its data", d, s, 8 * bs, 8 * bs, false},
		{"compressed, the first block", d, s, bs, bs, false},
		{"compressed, other offsets in its data", d, s, 8 * bs, 9 * bs, true},
		{"not in the compressed extent", d, s, 0, 0, true},
		{"uncompressed, the same physical block", u, v, 2 * bs, bs, false},
		{"uncompressed, other physical blocks", u, v, bs, bs, true},
	} {
		var dc, sc cursor
		if got := shareable(tt.d, tt.s, tt.doff, tt.soff, &dc, &sc, true); got != tt.want {
			t.Errorf("%s: shareable = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestAlignRuns cuts runs to the blocks of a filesystem of 16 KiB blocks
// (four of the index's): to those they cover whole, keeping a partial
// tail at the end of both files; runs at places in a block of it that
// differ, or covering no whole block, are left out. Runs on a filesystem
// of 4 KiB blocks are kept as they are.
func TestAlignRuns(t *testing.T) {
	const bs = 4096
	big, small := &volume{fsBlock: 16384}, &volume{fsBlock: 4096}
	files := []file{{vol: big, Size: 100 << 10}, {vol: big, Size: 100 << 10}, {vol: small, Size: 1 << 20}, {vol: small, Size: 1 << 20}}
	r := func(dst, src int, db, sb, n, len int64) run {
		return run{dst: mkloc(dst, db), src: mkloc(src, sb), n: n, len: len}
	}
	got := alignRuns([]run{
		r(1, 0, 1, 5, 10, 10*bs),      // blocks 4 to 7 of the destination
		r(1, 0, 0, 1, 8, 8*bs),        // a place apart: left out
		r(1, 0, 2, 6, 2, 2*bs),        // no whole block
		r(1, 0, 20, 20, 5, 5*bs-1000), // up to the end of both
		r(1, 0, 11, 3, 9, 9*bs-1000),  // from block 12, to the end
		r(3, 2, 1, 2, 3, 3*bs),        // 4 KiB blocks
	}, files, bs)
	want := []run{
		r(1, 0, 4, 8, 4, 4*bs),
		r(1, 0, 20, 20, 5, 5*bs-1000),
		r(1, 0, 12, 4, 8, 8*bs-1000),
		r(3, 2, 1, 2, 3, 3*bs),
	}
	if !slices.Equal(got, want) {
		t.Errorf("alignRuns = %v; want %v", got, want)
	}
}
