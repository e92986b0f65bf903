package runs

import (
	"cmp"
	"slices"
	"sort"
	"strings"

	"same/internal/fiemap"
	"same/internal/plan"
)

// DefaultRewriteMin is the least an extent's rewrite must free, net, to be
// planned.
const DefaultRewriteMin = 64 << 10

// rewriteAt is a planned rewrite and the file (index in files) it is in.
type rewriteAt struct {
	w  *plan.Rewrite
	fi int
}

// rewrites plans, for each disk extent on btrfs (see groups) that would
// not be freed otherwise, a rewrite of its pieces that no run covers
// (plan.Rewrite): the extent is freed, at the cost of writing those pieces
// anew. Two kinds of extent call for one: those of a destination that the
// runs cover only in part, and leftovers, whose stored bytes are partly
// referred to by no file (a run interrupted or failed between a rewrite
// and its dedupe lines leaves them, and so do overwrites inside large
// files), whether or not runs cover them. A rewrite pays when it frees, net,
// at least a quarter of the extent (so at most three bytes are written for
// one freed) and at least minNet bytes. Extents that something else
// shares, inline, compressed, unwritten or delayed ones are left alone, and
// so are those holding the source of a run (sharing them keeps them).
// runs are in destination order. The rewrites come best first: by net
// bytes freed per byte written, then by path and offset.
//
// extRefs, if set, lists the files referring to a disk extent (see
// extentRefs): a leftover is rewritten only when every file it lists is
// one whose references the plan sees (see knownRefs).
//
// more, if set, gives the files of the index that refer to a disk extent
// their recorded extents where they have none at hand (see
// loadReferrers), and reports whether it gave any. Which files have
// their extents at hand depends on what grouping mapped, and a night
// that regroups what changed maps fewer than a full run: the extents a
// rewrite would be planned for, or left for a reference not at hand, and
// those whose references at hand the runs move whole (a reference not
// at hand may keep a leftover), have all their references in the index
// given theirs, and the rewrites are planned again with them, until none
// is given more. So a
// rewrite is planned from every reference the index records, whichever
// files grouping mapped.
func rewrites(runs []run, files []file, bs, minNet int64, extRefs func(fi int, disk int64) ([]fiemap.Ref, bool), more func(fi int, e fiemap.Extent) (bool, error)) ([]rewriteAt, []run, error) {
	for {
		out, relinks, asked := planRewrites(runs, files, bs, minNet, extRefs)
		if more == nil {
			return out, relinks, nil
		}
		grew := false
		for _, a := range asked {
			g, err := more(a.fi, a.e)
			if err != nil {
				return nil, nil, err
			}
			grew = grew || g
		}
		if !grew {
			return out, relinks, nil
		}
		markShared(files)
	}
}

