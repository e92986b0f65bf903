package runs

import (
	"math/rand/v2"
	"reflect"
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
	ws, _ := rewrites(nil, files, bs, 0)
	var got []string
	for _, w := range ws {
		got = append(got, files[w.fi].path)
	}
	if len(ws) != 1 || files[ws[0].fi].vol.FS != "a" || !ws[0].w.Shared {
		t.Errorf("rewrites of %v; want one, shared, of a file of a", got)
	}
}
