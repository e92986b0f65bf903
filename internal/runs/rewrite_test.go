package runs

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/plan"
)

// rewriteOf merges the pieces and the runs of a file; it finds the spans
// to copy that a look at every run for every piece finds.
func TestRewriteOfMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		f := &file{Size: int64(1+rng.IntN(200))*bs - int64(rng.IntN(bs)), vol: &volume{btrfs: true}}
		blocks := (f.Size + bs - 1) / bs
		var runs []run
		for b := int64(0); b < blocks; {
			b += int64(rng.IntN(5))
			n := min(int64(1+rng.IntN(8)), blocks-b)
			if n <= 0 {
				break
			}
			r := run{dst: mkloc(0, b), src: mkloc(1, b), n: n, len: n * bs}
			if end := (b + n) * bs; end > f.Size {
				r.len -= end - f.Size
			}
			runs = append(runs, r)
			b += n
		}
		// One disk extent in pieces at one distance, other extents between.
		var g []fiemap.Extent
		for off := int64(0); off < blocks*bs; {
			n := int64(1+rng.IntN(20)) * bs
			if rng.IntN(2) == 0 {
				g = append(g, fiemap.Extent{Logical: off, Physical: 1<<30 + off, Length: min(n, blocks*bs-off)})
			}
			off += n
		}
		if len(g) == 0 {
			continue
		}
		got := rewriteOf(runs, f, bs, 0, g)
		var want []plan.Span
		for _, e := range g {
			end := min(e.End(), f.Size)
			pos := e.Logical
			for _, r := range runs {
				lo, hi := r.dst.block()*bs, r.dst.block()*bs+r.len
				if hi <= pos || lo >= end {
					continue
				}
				lo, hi = max(lo, pos), min(hi, end)
				if lo > pos {
					want = append(want, plan.Span{Off: pos, Len: lo - pos})
				}
				pos = hi
			}
			if pos < end {
				want = append(want, plan.Span{Off: pos, Len: end - pos})
			}
		}
		switch {
		case got == nil && len(want) == 0:
		case got == nil:
			// Declined: it would not pay. The spans decide only whether.
		case !reflect.DeepEqual(got.Copy, want):
			t.Fatalf("rewriteOf(%v, %v).Copy = %v; want %v", runs, g, got.Copy, want)
		}
	}
}

// A leftover that two files of one filesystem share is rewritten, whatever
// a file of another filesystem with an extent at the same disk start,
// met first, refers to.
func TestSharedLeftoverByFilesystem(t *testing.T) {
	const M = 1 << 20
	var files []file
	for i, fs := range []string{"b", "a", "a"} {
		files = append(files, file{id: int64(i + 1), path: fs + "/f" + string(rune('0'+i)), class: int32(fs[0] - 'a'),
			vol: &volume{Volume: fsys.Volume{FS: fs, Subvol: 5}, btrfs: true}, Ino: uint64(257 + i), Size: 2 * M,
			// The first 2 MiB of an 8 MiB extent, the rest referred to by
			// nothing.
			extents: []fiemap.Extent{{Logical: 0, Physical: 100 * M, Length: 2 * M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Flags: fiemap.FlagShared | fiemap.FlagLast}}})
	}
	ws, _, _ := rewrites(nil, files, bs, 0, nil, nil)
	var got []string
	for _, w := range ws {
		got = append(got, files[w.fi].path)
	}
	if len(ws) != 1 || files[ws[0].fi].vol.FS != "a" || !ws[0].w.Shared {
		t.Errorf("rewrites of %v; want one, shared, of a file of a", got)
	}
}

// A leftover that four files share (a file and three snapshots of it) is
// rewritten once, and each other file's references move onto the copy in
// one run, not a run a block.
func TestSharedLeftoverRelinks(t *testing.T) {
	const M = 1 << 20
	var files []file
	for i := range 4 {
		files = append(files, file{id: int64(i + 1), path: "a/f" + string(rune('0'+i)),
			vol: &volume{Volume: fsys.Volume{FS: "a", Subvol: uint64(5 + i)}, btrfs: true}, Ino: 257, Size: 2 * M,
			extents: []fiemap.Extent{{Logical: 0, Physical: 100 * M, Length: 2 * M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Flags: fiemap.FlagShared | fiemap.FlagLast}}})
	}
	ws, relinks, _ := rewrites(nil, files, bs, 0, nil, nil)
	if len(ws) != 1 || ws[0].fi != 0 || !ws[0].w.Shared {
		t.Fatalf("%d rewrites; want one, shared, of the first file", len(ws))
	}
	want := []run{
		{src: mkloc(0, 0), dst: mkloc(1, 0), n: 2 * M / bs, len: 2 * M},
		{src: mkloc(0, 0), dst: mkloc(2, 0), n: 2 * M / bs, len: 2 * M},
		{src: mkloc(0, 0), dst: mkloc(3, 0), n: 2 * M / bs, len: 2 * M},
	}
	if !slices.Equal(relinks, want) {
		t.Errorf("%d runs %v...; want %v", len(relinks), relinks[:min(len(relinks), 4)], want)
	}
}