// planRewrites is rewrites from the extents at hand; asked are references
// to the disk extents it planned a rewrite for or left for a reference
// not at hand.
func planRewrites(runs []run, files []file, bs, minNet int64, extRefs func(fi int, disk int64) ([]fiemap.Ref, bool)) (out []rewriteAt, relinks []run, asked []ref) {
	byDst := newDstRuns(runs, len(files))
	refs := make(map[diskKey][]ref)
	for fi := range files {
		f := &files[fi]
		if !f.vol.btrfs || f.stale {
			continue
		}
		for _, e := range f.extents {
			if e.DiskStart != 0 {
				k := diskOf(f, e)
				refs[k] = append(refs[k], ref{fi, e})
			}
		}
	}
	nextTo := copyNextTo(files)
	// cannot reports whether file fi is in a read-only subvolume with no
	// file to make a copy next to.
	cannot := func(fi int) bool { return files[fi].readonly && nextTo[files[fi].class] < 0 }
	for fi := range files {
		f := &files[fi]
		if !f.vol.btrfs || f.stale || f.immutable || len(f.extents) == 0 || cannot(fi) {
			continue
		}
		for _, g := range groups(f) {
			if shared(g) {
				continue // see below
			}
			if w := rewriteOf(byDst.of(fi), f, bs, minNet, g); w != nil {
				out = append(out, rewriteAt{w, fi})
				for _, e := range g {
					asked = append(asked, ref{fi, e})
				}
			}
		}
	}
	// Disk extents shared between files of the index, in the order of
	// their first reference.
	var order []diskKey
	for fi := range files {
		for _, e := range files[fi].extents {
			k := diskOf(&files[fi], e)
			if rs := refs[k]; e.DiskStart != 0 && e.Flags&fiemap.FlagShared != 0 && len(rs) > 0 && rs[0].fi == fi && rs[0].e == e {
				order = append(order, k)
			}
		}
	}
	// The ranges runs read of each file, which only sharedLeftover asks.
	var srcs srcRanges
	if len(order) > 0 {
		srcs = newSrcRanges(runs, len(files), bs)
	}
	for _, k := range order {
		ws, more := sharedLeftover(refs[k], files, byDst, srcs, bs, minNet)
		if slices.ContainsFunc(ws, func(w rewriteAt) bool { return cannot(w.fi) }) {
			continue // a copy it cannot make
		}
		if len(ws) > 0 || movedWhole(refs[k], files, byDst, bs) {
			// With the references not at hand (see rewrites), a rewrite
			// may pay, or not: where runs move every reference at hand,
			// what the others keep of the extent is its leftover.
			asked = append(asked, refs[k][0])
		}
		if len(ws) > 0 && extRefs != nil && !knownRefs(refs[k], files, extRefs) {
			continue // it would not free the extent
		}
		out = append(out, ws...)
		relinks = append(relinks, more...)
	}
	for _, w := range out {
		if f := &files[w.fi]; f.readonly {
			at := rangeOf(&files[nextTo[f.class]], 0)
			w.w.CopyNextTo = &at
		}
	}
	slices.SortStableFunc(out, func(a, b rewriteAt) int {
		// a.Freed/a.Bytes > b.Freed/b.Bytes first; both sides stay below
		// 2^63 (extents are at most 128 MiB on btrfs, far less than 2^31).
		if c := cmp.Compare(b.w.Freed*a.w.Bytes, a.w.Freed*b.w.Bytes); c != 0 {
			return c
		}
		if c := strings.Compare(a.w.File.Path, b.w.File.Path); c != 0 {
			return c
		}
		return cmp.Compare(a.w.File.Off, b.w.File.Off)
	})
	return out, relinks, asked
}

// copyNextTo returns, for each class of files, the file next to which a
// rewrite of a file in a read-only subvolume makes its copy (its own
// directory cannot hold it), or -1 when the class has none: a file of the
// class in a writable btrfs subvolume that was mapped and found unchanged
// since hashed (so its path is known good), the one modified longest ago
// (the least likely to change before the plan is applied), then the first
// by path.
func copyNextTo(files []file) map[int32]int {
	at := make(map[int32]int)
	for fi := range files {
		f := &files[fi]
		if _, ok := at[f.class]; !ok {
			at[f.class] = -1
		}
		if !f.vol.btrfs || f.readonly || f.stale || f.settled || f.extents == nil {
			continue
		}
		if k := at[f.class]; k < 0 || f.Mtime < files[k].Mtime {
			at[f.class] = fi
		}
	}
	return at
}

// markShared marks shared (FlagShared) every extent of the btrfs files
// (but those changed since hashed) whose disk extent two of them refer
// to. FIEMAP does not always say so: btrfs of Linux 6.18 left the flag
// off an extent that two files of one read-only snapshot referred to, the
// second at other offsets, and a plan that trusted it rewrote the extent
// for the first file alone, which the second kept (applysame refused it:
// the extent was shared by then), and counted it freed.
func markShared(files []file) {
	each := func(fn func(fi int, e *fiemap.Extent)) {
		for fi := range files {
			f := &files[fi]
			if !f.vol.btrfs || f.stale {
				continue
			}
			for i := range f.extents {
				if f.extents[i].DiskStart != 0 {
					fn(fi, &f.extents[i])
				}
			}
		}
	}
	type owners struct{ last, n int } // the last file seen, and how many
	by := make(map[diskKey]owners)
	each(func(fi int, e *fiemap.Extent) {
		k := diskOf(&files[fi], *e)
		if o, ok := by[k]; !ok || o.last != fi {
			by[k] = owners{fi, o.n + 1}
		}
	})
	each(func(fi int, e *fiemap.Extent) {
		if by[diskOf(&files[fi], *e)].n > 1 {
			e.Flags |= fiemap.FlagShared
		}
	})
}

