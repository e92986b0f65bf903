package runs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/index"
	"same/internal/plan"
)

// wholeFiles plans whole-file duplicates only: files of equal size and
// equal block sums, each group sharing the first path's file, or the one
// whose storage most of them share already (reflinked copies, snapshots),
// so that the fewest move. It needs one digest per file, not per block.
func wholeFiles(ctx context.Context, ix *index.Index, files []file, byID fileIndex, bs int64, o Options, emit func(plan.Record) error, sum *Summary) error {
	type whole struct {
		size   int64
		digest [32]byte
		f      int
	}
	var all []whole
	// cur is the row whose sums are at hand, and in the files in scope
	// that hold them (it and those that share them).
	cur, in, zero := int64(-1), []int(nil), true
	h := sha256.New()
	// The digest is of a file's sums up to its last non-zero one, with
	// zero sums where chunks of zero blocks were not stored: the same for
	// the same content, however the index holds it (see index.Tx.Put).
	var next, pending int // the block after the last one seen; zero sums held back
	var zeroSums [512]byte
	flush := func() {
		var d [32]byte
		h.Sum(d[:0])
		for _, fi := range in {
			if !zero && files[fi].Size >= o.MinLen {
				all = append(all, whole{size: files[fi].Size, digest: d, f: fi})
			}
		}
		h.Reset()
		zero = true
		next, pending = 0, 0
	}
	var done, shown int64
	err := ix.ScanSums(ctx, func(ids []int64, first int, sums []byte) error {
		if ids[0] != cur {
			flush()
			cur, in = ids[0], in[:0]
			for _, id := range ids {
				if fi, ok := byID.of(id); ok {
					in = append(in, fi)
				}
			}
		}
		if len(in) == 0 {
			return nil
		}
		if done += int64(len(in) * len(sums) / blockhash.SumSize); done-shown >= 1<<16 {
			o.progress("digesting files", done, sum.Blocks, "blocks")
			shown = done
		}
		pending += first - next
		n := len(sums) / blockhash.SumSize
		next = first + n
		for i := 0; i < n; {
			j := i
			for j < n && blockhash.At(sums, j) == blockhash.Zero {
				j++
			}
			pending += j - i
			if j == n {
				break
			}
			for ; pending > 0; pending -= min(pending, len(zeroSums)/blockhash.SumSize) {
				h.Write(zeroSums[:min(pending*blockhash.SumSize, len(zeroSums))])
			}
			k := j
			for k < n && blockhash.At(sums, k) != blockhash.Zero {
				k++
			}
			h.Write(sums[j*blockhash.SumSize : k*blockhash.SumSize])
			zero = false
			i = k
		}
		return nil
	})
	if err != nil {
		return err
	}
	flush()
	sum.Partitions = 1
	// A group is the equal files of one class (see file.class).
	slices.SortFunc(all, func(a, b whole) int {
		if c := cmp.Compare(a.size, b.size); c != 0 {
			return c
		}
		if c := slices.Compare(a.digest[:], b.digest[:]); c != 0 {
			return c
		}
		if c := cmp.Compare(files[a.f].class, files[b.f].class); c != 0 {
			return c
		}
		return cmp.Compare(a.f, b.f)
	})
	same := func(a, b whole) bool {
		return a.size == b.size && a.digest == b.digest && files[a.f].class == files[b.f].class
	}
	involved := make([]bool, len(files))
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && same(all[j], all[i]) {
			j++
		}
		for _, w := range all[i:j] {
			involved[w.f] = j-i > 1
		}
		i = j
	}
	if o.Live {
		sum.Skipped, _ = remap(files, involved, nil, &o)
	} else if err := loadExtents(ctx, ix, files, byID, involved, &o, nil); err != nil {
		return err
	}
	markShared(files) // for wholeFreed
	var runs []run
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && same(all[j], all[i]) {
			j++
		}
		group := slices.DeleteFunc(slices.Clone(all[i:j]), func(w whole) bool { return files[w.f].stale })
		i = j
		if len(group) < 2 {
			continue
		}
		// The source: with Options.NoReadOnly the first in a read-only
		// subvolume, else the first immutable one (neither can be a
		// destination), else the one whose extents most share.
		k := slices.IndexFunc(group, func(w whole) bool { return files[w.f].keepSource })
		if k < 0 {
			k = slices.IndexFunc(group, func(w whole) bool { return files[w.f].immutable })
		}
		if k > 0 {
			group[0], group[k] = group[k], group[0]
		} else if k < 0 {
			if k := mostShared(files, group, func(w whole) int { return w.f }); k > 0 {
				group[0], group[k] = group[k], group[0]
			}
		}
		src := &files[group[0].f]
		for _, w := range group[1:] {
			d := &files[w.f]
			if inline(src) || inline(d) || sameStorage(d, src) || d.keepSource {
				continue
			}
			if d.immutable {
				d.refused = true
				continue
			}
			runs = append(runs, run{src: mkloc(group[0].f, 0), dst: mkloc(w.f, 0), n: d.blocks(bs), len: d.Size, freed: wholeFreed(d)})
		}
	}
	sum.Immutable = refusedImmutable(files, &o)
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.dst, b.dst) })
	estimateBlockwise(runs, files, bs)
	return lines(ctx, ix, files, nil, nil, nil, nil, runs, nil, bs, emit, sum, &o)
}

// mostShared returns the index of the member of group (files, each given
// by fi) whose storage the most members share, the first of those; 0 when
// no member's is shared by more than the first's.
func mostShared[T any](files []file, group []T, fi func(T) int) int {
	count := make(map[string]int)
	keys := make([]string, len(group))
	var b []byte
	for i, m := range group {
		f := &files[fi(m)]
		if len(f.extents) == 0 {
			continue // storage not known: shared with none
		}
		b = b[:0]
		for _, e := range f.extents {
			b = binary.LittleEndian.AppendUint64(b, uint64(e.Logical))
			b = binary.LittleEndian.AppendUint64(b, uint64(e.Physical))
			b = binary.LittleEndian.AppendUint64(b, uint64(e.Length))
		}
		keys[i] = string(b)
		count[keys[i]]++
	}
	best := 0
	for i := range group {
		if keys[i] != "" && count[keys[i]] > count[keys[best]] {
			best = i
		}
	}
	if keys[best] == "" {
		return 0
	}
	return best
}

func inline(f *file) bool {
	return slices.ContainsFunc(f.extents, func(e fiemap.Extent) bool { return e.Flags&fiemap.FlagDataInline != 0 })
}

// sameStorage reports whether d's extents are s's: the files already share
// all their data.
func sameStorage(d, s *file) bool {
	return d.class == s.class && len(d.extents) > 0 &&
		slices.EqualFunc(d.extents, s.extents, func(a, b fiemap.Extent) bool {
			return a.Logical == b.Logical && a.Physical == b.Physical && a.Length == b.Length
		})
}

// wholeFreed is what deduplicating all of f, on btrfs, frees: its extents
// not shared with anything else. (Elsewhere estimateBlockwise counts.)
func wholeFreed(f *file) int64 {
	if !f.vol.btrfs {
		return 0
	}
	var n int64
	for _, e := range f.extents {
		if e.Flags&fiemap.FlagShared == 0 {
			n += e.Length
		}
	}
	return n
}
