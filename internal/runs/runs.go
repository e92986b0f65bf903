package runs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/plan"
	"same/internal/walk"
)

// Options shape a search.
type Options struct {
	MinLen     int64    // skip runs shorter than this many bytes
	Include    []string // only files matching one of these (walk.Matches)
	Exclude    []string // never files matching one of these
	WholeFiles bool     // only whole files equal to another whole file
	// Budget bounds the memory Find holds, in bytes (what the
	// files, extents and runs take aside); 0 means DefaultBudget. Sums
	// and mappings that do not fit go to temporary files under TmpDir,
	// the directory of the index when it is "".
	Budget int64
	TmpDir string
	// Live maps the files that runs would touch again (FIEMAP) and uses
	// their extents as they are now instead of those recorded, leaving out
	// files changed or gone since they were hashed. findsame sets it; tests
	// of hand-built indexes do not.
	Live bool
	// Rewrite plans rewrites of destination extents on btrfs that runs
	// cover only in part (see plan.Rewrite), when they free at least
	// RewriteMin bytes net (DefaultRewriteMin when 0).
	Rewrite    bool
	RewriteMin int64
	// SameOwner plans only between files of the same owner (see
	// docs/security.md); files whose owner is not recorded are left out.
	SameOwner bool
	// NoReadOnly never makes a file in a read-only btrfs subvolume (a
	// read-only snapshot) a destination; such files are preferred as
	// sources instead, so that the copies elsewhere come to share their
	// storage. It needs Live, to look at the subvolumes.
	NoReadOnly bool
	// Warn, if set, is told of each file left out by Live, of files left
	// out because an older index recorded them (path ""), and once of
	// each filesystem left out because it cannot deduplicate (an error
	// wrapping fstype.ErrCannotDedupe, with where it is mounted).
	Warn func(path string, err error)
	// Progress, if set, is told how each long phase goes: its name, what
	// is done of what total (0 when not known) and what is counted
	// ("files", "blocks", "runs"). It is called often, from one goroutine
	// at a time; it should draw at its own pace.
	Progress func(phase string, done, total int64, unit string)
}

// progress calls o.Progress, if set.
func (o *Options) progress(phase string, done, total int64, unit string) {
	if o.Progress != nil {
		o.Progress(phase, done, total, unit)
	}
}

// DefaultBudget is the memory Find may hold.
const DefaultBudget = 512 << 20

// Summary counts a plan.
type Summary struct {
	Lines int64 // plan lines, rewrites included
	// Rewrites counts rewrite lines; Written, the bytes they would write.
	Rewrites int64
	Written  int64
	Runs     int64 // (source, destination) runs
	Bytes    int64 // bytes to be deduplicated
	Freed    int64 // estimate of bytes freed
	Files    int   // files considered
	Blocks   int64 // non-empty blocks considered
	// Partitions counts the ranges of sums grouped one at a time: 1
	// when they all fit in memory.
	Partitions int
	Skipped    int // files left out: changed or gone since hashed
	// Unnamed counts files left out because their volume is known only by
	// the st_dev an older index recorded: hashfile names it on its next
	// run.
	Unnamed int
}

type file struct {
	id      int64
	path    string
	vol     fsys.Volume
	ino     uint64
	size    int64
	mtime   int64
	blocks  int64
	extents []fiemap.Extent
	stale   bool // changed or gone since hashed: never planned
	// readonly marks a file in a read-only subvolume, with
	// Options.NoReadOnly: never a destination.
	readonly bool
	// encoded marks a file with compressed extents when it was hashed.
	encoded bool
	btrfs   bool
	fsBlock int64 // the filesystem's block size
	// class groups the files that can share storage: those on one
	// filesystem (btrfs subvolumes included) with the same NOCOW
	// attribute (and with Options.SameOwner, the same owner).
	class int
}

// loc packs (file index, block) into one sortable word.
type loc uint64

func mkloc(f int, b int64) loc { return loc(uint64(f)<<32 | uint64(b)) }
func (l loc) file() int        { return int(l >> 32) }
func (l loc) block() int64     { return int64(l & 0xffffffff) }

type pair struct {
	sum uint64
	at  loc
}

type mapping struct{ dst, src loc }