// ref is a file's reference to part of a disk extent.
type ref struct {
	fi int
	e  fiemap.Extent
}

// span is a range [lo, hi) of a file, or of a disk.
type span struct{ lo, hi int64 }

// covered reports whether any of spans overlaps [lo, hi).
func covered(spans []span, lo, hi int64) bool {
	for _, s := range spans {
		if s.lo < hi && lo < s.hi {
			return true
		}
	}
	return false
}

// sharedLeftover plans the rewrite of a disk extent that files of the
// index share (refs, in file order) and that is partly referred to by
// none of them: an interrupted or limited run leaves such extents when a
// line shares a range of an extent whose rewrite was not done, and so do
// the copies of rewrites that later lines moved in part. Each block of
// the extent still referred to gets an owner, the first file referring to
// it there that no run moves away: the owner's blocks are copied (one
// rewrite per owner, plan.Rewrite.Shared set), and the other files'
// references are moved onto the owner's by the runs it returns, which
// come after the rewrite (their source lies in its extent). A reference
// that runs use as a source owns its block, for their lines then come
// after its rewrite too. It declines when two references to a block are
// sources, when a partial block does not end both ranges at EOF, when an owner's blocks
// lie at different distances from their disk offsets, and when the net
// gain is below minNet or a quarter of the extent. References from
// outside the index (a snapshot not hashed) cannot be seen: the rewrite
// then frees nothing.
func sharedLeftover(refs []ref, files []file, byDst dstRuns, srcs srcRanges, bs, minNet int64) ([]rewriteAt, []run) {
	if len(refs) < 2 {
		return nil, nil
	}
	ds, diskLen := refs[0].e.DiskStart, refs[0].e.DiskLen
	if diskLen <= 0 || diskLen%bs != 0 || diskLen > 1<<30 || cannotPay(refs, files, byDst, ds, diskLen, bs, minNet) {
		return nil, nil
	}
	return blockOwners(refs, files, byDst, srcs, bs, minNet)
}

// movedWhole reports whether runs (byDst) move every block of each of
// refs, references to one disk extent: the extent would be freed if no
// other file referred to it.
func movedWhole(refs []ref, files []file, byDst dstRuns, bs int64) bool {
	for _, r := range refs {
		f := &files[r.fi]
		if !spansCover(byDst.of(r.fi), bs, r.e.Logical, min(r.e.End(), f.Size)) {
			return false
		}
	}
	return true
}

// spansCover reports whether the destination ranges of runs, those of
// one file in destination order, cover [lo, hi) of it. It looks from the
// first that ends past lo: a file cut into a hundred thousand extents has
// as many runs, and each of its extents is asked of.
func spansCover(runs []run, bs, lo, hi int64) bool {
	i := sort.Search(len(runs), func(i int) bool { return dstSpan(runs[i], bs).hi > lo })
	for _, r := range runs[i:] {
		if lo >= hi {
			break
		}
		s := dstSpan(r, bs)
		if s.lo > lo {
			return false
		}
		lo = s.hi
	}
	return lo >= hi
}

// knownRefs reports whether every file that refers to the disk extent
// of rs (its references among the files' extents) is among them, as
// extRefs lists them: only then does moving rs's references free the
// extent. The plan sees only the extents of the files it reads (on a
// re-run regrouping what changed, not those of files unchanged and
// unnamed since), and none of files outside the index; a rewrite that
// leaves one of them behind writes a copy and frees nothing. False when
// the references cannot be listed.
func knownRefs(rs []ref, files []file, extRefs func(fi int, disk int64) ([]fiemap.Ref, bool)) bool {
	all, ok := extRefs(rs[0].fi, rs[0].e.DiskStart)
	if !ok {
		return false
	}
	seen := make(map[fiemap.Ref]bool, len(rs))
	for _, r := range rs {
		f := &files[r.fi]
		seen[fiemap.Ref{Root: f.vol.Subvol, Ino: f.Ino}] = true
	}
	for _, r := range all {
		if !seen[r] {
			return false
		}
	}
	return true
}