// A disk extent two files refer to is shared, whatever FIEMAP said: the
// leftover is rewritten once, shared back into both, as if the flag had
// been set; the extent of a third file, its own, is left unmarked.
func TestMarkShared(t *testing.T) {
	const M = 1 << 20
	var files []file
	for i := range 3 {
		disk := int64(100 * M)
		if i == 2 {
			disk = 200 * M
		}
		files = append(files, file{id: int64(i + 1), path: "a/f" + string(rune('0'+i)),
			vol: &volume{Volume: fsys.Volume{FS: "a", Subvol: 5}, btrfs: true}, Ino: uint64(257 + i), Size: 2 * M,
			extents: []fiemap.Extent{{Logical: 0, Physical: disk, Length: 2 * M, DiskStart: disk, DiskLen: 8 * M, Gen: 9, Flags: fiemap.FlagLast}}})
	}
	markShared(files)
	for i, want := range []bool{true, true, false} {
		if got := files[i].extents[0].Flags&fiemap.FlagShared != 0; got != want {
			t.Errorf("file %d: shared %v; want %v", i, got, want)
		}
	}
	ws, relinks, _ := rewrites(nil, files[:2], bs, 0, nil, nil)
	if len(ws) != 1 || ws[0].fi != 0 || !ws[0].w.Shared {
		t.Fatalf("%d rewrites; want one, shared, of the first file", len(ws))
	}
	if want := []run{{src: mkloc(0, 0), dst: mkloc(1, 0), n: 2 * M / bs, len: 2 * M}}; !slices.Equal(relinks, want) {
		t.Errorf("runs %v; want %v", relinks, want)
	}
}

// A leftover two files share is rewritten only when every file that
// refers to its disk extent, as the filesystem lists them, is one of
// them: a third file whose extents the plan does not see (unchanged since
// the last run, or outside the index) would keep it.
func TestSharedLeftoverUnseenReference(t *testing.T) {
	const M = 1 << 20
	var files []file
	for i := range 2 {
		files = append(files, file{id: int64(i + 1), path: "a/f" + string(rune('0'+i)),
			vol: &volume{Volume: fsys.Volume{FS: "a", Subvol: 5}, btrfs: true}, Ino: uint64(257 + i), Size: 2 * M,
			extents: []fiemap.Extent{{Logical: 0, Physical: 100 * M, Length: 2 * M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Flags: fiemap.FlagShared | fiemap.FlagLast}}})
	}
	for _, tt := range []struct {
		name  string
		refs  []fiemap.Ref
		ok    bool
		wants int
	}{
		{"the two files", []fiemap.Ref{{Root: 5, Ino: 257}, {Root: 5, Ino: 258}}, true, 1},
		{"a third file", []fiemap.Ref{{Root: 5, Ino: 257}, {Root: 5, Ino: 258}, {Root: 5, Ino: 300}}, true, 0},
		{"a file of another subvolume", []fiemap.Ref{{Root: 5, Ino: 257}, {Root: 6, Ino: 258}}, true, 0},
		{"not known", nil, false, 0},
	} {
		var asked []int64
		extRefs := func(fi int, disk int64) ([]fiemap.Ref, bool) {
			asked = append(asked, disk)
			return tt.refs, tt.ok
		}
		ws, relinks, _ := rewrites(nil, files, bs, 0, extRefs, nil)
		if len(ws) != tt.wants || (tt.wants == 0 && len(relinks) != 0) {
			t.Errorf("%s: %d rewrites, %d runs; want %d rewrites", tt.name, len(ws), len(relinks), tt.wants)
		}
		if !slices.Equal(asked, []int64{100 * M}) {
			t.Errorf("%s: references asked for %v; want those of the extent at %d once", tt.name, asked, 100*M)
		}
	}
}

