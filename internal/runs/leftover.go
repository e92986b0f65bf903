package runs

import (
	"cmp"
	"context"
	"slices"

	"same/internal/fiemap"
	"same/internal/index"
)

// markLeftovers marks as involved the files that refer to a leftover: a
// btrfs disk extent whose stored bytes are partly referred to by no file
// of the index, enough that its rewrite would pay (see rewriteOf). Such
// extents are left by overwrites inside large files (VM images,
// databases: btrfs writes the new data elsewhere and keeps the whole old
// extent while any part of it is referred to), and by a run interrupted
// or limited between a rewrite and its dedupe lines. A file without
// duplicates is not involved otherwise, so remap would not map it nor
// rewrites look at it.
//
// It goes by the references the index recorded (those whose disk extent
// is known: btrfs, as root); remap then maps the files as they are now,
// and rewrites plans from that. References from outside the index (a
// snapshot not hashed) cannot be seen here: FIEMAP shows the extent
// shared, and it is left alone.
func markLeftovers(ctx context.Context, ix *index.Index, files []file, byID fileIndex, involved []bool, minNet int64) error {
	// The references to one disk extent, by filesystem: a key names an
	// extent only within its filesystem.
	type refsOn struct {
		refs []int  // files referring to it (indexes in files)
		used []span // the parts of its data they refer to
		fit  bool
	}
	var (
		key   fiemap.Extent // the disk extent whose references are in byFS
		byFS  = make(map[string]*refsOn)
		inAll = true // no reference out of scope
	)
	done := func() {
		for _, r := range byFS {
			if inAll && r.fit && len(r.refs) > 0 && leftover(key.DiskLen, r.used, minNet) {
				for _, fi := range r.refs {
					involved[fi] = true
				}
			}
		}
		clear(byFS)
		inAll = true
	}
	// An extent referred to whole is no leftover: those left out.
	err := ix.ScanPartDiskExtents(ctx, func(id int64, e fiemap.Extent) error {
		if e.DiskStart == 0 {
			return nil // a hole
		}
		if e.DiskStart != key.DiskStart || e.DiskLen != key.DiskLen || e.Gen != key.Gen {
			done()
			key = e
		}
		fi, ok := byID.of(id)
		if !ok || !files[fi].vol.btrfs {
			// Out of scope (-include, another filesystem left out): a
			// reference all the same, but no file to plan in, and no
			// telling which filesystem it is on.
			inAll = false
			return nil
		}
		r := byFS[files[fi].vol.FS]
		if r == nil {
			r = &refsOn{fit: true}
			byFS[files[fi].vol.FS] = r
		}
		// A piece past the file's end holds no data of it: rewriteOf
		// writes up to the end alone, and what lies past it is freed.
		if n := min(e.Length, files[fi].Size-e.Logical); n > 0 {
			r.used = append(r.used, span{e.Offset, e.Offset + n})
		}
		// Compressed extents' offsets are in their data, not on disk;
		// rewriteOf declines the others.
		if e.Flags&(unfit&^fiemap.FlagShared) != 0 {
			r.fit = false
		}
		r.refs = append(r.refs, fi)
		return nil
	})
	done()
	return err
}

// leftover reports whether a disk extent of n bytes whose data the spans
// (in any order, overlapping) refer to leaves unreferenced at least minNet
// bytes and at least a quarter of it: what its rewrite must free to be
// planned.
func leftover(n int64, used []span, minNet int64) bool {
	slices.SortFunc(used, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var ref, end int64
	for _, s := range used {
		lo, hi := max(s.lo, end), min(s.hi, n)
		if hi > lo {
			ref += hi - lo
			end = hi
		}
	}
	return pays(n-ref, n, minNet)
}