// blockOwners is sharedLeftover the long way, block by block, for an
// extent of refs that cannotPay did not decline.
func blockOwners(refs []ref, files []file, byDst dstRuns, srcs srcRanges, bs, minNet int64) ([]rewriteAt, []run) {
	ds, diskLen := refs[0].e.DiskStart, refs[0].e.DiskLen
	dsts := make(map[int][]span)
	for _, r := range refs {
		f := &files[r.fi]
		if r.e.Flags&(unfit&^fiemap.FlagShared) != 0 || f.class != files[refs[0].fi].class || !f.vol.btrfs || f.stale || f.immutable ||
			r.e.Logical%bs != 0 || (r.e.Physical-ds)%bs != 0 {
			return nil, nil
		}
		if _, ok := dsts[r.fi]; !ok {
			dsts[r.fi] = dstSpans(byDst.of(r.fi), bs)
		}
	}
	// The references to each block of the extent, in file order.
	type at struct {
		fi  int
		off int64
		src bool // runs use it as a source: it must own the block
	}
	blocks := make([][]at, diskLen/bs)
	for _, r := range refs {
		for off := r.e.Logical; off < r.e.End() && off < files[r.fi].Size; off += bs {
			b := (r.e.Physical - ds + off - r.e.Logical) / bs
			if b < 0 || b >= int64(len(blocks)) {
				return nil, nil
			}
			if covered(dsts[r.fi], off, off+bs) {
				continue // a run moves it
			}
			blocks[b] = append(blocks[b], at{r.fi, off, covered(srcs.of(r.fi), off, off+bs)})
		}
	}
	// Each file owns blocks at one distance between disk and file
	// offsets, that at which it refers to the most blocks (a file shared
	// onto another's ranges refers to them at several); of the files
	// referring to a block at their distance, the one referring to the
	// most blocks owns it.
	type fileDist struct{ fi, d int64 }
	count := make(map[fileDist]int)
	for b, as := range blocks {
		for _, x := range as {
			count[fileDist{int64(x.fi), ds + int64(b)*bs - x.off}]++
		}
	}
	dist := make(map[int]int64)
	for fd, n := range count {
		if d, ok := dist[int(fd.fi)]; !ok || n > count[fileDist{fd.fi, d}] || (n == count[fileDist{fd.fi, d}] && fd.d < d) {
			dist[int(fd.fi)] = fd.d
		}
	}
	copies := make(map[int][]plan.Span) // by owner
	var owners []int
	var written int64
	for b, as := range blocks {
		if len(as) == 0 {
			continue
		}
		best, srcs := -1, 0
		for k, x := range as {
			d := ds + int64(b)*bs - x.off
			if x.src {
				// Its lines come after its rewrite, so they share the
				// copy; no other run may move it first.
				srcs++
				if d != dist[x.fi] {
					return nil, nil
				}
				best = k
				continue
			}
			if srcs == 0 && d == dist[x.fi] && (best < 0 || count[fileDist{int64(x.fi), d}] > count[fileDist{int64(as[best].fi), dist[as[best].fi]}]) {
				best = k
			}
		}
		if best < 0 || srcs > 1 {
			return nil, nil
		}
		as[0], as[best] = as[best], as[0]
		o := as[0]
		of := &files[o.fi]
		n := min(bs, of.Size-o.off)
		if _, ok := copies[o.fi]; !ok {
			owners = append(owners, o.fi)
		}
		if sp := copies[o.fi]; len(sp) > 0 && sp[len(sp)-1].Off+sp[len(sp)-1].Len == o.off {
			sp[len(sp)-1].Len += n
		} else {
			copies[o.fi] = append(sp, plan.Span{Off: o.off, Len: n})
		}
		written += n
		for _, x := range as[1:] {
			m := min(bs, files[x.fi].Size-x.off)
			if m != n || (n < bs && (x.off+m != files[x.fi].Size || o.off+n != of.Size)) {
				return nil, nil
			}
		}
	}
	net := diskLen - written
	if written == 0 || !pays(net, diskLen, minNet) {
		return nil, nil
	}
	// The other references to each block move onto its owner's (as[0]).
	// Made only now: an extent that snapshots share whole gives a
	// reference per snapshot to every block, and most do not pay.
	// A run grows block by block while its next block follows on in both
	// files: the last run of each file is where its next block may go
	// (the references of one block are those of several files, one after
	// another, and each file's run goes on at the next block).
	var relinks []run
	last := make(map[int]int) // by file: index in relinks
	for _, as := range blocks {
		if len(as) == 0 {
			continue
		}
		o := as[0]
		for _, x := range as[1:] {
			m := min(bs, files[x.fi].Size-x.off)
			if k, ok := last[x.fi]; ok && relinks[k].len%bs == 0 &&
				relinks[k].dst == mkloc(x.fi, x.off/bs)-loc(relinks[k].n) && relinks[k].src == mkloc(o.fi, o.off/bs)-loc(relinks[k].n) {
				relinks[k].n++
				relinks[k].len += m
				continue
			}
			last[x.fi] = len(relinks)
			relinks = append(relinks, run{src: mkloc(o.fi, o.off/bs), dst: mkloc(x.fi, x.off/bs), n: 1, len: m})
		}
	}
	var ws []rewriteAt
	for _, fi := range owners {
		sp := copies[fi]
		var n int64
		for _, s := range sp {
			n += s.Len
		}
		first, last := sp[0], sp[len(sp)-1]
		ws = append(ws, rewriteAt{&plan.Rewrite{
			Type: plan.TypeRewrite, V: plan.Version, File: rangeOf(&files[fi], first.Off),
			Len: last.Off + last.Len - first.Off, Physical: dist[fi] + first.Off, Copy: sp, Bytes: n,
			Freed: net * n / written, Shared: true,
		}, fi})
	}
	return ws, relinks
}