// A rewrite is planned from every reference the index records to its
// extent: a file whose extents are not at hand (a night did not regroup
// it) is given them by more, and the rewrites are planned again. Without
// it, a leftover two files share is left for the third, unseen, and one
// that a file alone seems to hold is rewritten for it alone, leaving the
// extent to the other.
func TestRewritesLoadReferrers(t *testing.T) {
	const M = 1 << 20
	ext := fiemap.Extent{Logical: 0, Physical: 100 * M, Length: 2 * M, DiskStart: 100 * M, DiskLen: 8 * M, Gen: 9, Flags: fiemap.FlagLast}
	mkfiles := func(n int) []file {
		var files []file
		for i := range n {
			files = append(files, file{id: int64(i + 1), path: "a/f" + string(rune('0'+i)),
				vol: &volume{Volume: fsys.Volume{FS: "a", Subvol: 5}, btrfs: true}, Ino: uint64(257 + i), Size: 2 * M})
		}
		return files
	}
	all := []fiemap.Ref{{Root: 5, Ino: 257}, {Root: 5, Ino: 258}, {Root: 5, Ino: 259}}
	extRefs := func(fi int, disk int64) ([]fiemap.Ref, bool) { return all, true }
	for _, tt := range []struct {
		name   string
		atHand int // files with their extents at hand, the first ones
		flags  uint32
	}{
		{"shared by two at hand", 2, fiemap.FlagShared},
		{"one at hand, flagged alone", 1, 0},
	} {
		for _, load := range []bool{false, true} {
			files := mkfiles(3)
			for i := range tt.atHand {
				e := ext
				e.Flags |= tt.flags
				files[i].extents = []fiemap.Extent{e}
			}
			var asked int
			var more func(int, fiemap.Extent) (bool, error)
			if load {
				more = func(fi int, e fiemap.Extent) (bool, error) {
					asked++
					if e.DiskStart != ext.DiskStart || e.Gen != ext.Gen {
						t.Errorf("%s: asked for extent %d gen %d", tt.name, e.DiskStart, e.Gen)
					}
					gave := false
					for i := range files {
						if files[i].extents == nil {
							e := ext
							e.Flags |= fiemap.FlagShared
							files[i].extents, files[i].settled, gave = []fiemap.Extent{e}, true, true
						}
					}
					return gave, nil
				}
			}
			ws, relinks, err := rewrites(nil, files, bs, 0, extRefs, more)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				got = append(got, fmt.Sprintf("%s shared %v", files[w.fi].path, w.w.Shared))
			}
			var want []string
			var wantRelinks int
			switch {
			case load:
				want, wantRelinks = []string{"a/f0 shared true"}, 2
			case tt.atHand == 1:
				want = []string{"a/f0 shared false"} // the extent left to the other
			}
			if !slices.Equal(got, want) || len(relinks) != wantRelinks {
				t.Errorf("%s, more %v: rewrites %q, %d runs; want %q, %d runs", tt.name, load, got, len(relinks), want, wantRelinks)
			}
			if load && asked == 0 {
				t.Errorf("%s: more never asked", tt.name)
			}
		}
	}
}

// An extent whose references at hand the runs move whole has its other
// references loaded too: what they keep of it is its leftover. Here a
// file and its snapshot, both shared whole onto a copy elsewhere, refer
// to all 8 blocks of the extent, and a later snapshot of the file, cut to
// its first block since and not at hand (a night did not regroup it),
// refers to that one: its block is rewritten, and the extent freed. A full
// run, which had the third file's extents at hand, planned that rewrite; a
// night left it out.
func TestRewritesLoadReferrersMovedWhole(t *testing.T) {
	const n = 8
	ext := fiemap.Extent{Logical: 0, Physical: 100 << 20, Length: n * bs, DiskStart: 100 << 20, DiskLen: n * bs, Gen: 9, Flags: fiemap.FlagShared | fiemap.FlagLast}
	cut := ext
	cut.Length = bs
	var files []file
	for i, size := range []int64{n * bs, n * bs, bs, n * bs} {
		files = append(files, file{id: int64(i + 1), path: "a/f" + string(rune('0'+i)),
			vol: &volume{Volume: fsys.Volume{FS: "a", Subvol: uint64(5 + i)}, btrfs: true}, Ino: 257, Size: size})
	}
	files[0].extents = []fiemap.Extent{ext}
	files[1].extents = []fiemap.Extent{ext}
	files[3].extents = []fiemap.Extent{{Logical: 0, Physical: 200 << 20, Length: n * bs, DiskStart: 200 << 20, DiskLen: n * bs, Gen: 9, Flags: fiemap.FlagLast}}
	runs := []run{
		{src: mkloc(3, 0), dst: mkloc(0, 0), n: n, len: n * bs},
		{src: mkloc(3, 0), dst: mkloc(1, 0), n: n, len: n * bs},
	}
	extRefs := func(fi int, disk int64) ([]fiemap.Ref, bool) {
		return []fiemap.Ref{{Root: 5, Ino: 257}, {Root: 6, Ino: 257}, {Root: 7, Ino: 257}}, true
	}
	asked := 0
	more := func(fi int, e fiemap.Extent) (bool, error) {
		asked++
		if e.DiskStart != ext.DiskStart {
			return false, nil
		}
		if files[2].extents != nil {
			return false, nil
		}
		files[2].extents, files[2].settled = []fiemap.Extent{cut}, true
		return true, nil
	}
	ws, _, err := rewrites(runs, files, bs, 0, extRefs, more)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range ws {
		got = append(got, fmt.Sprintf("%s %d+%d freed %d", files[w.fi].path, w.w.File.Off, w.w.Len, w.w.Freed))
	}
	if want := []string{fmt.Sprintf("a/f2 0+%d freed %d", bs, (n-1)*bs)}; !slices.Equal(got, want) {
		t.Errorf("rewrites %q (more asked %d times); want %q", got, asked, want)
	}
}

