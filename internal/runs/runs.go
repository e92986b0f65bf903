package runs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"math/bits"
	"os"
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
	// Budget bounds the memory of one grouping pass, in bytes; 0 means
	// DefaultBudget.
	Budget int64
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

// DefaultBudget is the memory one grouping pass may hold.
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
	Passes   int   // grouping passes over the index
	Skipped  int   // files left out: changed or gone since hashed
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

// Find computes the plan for the index and calls emit with each line, in
// units of work that each free space on their own, best first (see
// planUnits).
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
	maps, passes, err := group(ctx, ix, files, byID, held, o)
	if err != nil {
		return sum, err
	}
	sum.Passes = passes
	if o.Live {
		involved := make([]bool, len(files))
		for _, m := range maps {
			involved[m.dst.file()] = true
			involved[m.src.file()] = true
		}
		if o.Rewrite {
			if err := markLeftovers(ctx, ix, files, byID, involved, cmp.Or(o.RewriteMin, DefaultRewriteMin)); err != nil {
				return sum, err
			}
		}
		sum.Skipped = remap(files, involved, &o)
	}
	runs := chain(ctx, files, maps, bs, &o)
	maps = nil
	if err := ctx.Err(); err != nil {
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

// pairSize is the memory of one pair.
const pairSize = 16

// largeIndex is the size of an index's pairs from which Find has the
// garbage collector run more often.
const largeIndex = 64 << 20

// group finds every group of equal non-zero sums and maps each member but
// the source to the group's source. It returns the mappings sorted by
// destination.
func group(ctx context.Context, ix *index.Index, files []file, byID map[int64]int, blocks int64, o Options) ([]mapping, int, error) {
	passes := int(max(1, (blocks*pairSize+o.Budget-1)/o.Budget))
	var maps []mapping
	// Sums are hashes, so each pass holds about as many pairs as the
	// others: one allocation serves them all (a pass that holds more, say
	// a block repeated very often, grows it).
	per := blocks / int64(passes)
	pairs := make([]pair, 0, per+per/64+1024)
	for p := range passes {
		pairs = pairs[:0]
		phase := "grouping"
		if passes > 1 {
			phase = fmt.Sprintf("grouping, pass %d of %d", p+1, passes)
		}
		var done, shown int64
		err := ix.ScanSums(ctx, func(id int64, first int, sums []byte) error {
			fi, ok := byID[id]
			if !ok {
				return nil
			}
			if done += int64(len(sums) / blockhash.SumSize); done-shown >= 1<<16 {
				o.progress(phase, done, blocks, "blocks")
				shown = done
			}
			for i := 0; i < len(sums)/blockhash.SumSize; i++ {
				s := blockhash.At(sums, i)
				// Pass p holds the pth of passes slices of the sum space.
				if hi, _ := bits.Mul64(s, uint64(passes)); s == blockhash.Zero || hi != uint64(p) {
					continue
				}
				pairs = append(pairs, pair{s, mkloc(fi, int64(first+i))})
			}
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		o.progress(phase, done, blocks, "blocks")
		sortPairs(pairs)
		// Make room for this pass's mappings, and as many again and a
		// little more for each pass to come, at once rather than as they
		// are appended: growing copies them all.
		n := 0
		for i := 1; i < len(pairs); i++ {
			if pairs[i].sum == pairs[i-1].sum {
				n++
			}
		}
		maps = slices.Grow(maps, n+(n+n/16)*(passes-p-1))
		for i := 0; i < len(pairs); {
			j := i + 1
			for j < len(pairs) && pairs[j].sum == pairs[i].sum {
				j++
			}
			if j-i > 1 {
				maps = appendGroup(maps, files, pairs[i:j])
			}
			i = j
		}
	}
	sortMappings(maps)
	return maps, passes, nil
}

// appendGroup maps every member of g (sorted by location) to the source
// of its class: the member of the class in the largest file, the first in
// path and block order. Members of different classes cannot share
// storage.
func appendGroup(maps []mapping, files []file, g []pair) []mapping {
	for _, m := range g[1:] {
		if files[m.at.file()].class != files[g[0].at.file()].class {
			return appendClasses(maps, files, g)
		}
	}
	src := g[0].at
	for _, m := range g[1:] {
		if better(&files[m.at.file()], &files[src.file()]) {
			src = m.at
		}
	}
	for _, m := range g {
		if m.at != src && !files[m.at.file()].readonly {
			maps = append(maps, mapping{dst: m.at, src: src})
		}
	}
	return maps
}

// better reports whether a copy in file a is a better source than one in
// b: in a read-only subvolume that may not be a destination, else in a
// larger file, else stored compressed (the copy that takes less disk is
// the one to keep).
func better(a, b *file) bool {
	if a.readonly != b.readonly {
		return a.readonly
	}
	if a.size != b.size {
		return a.size > b.size
	}
	return a.encoded && !b.encoded
}

// appendClasses is appendGroup for a group of several classes: each
// class's members make a group of their own.
func appendClasses(maps []mapping, files []file, g []pair) []mapping {
	g = slices.Clone(g)
	class := func(p pair) int { return files[p.at.file()].class }
	slices.SortStableFunc(g, func(a, b pair) int { return cmp.Compare(class(a), class(b)) })
	for i := 0; i < len(g); {
		j := i + 1
		for j < len(g) && class(g[j]) == class(g[i]) {
			j++
		}
		if j-i > 1 {
			maps = appendGroup(maps, files, g[i:j])
		}
		i = j
	}
	return maps
}

// chain merges mappings, sorted by destination, into maximal runs, leaving
// out blocks that already share storage or sit in inline extents.
func chain(ctx context.Context, files []file, maps []mapping, bs int64, o *Options) []run {
	var runs []run
	var cur *run
	var dc, sc cursor
	for i, m := range maps {
		if i%(1<<16) == 0 {
			o.progress("chaining", int64(i), int64(len(maps)), "blocks")
			if ctx.Err() != nil {
				return nil // Find returns ctx's error
			}
		}
		df, sf := &files[m.dst.file()], &files[m.src.file()]
		if df.stale || sf.stale || !shareable(df, sf, m.dst.block()*bs, m.src.block()*bs, &dc, &sc, o.Rewrite) {
			cur = nil
			continue
		}
		if cur != nil && m.dst == cur.dst+loc(cur.n) && m.src == cur.src+loc(cur.n) &&
			!(m.dst.file() == m.src.file() && m.src.block()+1 > cur.dst.block()) {
			cur.n++
			continue
		}
		runs = append(runs, run{src: m.src, dst: m.dst, n: 1})
		cur = &runs[len(runs)-1]
	}
	o.progress("chaining", int64(len(maps)), int64(len(maps)), "blocks")
	for i := range runs {
		r := &runs[i]
		r.len = r.n * bs
		if end := (r.dst.block() + r.n) * bs; end > files[r.dst.file()].size {
			r.len -= end - files[r.dst.file()].size // the partial tail, equal in both
		}
	}
	return runs
}

// shareable reports whether the block at doff of d may be deduplicated
// against the block at soff of s: neither is inline, they do not already
// share their physical block, and, without rewrites, they are not in one
// btrfs disk extent (where sharing frees nothing). The cursors dc and sc look up d's
// and s's extents.
func shareable(d, s *file, doff, soff int64, dc, sc *cursor, rewrite bool) bool {
	de, dok := dc.at(d, doff)
	se, sok := sc.at(s, soff)
	if (dok && de.Flags&fiemap.FlagDataInline != 0) || (sok && se.Flags&fiemap.FlagDataInline != 0) {
		return false
	}
	if dok && sok && d.class == s.class && de.Physical+(doff-de.Logical) == se.Physical+(soff-se.Logical) {
		return false
	}
	if !rewrite && dok && sok && de.DiskStart != 0 && de.DiskStart == se.DiskStart && d.class == s.class {
		// Both in one btrfs disk extent, at other offsets: sharing them
		// frees nothing, the source keeps the extent alive. (A rewrite
		// of the extent, which moves the source out of it first, makes
		// it free the extent.)
		return false
	}
	return true
}

func filter(runs []run, o Options) []run {
	return slices.DeleteFunc(runs, func(r run) bool {
		return r.len < o.MinLen
	})
}

// byDestination calls fn with the runs of each destination file in turn;
// runs are in destination order.
func byDestination(runs []run, fn func(fi int, rs []run)) {
	for i := 0; i < len(runs); {
		j := i + 1
		for j < len(runs) && runs[j].dst.file() == runs[i].dst.file() {
			j++
		}
		fn(runs[i].dst.file(), runs[i:j])
		i = j
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

// lines emits the runs as plan lines, with the rewrites ws, in units of
// work (see planUnits): each unit's rewrites, then its runs, those that
// share source range and length on one line of up to plan.MaxDests
// destinations.
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
	rw := newRewritten(ws)
	// The digest of each source range and length, in source order (one
	// read of each source's sums).
	var digests [][32]byte
	digest := make([]int32, len(runs))
	var sums []byte
	sumsOf := -1
	for i, r := range runs {
		if i%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if i == 0 || r.src != runs[i-1].src || r.len != runs[i-1].len {
			if sumsOf != r.src.file() {
				var err error
				if sums, err = ix.Sums(ctx, files[r.src.file()].id); err != nil {
					return err
				}
				sumsOf = r.src.file()
			}
			digests = append(digests, sha256.Sum256(runSums(sums, r.src.block(), r.n)))
		}
		digest[i] = int32(len(digests) - 1)
	}
	var unit int64
	done := 0
	for _, u := range planUnits(runs, ws, rw, files, bs) {
		unit++
		// A unit's rewrites come first: applysame finishes them before it
		// starts the unit's dedupe lines.
		for _, k := range u.rewrites {
			w := ws[k].w
			w.Unit = unit
			sum.Lines++
			sum.Rewrites++
			sum.Written += w.Bytes
			sum.Freed += w.Freed
			if err := emit(w); err != nil {
				return err
			}
		}
		for i := 0; i < len(u.runs); {
			first := runs[u.runs[i]]
			d := &plan.Dedupe{
				Type:   plan.TypeDedupe,
				V:      plan.Version,
				Len:    first.len,
				Digest: hex.EncodeToString(digests[digest[u.runs[i]]][:]),
				Src:    rangeOf(&files[first.src.file()], first.src.block()*bs),
				Unit:   unit,
			}
			for ; i < len(u.runs) && len(d.Dst) < plan.MaxDests; i++ {
				r := runs[u.runs[i]]
				if r.src != first.src || r.len != first.len {
					break
				}
				d.Dst = append(d.Dst, rangeOf(&files[r.dst.file()], r.dst.block()*bs))
				d.Freed += r.freed
			}
			if done += len(d.Dst); done%4096 < len(d.Dst) {
				o.progress("writing the plan", int64(done), int64(len(runs)), "runs")
			}
			if err := emitLine(d, emit, sum); err != nil {
				return err
			}
		}
	}
	o.progress("writing the plan", int64(len(runs)), int64(len(runs)), "runs")
	return nil
}

// runSums returns the n sums from block first of a file's sums, which stop
// at its last non-zero block (see index.Sums).
func runSums(sums []byte, first, n int64) []byte {
	lo, hi := first*blockhash.SumSize, (first+n)*blockhash.SumSize
	if hi <= int64(len(sums)) {
		return sums[lo:hi]
	}
	out := make([]byte, hi-lo)
	if lo < int64(len(sums)) {
		copy(out, sums[lo:])
	}
	return out
}

func rangeOf(f *file, off int64) plan.Range {
	return plan.Range{Path: f.path, Off: off, FS: f.vol.FS, Subvol: f.vol.Subvol, Ino: f.ino, Size: f.size, Mtime: f.mtime}
}

// emitLine counts a dedupe line and emits it.
func emitLine(d *plan.Dedupe, emit func(plan.Record) error, sum *Summary) error {
	sum.Lines++
	sum.Runs += int64(len(d.Dst))
	sum.Bytes += d.Len * int64(len(d.Dst))
	sum.Freed += d.Freed
	return emit(d)
}