// cannotPay reports whether sharedLeftover declines the disk extent at
// ds of diskLen bytes that refs refer to, as it finds without a look at
// every reference to every block: what the rewrite could free at most
// does not pay. It takes the ranges of each reference that no run moves
// away; a block one of them refers to whole is copied whole (or the
// extent declined), one that only partial last blocks refer to costs at
// least the shortest of them, and one no reference is left in is freed.
// It spares the look at the extents that a live subvolume and its
// snapshots share whole, almost all of them on a host of snapshots: a
// reference per snapshot to every block of every extent, night after
// night, the day's runs moving a few of them.
func cannotPay(refs []ref, files []file, byDst dstRuns, ds, diskLen, bs, minNet int64) bool {
	// The disk ranges still referred to whole, and by block the shortest
	// partial last block still referred to there.
	spans := make([]span, 0, len(refs))
	var partial map[int64]int64
	for _, r := range refs {
		if (r.e.Physical-ds)%bs != 0 || r.e.Logical%bs != 0 {
			return true // sharedLeftover declines it
		}
		size := files[r.fi].Size
		end := min(r.e.End(), size) // the file's range that refers to the extent
		whole := size / bs * bs     // the file's whole blocks end there
		disk := r.e.Physical - ds - r.e.Logical
		// keep notes [lo, hi) of the file, which no run moves away.
		keep := func(lo, hi int64) {
			if w := min(hi, whole); w > lo {
				spans = append(spans, span{disk + lo, disk + w})
			}
			if size%bs != 0 && lo <= whole && whole < hi {
				if partial == nil {
					partial = make(map[int64]int64)
				}
				b := (disk + whole) / bs
				if n, ok := partial[b]; !ok || size%bs < n {
					partial[b] = size % bs
				}
			}
		}
		// The runs into the file, in order: a block any of them reaches
		// into is moved.
		at := r.e.Logical
		for _, m := range byDst.of(r.fi) {
			lo := m.dst.block() * bs
			hi := (lo + m.len + bs - 1) / bs * bs
			if hi <= at || lo >= end {
				continue
			}
			if lo > at {
				keep(at, lo)
			}
			at = hi
		}
		if at < end {
			keep(at, end)
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var reach, net int64
	// gap adds what the blocks from reach up to hi, which no reference
	// refers to whole, free at most.
	gap := func(hi int64) {
		if len(partial) == 0 {
			net += max(0, hi-reach)
			reach = max(reach, hi)
			return
		}
		for ; reach < hi; reach += bs {
			net += bs - partial[reach/bs]
		}
	}
	for _, sp := range spans {
		if sp.lo > reach {
			gap(min(sp.lo, diskLen))
		}
		reach = max(reach, sp.hi)
	}
	gap(diskLen)
	return !pays(net, diskLen, minNet)
}

// pays reports whether rewriting an extent of n bytes that frees net of
// them is worth it: at least minNet, and at least a quarter of the extent
// (at most three bytes written for one freed).
func pays(net, n, minNet int64) bool { return net >= minNet && 4*net >= n }

// dstSpans returns the destination ranges of runs.
func dstSpans(runs []run, bs int64) []span {
	out := make([]span, len(runs))
	for i, r := range runs {
		out[i] = dstSpan(r, bs)
	}
	return out
}

// dstSpan is the range of its destination file that r covers.
func dstSpan(r run, bs int64) span { return span{r.dst.block() * bs, r.dst.block()*bs + r.len} }

const unfit = fiemap.FlagShared | fiemap.FlagDataInline | fiemap.FlagEncoded | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// rewriteOf returns the rewrite of disk extent g of f, if one pays. runs
// are those whose destination is f, in order; the cost is that of g's
// pieces and the runs that overlap them, not of every run of f for each
// piece.
func rewriteOf(runs []run, f *file, bs, minNet int64, g []fiemap.Extent) *plan.Rewrite {
	dist := g[0].Physical - g[0].Logical
	for _, e := range g {
		if e.Flags&unfit != 0 {
			return nil
		}
		// applysame finds the pieces at the distance the plan implies; a
		// piece cloned elsewhere in the file is not where it would look.
		if e.Physical-e.Logical != dist {
			return nil
		}
	}
	// The pieces and the runs are both in file order: merge them, from
	// the first run that ends after the piece's start.
	var spans []plan.Span
	for _, e := range g {
		end := min(e.End(), f.Size)
		pos := e.Logical
		k, _ := slices.BinarySearchFunc(runs, pos, func(r run, off int64) int {
			return cmp.Compare(r.dst.block()*bs+r.len, off+1)
		})
		for _, r := range runs[k:] {
			lo, hi := r.dst.block()*bs, r.dst.block()*bs+r.len
			if lo >= end {
				break
			}
			if hi <= pos {
				continue
			}
			lo, hi = max(lo, pos), min(hi, end)
			if lo > pos {
				spans = append(spans, plan.Span{Off: pos, Len: lo - pos})
			}
			pos = hi
		}
		if pos < end {
			spans = append(spans, plan.Span{Off: pos, Len: end - pos})
		}
	}
	if len(spans) == 0 {
		return nil // covered whole: freed without a rewrite
	}
	var written int64
	for _, s := range spans {
		written += s.Len
	}
	// The extent's size less what is written: the bytes the runs cover
	// and, in a leftover, those nothing refers to any more.
	n := length(g)
	net := n - written
	if !pays(net, n, minNet) {
		return nil
	}
	first, last := g[0], g[len(g)-1]
	return &plan.Rewrite{
		Type: plan.TypeRewrite, V: plan.Version,
		File: rangeOf(f, first.Logical),
		Len:  last.End() - first.Logical, Physical: first.Physical, Copy: spans, Bytes: written, Freed: net,
	}
}