// TestCannotPay checks when sharedLeftover may decline an extent without
// looking at every reference to every block, and that where cannotPay
// says so, the long way declines too, also for extents made at random.
func TestCannotPay(t *testing.T) {
	const ds = 100 << 20
	vol := &volume{Volume: fsys.Volume{FS: "a", Subvol: 5}, btrfs: true}
	ref4 := func(fi int, logical, physical, length int64) ref {
		return ref{fi, fiemap.Extent{Logical: logical, Physical: ds + physical, Length: length, DiskStart: ds, DiskLen: 4 * bs, Gen: 9, Flags: fiemap.FlagShared}}
	}
	files := []file{
		{vol: vol, Size: 4 * bs},      // the extent whole
		{vol: vol, Size: 4 * bs},      // another copy of it
		{vol: vol, Size: 3*bs + 100},  // its last block partly
		{vol: vol, Size: 10 * bs},     // its first three blocks, at 2*bs in the file
		{vol: vol, Size: 4 * bs},      // a destination, of its first block
		{vol: vol, Size: 2*bs + 4000}, // a block of it, then another partly
		{vol: vol, Size: 100},         // 100 bytes of a block
		{vol: vol, Size: 100},
	}
	tiny := func(fi int) ref {
		return ref{fi, fiemap.Extent{Logical: 0, Physical: ds, Length: bs, DiskStart: ds, DiskLen: bs, Gen: 9, Flags: fiemap.FlagShared}}
	}
	moved := newDstRuns([]run{{src: mkloc(0, 0), dst: mkloc(4, 0), n: 1, len: bs}}, len(files))
	for _, tt := range []struct {
		name string
		refs []ref
		want bool
	}{
		{"two whole copies", []ref{ref4(0, 0, 0, 4*bs), ref4(1, 0, 0, 4*bs)}, true},
		{"a part and a whole copy", []ref{ref4(2, 0, 0, 4*bs), ref4(1, 0, 0, 4*bs)}, true},
		// 3996 bytes of the last block free, less than a quarter of the
		// 16 KiB extent: it does not pay.
		{"the last block partly only", []ref{ref4(2, 0, 0, 4*bs), ref4(3, 2*bs, 0, 3*bs)}, true},
		{"three blocks, then the fourth", []ref{ref4(3, 2*bs, 0, 3*bs), ref4(1, 3*bs, 3*bs, bs)}, true},
		{"a block referred to by none", []ref{ref4(5, 0, 0, 2*bs), ref4(1, 3*bs, 3*bs, bs)}, false},
		// The run moves the first block of file 4 away; file 0 still
		// refers to it.
		{"a reference moved", []ref{ref4(0, 0, 0, 4*bs), ref4(4, 0, 0, 4*bs)}, true},
		// The first block, moved away from file 4, has no other reference:
		// a quarter of the extent freed.
		{"a block moved out of its last reference", []ref{ref4(4, 0, 0, 4*bs), ref4(1, 3*bs, 3*bs, bs)}, false},
		{"a destination, elsewhere in it", []ref{ref4(0, 0, 0, 4*bs), ref4(4, bs, 0, 3*bs)}, true},
		// A block of which two files hold the first 100 bytes: 3996 of
		// 4096 bytes free, more than a quarter.
		{"a block held in part", []ref{tiny(6), tiny(7)}, false},
	} {
		diskLen := tt.refs[0].e.DiskLen
		if got := cannotPay(tt.refs, files, moved, ds, diskLen, bs, 0); got != tt.want {
			t.Errorf("%s: cannotPay = %v; want %v", tt.name, got, tt.want)
		}
		if tt.want {
			if ws, rs := blockOwners(tt.refs, files, moved, srcRanges{}, bs, 0); ws != nil || rs != nil {
				t.Errorf("%s: the long way = %v, %v; want nothing", tt.name, ws, rs)
			}
		}
	}
	// Extents of 1 to 8 blocks that 2 to 5 files refer to, each at a
	// block of the extent and of the file of its own, a file ending in a
	// partial block now and then, some files destinations of a block.
	rng := rand.New(rand.NewPCG(3, 3))
	said, saidMoved, planned := 0, 0, 0
	for range 20000 {
		nb := 1 + rng.Int64N(8)
		var fs []file
		var refs []ref
		var moved []run
		for fi := range 2 + rng.IntN(4) {
			first := rng.Int64N(nb)
			n := 1 + rng.Int64N(nb-first)
			at := rng.Int64N(3) * bs
			size := at + n*bs
			if rng.IntN(3) == 0 {
				size -= 1 + rng.Int64N(bs-1)
			}
			if rng.IntN(3) == 0 {
				size += rng.Int64N(2 * bs)
			}
			fs = append(fs, file{vol: vol, Size: size})
			refs = append(refs, ref{fi, fiemap.Extent{Logical: at, Physical: ds + first*bs, Length: n * bs, DiskStart: ds, DiskLen: nb * bs, Gen: 9, Flags: fiemap.FlagShared}})
			// Runs into the file, one block to three, the last ending at
			// EOF cut there.
			for b := at / bs; b < at/bs+n+1; b++ {
				if rng.IntN(4) != 0 || b*bs >= size {
					continue
				}
				k := 1 + rng.Int64N(3)
				length := min(k*bs, size-b*bs)
				moved = append(moved, run{src: mkloc(0, 0), dst: mkloc(fi, b), n: (length + bs - 1) / bs, len: length})
				b += k
			}
		}
		byDst := newDstRuns(moved, len(fs))
		for _, minNet := range []int64{0, bs, 64 << 10} {
			if !cannotPay(refs, fs, byDst, ds, nb*bs, bs, minNet) {
				if ws, _ := blockOwners(refs, fs, byDst, srcRanges{}, bs, minNet); ws != nil {
					planned++
				}
				continue
			}
			said++
			if len(moved) > 0 {
				saidMoved++
			}
			if ws, rs := blockOwners(refs, fs, byDst, srcRanges{}, bs, minNet); ws != nil || rs != nil {
				t.Fatalf("cannotPay said so, but the long way planned %v, %v\nrefs %+v\nfiles %+v\nruns %+v", ws, rs, refs, fs, moved)
			}
		}
	}
	t.Logf("cannotPay said so %d times (%d with runs moving references), the long way planned %d times where it did not", said, saidMoved, planned)
	if saidMoved < 1000 || planned < 1000 {
		t.Error("want cannotPay to say so with runs moving references, and rewrites where it does not")
	}
}

// spansCover finds whether a file's runs, in destination order, cover a
// range: from the run that ends past its start, with no gap to its end.
func TestSpansCover(t *testing.T) {
	runs := []run{ // blocks 0-1, 2-4, 6-7 (the last one 100 bytes of block 7)
		{dst: mkloc(0, 0), n: 2, len: 2 * bs},
		{dst: mkloc(0, 2), n: 3, len: 3 * bs},
		{dst: mkloc(0, 6), n: 2, len: bs + 100},
	}
	for _, c := range []struct {
		lo, hi int64
		want   bool
	}{
		{0, 5 * bs, true},
		{bs + 10, 4 * bs, true},
		{4 * bs, 6 * bs, false},
		{6 * bs, 7*bs + 100, true},
		{6 * bs, 7*bs + 101, false},
		{8 * bs, 9 * bs, false},
		{3 * bs, 3 * bs, true},
	} {
		if got := spansCover(runs, bs, c.lo, c.hi); got != c.want {
			t.Errorf("spansCover [%d, %d) = %v; want %v", c.lo, c.hi, got, c.want)
		}
	}
}