type run struct {
	src, dst loc
	n        int64 // blocks
	len      int64 // bytes
	freed    int64
}

// pairSize is the memory of one pair.
const pairSize = 16

// largeIndex is the size of an index's pairs from which Find has the
// garbage collector run more often.
const largeIndex = 64 << 20

// finder holds what the stages of Find share.
type finder struct {
	ctx    context.Context
	ix     *index.Index
	o      *Options
	bs     int64
	files  []file
	byID   map[int64]int
	sum    *Summary
	tmpdir string
	// mapped marks the files that some mapping names: grouping fills it
	// in.
	mapped []bool
	// maps holds the mappings between grouping and chaining, in lists by
	// destination range: list k holds the destinations from bounds[k-1]
	// up to bounds[k].
	maps   *buckets
	bounds []loc
	// buf is the memory of the partition or list at hand.
	buf []words
}

// Find computes the plan for the index and calls emit with each line, in
// units of work (see plan.Unit): first the dedupe lines that need no
// rewrite, each a unit of its own, in order of source path and offset;
// then each rewrite, best first (see rewrites), followed by the dedupe
// lines that go with it.
func Find(ctx context.Context, ix *index.Index, o Options, emit func(plan.Record) error) (Summary, error) {
	var sum Summary
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	bs64, err := ix.BlockSize()
	if err != nil {
		return sum, err
	}
	if bs64 == 0 {
		return sum, nil // nothing hashed yet
	}
	bs := int64(bs64)
	files, byID, err := load(ctx, ix, o, bs, &sum)
	if err != nil {
		return sum, err
	}
	sum.Files = len(files)
	for _, f := range files {
		sum.Blocks += f.blocks
	}
	// The index holds no sums for the zero blocks at the end of a file nor
	// for chunks of zero blocks: a large sparse file must not make
	// grouping take more passes, or reserve room, for sums it never reads.
	held := min(sum.Blocks, storedSums(ctx, ix))
	if held*pairSize >= largeIndex && os.Getenv("GOGC") == "" {
		// The heap will be mostly pairs and mappings, which hold no
		// pointers and cost the collector little; at the default GOGC the
		// garbage of reading every sum in each pass would grow the heap to
		// twice them. A small index is done before that matters, and
		// collecting often only slows it.
		defer debug.SetGCPercent(debug.SetGCPercent(25))
	}
	if o.WholeFiles {
		return sum, wholeFiles(ctx, ix, files, byID, bs, o, emit, &sum)
	}
	f := &finder{ctx: ctx, ix: ix, o: &o, bs: bs, files: files, byID: byID, sum: &sum,
		tmpdir: cmp.Or(o.TmpDir, filepath.Dir(ix.Path()))}
	if err := f.group(held); err != nil {
		if f.maps != nil {
			f.maps.close()
		}
		return sum, err
	}
	if o.Live {
		// The files remap maps again: those the mappings name.
		involved := f.mapped
		sum.Skipped = remap(files, involved, &o)
	}
	runs, err := f.chain()
	if err != nil {
		return sum, err
	}
	if runs, err = bridge(ctx, ix, files, runs, bs); err != nil {
		return sum, err
	}
	runs = filter(runs, o)
	var refs func(int, int64) ([]fiemap.Ref, bool)
	if o.Live {
		refs = extentRefs(files)
	}
	estimate(runs, files, bs, refs)
	var ws []rewriteAt
	if o.Rewrite {
		var relinks []run
		ws, relinks = rewrites(runs, files, bs, cmp.Or(o.RewriteMin, DefaultRewriteMin))
		runs = append(runs, relinks...)
	}
	return sum, lines(ctx, ix, files, runs, ws, bs, emit, &sum, &o)
}

// load reads the files in scope, sorted by path, with their recorded
// extents. With o.Live it leaves the extents out: remap maps every file a
// run could touch, and the others' extents are never looked at.
func load(ctx context.Context, ix *index.Index, o Options, bs int64, sum *Summary) ([]file, map[int64]int, error) {
	vols, err := ix.Volumes(ctx)
	if err != nil {
		return nil, nil, err
	}
	var files []file
	byID := make(map[int64]int)
	classOf := classes()
	can := canDedupe(vols, o.Live, o.Warn)
	var total, n int64
	if o.Progress != nil {
		total = count(ctx, ix, "files")
	}
	err = ix.Files(ctx, func(f index.File) error {
		if n++; n%4096 == 0 {
			o.progress("loading files", n, total, "files")
		}
		if f.Path == "" || (len(o.Include) > 0 && !walk.Matches(o.Include, f.Path)) || walk.Matches(o.Exclude, f.Path) {
			return nil
		}
		if index.Legacy(f.Vol) {
			sum.Unnamed++
			return nil
		}
		if !can(f) {
			return nil
		}
		uid := int64(-1)
		if o.SameOwner {
			if f.UID == index.UIDUnknown {
				sum.Unnamed++
				return nil
			}
			uid = f.UID
		}
		if (f.Size+bs-1)/bs >= 1<<32 {
			// A location holds the block number in 32 bits.
			if o.Warn != nil {
				o.Warn(f.Path, fmt.Errorf("%s: %d blocks, more than findsame plans in one file (2^32): left out", f.Path, (f.Size+bs-1)/bs))
			}
			return nil
		}
		v := vols[f.Vol]
		files = append(files, file{
			id: f.ID, path: f.Path, vol: f.Vol, ino: f.Ino, size: f.Size, mtime: f.Mtime,
			blocks:  (f.Size + bs - 1) / bs,
			btrfs:   v.Magic == fstype.Btrfs,
			fsBlock: cmp.Or(v.BlockSize, bs),
			class:   classOf(f.Vol.FS, f.NoCOW == index.NoCOWSet, uid),
		})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if sum.Unnamed > 0 && o.Warn != nil {
		o.Warn("", fmt.Errorf("%d files left out: recorded by an older hashfile or without their owner; run hashfile again", sum.Unnamed))
	}
	if len(files) >= 1<<31 {
		return nil, nil, fmt.Errorf("too many files (%d)", len(files))
	}
	if o.NoReadOnly && o.Live {
		markReadOnly(files)
	}
	encoded, err := ix.EncodedFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	for i := range files {
		files[i].encoded = encoded[files[i].id]
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	for i, f := range files {
		byID[f.id] = i
	}
	o.progress("loading files", n, total, "files")
	if o.Live {
		return files, byID, nil
	}
	n = 0
	if o.Progress != nil {
		total = count(ctx, ix, "extents")
	}
	err = ix.ScanExtents(ctx, func(id int64, e fiemap.Extent) error {
		if n++; n%4096 == 0 {
			o.progress("loading extents", n, total, "extents")
		}
		if i, ok := byID[id]; ok {
			files[i].extents = append(files[i].extents, e)
		}
		return nil
	})
	o.progress("loading extents", n, total, "extents")
	return files, byID, err
}

// count returns the number of rows of table, or 0 if that cannot be read:
// it is for progress only.
func count(ctx context.Context, ix *index.Index, table string) int64 {
	var n int64
	ix.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n
}

// storedSums returns the number of block sums the index holds, or a
// number larger than any index's if that cannot be read.
func storedSums(ctx context.Context, ix *index.Index) int64 {
	var n sql.NullInt64
	if err := ix.DB().QueryRowContext(ctx, "SELECT sum(length(hashes)) FROM blocks").Scan(&n); err != nil {
		return math.MaxInt64
	}
	return n.Int64 / blockhash.SumSize
}

// classes returns a function numbering the classes of files that can
// share storage: those of one filesystem (btrfs subvolumes included) with
// the same NOCOW attribute, and the same owner where uid is not -1.
func classes() func(fs string, nocow bool, uid int64) int {
	type class struct {
		fs    string
		nocow bool
		uid   int64
	}
	m := make(map[class]int)
	return func(fs string, nocow bool, uid int64) int {
		k := class{fs, nocow, uid}
		c, ok := m[k]
		if !ok {
			c = len(m)
			m[k] = c
		}
		return c
	}
}

// estimate sets each run's freed bytes. runs are in destination order. On
// btrfs a disk extent of the destination (see groups) is freed when the
// runs cover every piece of it and nothing else refers to it; it counts
// for the run that covers its first piece's start. An extent that other
// files or snapshots share (FIEMAP's shared flag) is freed when every
// reference to it is a destination whose pieces of it the runs cover
// whole: refs, if not nil, lists them (see fiemap.ExtentRefs), and such an
// extent counts once, for the first destination met. Elsewhere space is
// freed block by block, a partial last block whole.
func estimate(runs []run, files []file, bs int64, refs func(fi int, disk int64) ([]fiemap.Ref, bool)) {
	byDest := make(map[int][]run)
	byDestination(runs, func(fi int, rs []run) { byDest[fi] = rs })
	// covered reports whether the runs of file fi cover every piece of
	// disk extent g, and which run covers its first piece.
	covered := func(fi int, g []fiemap.Extent) (int, bool) {
		f, rs := &files[fi], byDest[fi]
		first := -1
		for _, e := range g {
			if e.Logical >= f.size {
				// Preallocated beyond EOF: no run can cover it, and it
				// keeps the disk extent alive.
				return 0, false
			}
			k, ok := covers(rs, bs, f.size, e)
			if !ok {
				return 0, false
			}
			if first < 0 {
				first = k
			}
		}
		return first, first >= 0
	}
	var byIno map[fiemap.Ref]int // destination files by subvolume and inode
	counted := make(map[int64]bool)
	// everyRef reports whether every reference to the shared disk extent
	// disk, found through file fi, is a destination covering it whole.
	everyRef := func(fi int, disk int64) bool {
		if refs == nil || disk == 0 {
			return false
		}
		rs, ok := refs(fi, disk)
		if !ok || len(rs) == 0 {
			return false
		}
		if byIno == nil {
			byIno = make(map[fiemap.Ref]int)
			for di := range byDest {
				byIno[fiemap.Ref{Root: files[di].vol.Subvol, Ino: files[di].ino}] = di
			}
		}
		for _, r := range rs {
			di, ok := byIno[r]
			if !ok || files[di].vol.FS != files[fi].vol.FS {
				return false // a file outside the plan, or only a source
			}
			var pieces []fiemap.Extent
			for _, e := range files[di].extents {
				if e.DiskStart == disk {
					pieces = append(pieces, e)
				}
			}
			if _, ok := covered(di, pieces); len(pieces) == 0 || !ok {
				return false
			}
		}
		return true
	}
	byDestination(runs, func(fi int, rs []run) {
		f := &files[fi]
		if !f.btrfs {
			for k := range rs {
				rs[k].freed = (rs[k].len + f.fsBlock - 1) / f.fsBlock * f.fsBlock
			}
			return
		}
		for _, g := range groups(f) {
			if inlineGroup(g) {
				continue
			}
			first, ok := covered(fi, g)
			if !ok {
				continue
			}
			if shared(g) {
				disk := g[0].DiskStart
				if counted[disk] || !everyRef(fi, disk) {
					continue
				}
				counted[disk] = true
			}
			rs[first].freed += length(g)
		}
	})
}

// covers reports whether the runs (of one destination file, in order)
// cover extent e whole, and which run covers its start. A run that ends at
// EOF covers the rest of the extent's last block.
func covers(runs []run, bs, size int64, e fiemap.Extent) (int, bool) {
	k, _ := slices.BinarySearchFunc(runs, e.Logical, func(r run, off int64) int {
		if r.dst.block()*bs+r.len <= off {
			return -1
		}
		if r.dst.block()*bs > off {
			return 1
		}
		return 0
	})
	pos := e.Logical
	for i := k; i < len(runs) && pos < e.End(); i++ {
		start := runs[i].dst.block() * bs
		if start > pos {
			return 0, false
		}
		pos = max(pos, start+runs[i].len)
	}
	return k, pos >= e.End() || pos >= size
}

// lines groups runs that share source range and length into plan lines
// and emits them with the rewrites ws (best first), unit by unit. A line
// goes with a rewrite when one of its destination ranges, or its source
// range, lies in the rewrite's extent: with the first such rewrite for its
// destinations, so that the extent it helps free is freed as soon as
// possible, but never before a rewrite of the extent holding its source
// (sharing that extent first would keep it). Lines that go with no
// rewrite need no writing and come first, each a unit of its own, in
// source order, as they are found; the others wait in memory for their
// rewrite.
func lines(ctx context.Context, ix *index.Index, files []file, runs []run, ws []rewriteAt, bs int64, emit func(plan.Record) error, sum *Summary, o *Options) error {
	slices.SortFunc(runs, func(a, b run) int {
		if c := cmp.Compare(a.src, b.src); c != 0 {
			return c
		}
		if c := cmp.Compare(a.len, b.len); c != 0 {
			return -c // longest first
		}
		return cmp.Compare(a.dst, b.dst)
	})
	// The extents of the rewrites of each file, with their rank in ws.
	type extent struct {
		lo, hi int64
		rank   int
	}
	rewritten := make(map[int][]extent)
	for k, w := range ws {
		rewritten[w.fi] = append(rewritten[w.fi], extent{w.w.File.Off, w.w.File.Off + w.w.Len, k})
	}
	// rankOf returns the rank of the first (or, with last, the last)
	// rewrite whose extent [lo, hi) of file fi overlaps, and -1 if none.
	rankOf := func(fi int, lo, hi int64, last bool) int {
		rank := -1
		for _, e := range rewritten[fi] {
			if e.lo < hi && lo < e.hi && (rank < 0 || (e.rank < rank) != last) {
				rank = e.rank
			}
		}
		return rank
	}
	waiting := make([][]*plan.Dedupe, len(ws))
	var unit int64
	sums := newSumReader(ctx, ix)
	for i := 0; i < len(runs); {
		if err := ctx.Err(); err != nil {
			return err
		}
		o.progress("writing the plan", int64(i), int64(len(runs)), "runs")
		j := i + 1
		for j < len(runs) && j-i < plan.MaxDests && runs[j].src == runs[i].src && runs[j].len == runs[i].len {
			j++
		}
		r := runs[i]
		sf := &files[r.src.file()]
		h := sha256.New()
		if err := sums.hash(h, sf.id, r.src.block(), r.n); err != nil {
			return err
		}
		var digest [sha256.Size]byte
		h.Sum(digest[:0])
		d := &plan.Dedupe{
			Type:   plan.TypeDedupe,
			V:      plan.Version,
			Len:    r.len,
			Digest: hex.EncodeToString(digest[:]),
			Src:    rangeOf(sf, r.src.block()*bs),
		}
		// The line's unit: that of the first rewrite of an extent holding
		// one of its destinations, but not before the last of those
		// holding its source.
		srcRank, dstRank := -1, -1
		if len(ws) > 0 {
			srcRank = rankOf(r.src.file(), r.src.block()*bs, r.src.block()*bs+r.len, true)
		}
		for _, rr := range runs[i:j] {
			d.Dst = append(d.Dst, rangeOf(&files[rr.dst.file()], rr.dst.block()*bs))
			d.Freed += rr.freed
			sum.Runs++
			sum.Bytes += rr.len
			if len(ws) > 0 {
				if k := rankOf(rr.dst.file(), rr.dst.block()*bs, rr.dst.block()*bs+rr.len, false); k >= 0 && (dstRank < 0 || k < dstRank) {
					dstRank = k
				}
			}
		}
		rank := max(srcRank, dstRank)
		i = j
		if rank >= 0 {
			waiting[rank] = append(waiting[rank], d)
			continue
		}
		unit++
		d.Unit = unit
		if err := emitLine(d, emit, sum); err != nil {
			return err
		}
	}
	for k, w := range ws {
		unit++
		w.w.Unit = unit
		sum.Lines++
		sum.Rewrites++
		sum.Written += w.w.Bytes
		sum.Freed += w.w.Freed
		if err := emit(w.w); err != nil {
			return err
		}
		for _, d := range waiting[k] {
			d.Unit = unit
			if err := emitLine(d, emit, sum); err != nil {
				return err
			}
		}
		waiting[k] = nil
	}
	o.progress("writing the plan", int64(len(runs)), int64(len(runs)), "runs")
	return nil
}

func rangeOf(f *file, off int64) plan.Range {
	return plan.Range{Path: f.path, Off: off, FS: f.vol.FS, Subvol: f.vol.Subvol, Ino: f.ino, Size: f.size, Mtime: f.mtime}
}

// emitLine counts a dedupe line and emits it.
func emitLine(d *plan.Dedupe, emit func(plan.Record) error, sum *Summary) error {
	sum.Lines++
	sum.Freed += d.Freed
	return emit(d)
}
