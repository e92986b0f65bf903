package runs

import (
	"cmp"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"unsafe"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/plan"
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
	// Table, if set, is where the table of sums is kept between runs
	// (see package sumtab; its delta is Table + ".delta"): with it, a run
	// regroups only the sums of files changed since the run before, or
	// left unsettled by it, and prints the plan a full run would (see
	// kept.go). Full groups every sum all the same, and writes the table
	// again.
	Table string
	Full  bool
	// Progress, if set, is told how each long phase goes: its name, what
	// is done of what total (0 when not known) and what is counted
	// ("files", "blocks", "runs"). It is called often, from one goroutine
	// at a time; it should draw at its own pace.
	Progress func(phase string, done, total int64, unit string)
}

// warn tells o.Warn of err, if set.
func (o *Options) warn(path string, err error) {
	if o.Warn != nil {
		o.Warn(path, err)
	}
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
	// when they all fit in memory; when only what changed is regrouped,
	// the lists of mappings (1 when they are held in memory).
	Partitions int
	// Temporary is the most bytes the temporary files held at once (0
	// when nothing went to disk).
	Temporary int64
	// Regrouped counts the files whose sums were regrouped with the
	// table of sums kept (Options.Table); -1 when every sum was grouped.
	// Cloned counts the files that joined the groups of the file they
	// were copied from instead (see clones).
	Regrouped, Cloned int
	// Partial counts the groups such a run made again that had lost
	// members, none of which may have been their source: it added only
	// the mappings that name a new member (see regroup).
	Partial int
	Skipped int // files left out: changed or gone since hashed
	// Costly counts the units of work left out because they would cost
	// btrfs's metadata more than they free (see leaveCostly); Metadata
	// is what the units planned cost it, at most, which Freed does not
	// count.
	Costly   int
	Metadata int64
	// Immutable counts the files with the immutable attribute left out
	// as destinations (see file.immutable).
	Immutable int
	// Settled counts files not mapped again: every block they share
	// with another file was already shared when hashed (see settle).
	Settled int
	// Unmapped counts files not mapped again although they share a block
	// not stored once yet: unchanged since the last run, whose plan did
	// not name them, their recorded extents are current (see trusted).
	Unmapped int
	// Unnamed counts files left out because their volume is known only by
	// the st_dev an older index recorded: hashfile names it on its next
	// run.
	Unnamed int
}

// file is what findsame holds of each file in scope, millions of them on
// a host of small files: kept small, what files of a volume share held
// once in their volume.
type file struct {
	id   int64
	path string
	// vol, Ino, Size and Mtime are the file's identity as hashed: what
	// dedupe.Open checks it against, and what the plan says of it (see
	// identity).
	vol     *volume
	Ino     uint64
	Size    int64
	Mtime   int64
	extents []fiemap.Extent
	stale   bool // changed or gone since hashed: never planned
	// settled marks a file whose every mapping the recorded extents show
	// already shared (see settle): never planned, not mapped again.
	settled bool
	// readonly marks a file in a read-only btrfs subvolume (with
	// Options.Live): a rewrite of its extents makes its copy next to
	// another file (see copyNextTo). keepSource marks it with
	// Options.NoReadOnly too: never a destination, and a source first.
	readonly, keepSource bool
	// immutable marks a file with the immutable attribute (chattr +i),
	// seen when it is mapped again (Options.Live): the kernel shares
	// nothing into it, so it is never a destination nor rewritten, only
	// a source. refused marks one that a mapping named as a destination.
	immutable, refused bool
	// encoded marks a file with compressed extents when it was hashed;
	// inline, one with its data inline.
	encoded, inline bool
	// ownLeaves marks, with Options.Live, a file whose tree leaves no
	// snapshot shares: sharing into it costs no metadata (see
	// markOwnLeaves).
	ownLeaves bool
	// class groups the files that can share storage: those on one
	// filesystem (btrfs subvolumes included) with the same NOCOW
	// attribute (and with Options.SameOwner, the same owner).
	class int32
}

// volume is what the files of one volume share.
type volume struct {
	fsys.Volume
	btrfs   bool
	fsBlock int64 // the filesystem's block size
	// snapshotted marks a btrfs subvolume whose tree leaves a snapshot
	// may share (see markReadOnly): sharing into its files costs
	// metadata (see leaveCostly), leaf bytes for each leaf copied, but
	// for leaves written after lastSnapshot (see ownLeaves).
	snapshotted  bool
	leaf         int64
	lastSnapshot uint64
}

// blocks is how many blocks of bs bytes f holds, the last one partly.
func (f *file) blocks(bs int64) int64 { return (f.Size + bs - 1) / bs }

// rowSeq is what the index's row of a file says of its changes (see
// index.File). Only the stages of the kept table read it, before
// chaining: it is held apart from the file records, which the plan's
// stages hold to the end, by file id, and dropped once grouped.
type rowSeq struct {
	changed  int64 // index.File.Changed
	sums     int64 // index.File.SumsChanged
	cloneOf  int64 // index.File.CloneOf
	cloneSeq int64 // index.File.CloneSeq
}

// identity returns f's identity as hashed (its ctime aside, which plans
// do not carry and dedupe.Open does not check).
func (f *file) identity() fsys.Identity {
	return fsys.Identity{Vol: f.vol.Volume, Ino: f.Ino, Size: f.Size, Mtime: f.Mtime}
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

// sqliteCache is what Find leaves to SQLite's page caches within its
// budget: more than they take (4 MiB a connection of an index opened to
// be read, see index.OpenExisting, for the few connections it uses at
// once), and what one connection of an index opened to be written may.
const sqliteCache = 64 << 20

// largeIndex is what a stage holds (an index's pairs, the plan's files
// and runs) from which Find has the garbage collector run more often
// (see collectAt).
const largeIndex = 64 << 20

// finder holds what the stages of Find share.
type finder struct {
	ctx   context.Context
	ix    *index.Index
	o     *Options
	bs    int64
	files []file
	byID  fileIndex
	// seqs holds the files' rowSeq by id, until grouped.
	seqs []rowSeq
	// kext are the extents kept beside the table, nil without one.
	kext *keptExtents
	// sources is what grouping reads of the files.
	sources sources
	sum     *Summary
	tmpdir  string
	temp    tempUse // what the temporary files hold
	// mapped marks the files that some mapping names: grouping fills it
	// in.
	mapped []bool
	// maps holds the mappings between grouping and chaining, in lists by
	// destination range: list k holds the destinations from bounds[k-1]
	// up to bounds[k].
	maps   *buckets
	bounds []loc
	// groupMaps is the memory of one group's mappings, kept from group
	// to group.
	groupMaps []mapping
	// buf is the memory of the partition or list at hand.
	buf []words
	// tab is the table of sums kept between runs; nil if none is.
	tab *table
	// redo marks the files whose sums regroup regrouped; nil when every
	// sum was grouped.
	redo []bool
	// held keeps the sums regroup read, as far as heldBudget allows, for
	// bridge and lines, which read the destinations' (mostly the files
	// regrouped) again.
	held heldSums
}

// heldBudget is the share of Options.Budget that the sums regroup read
// may keep: with the pairs it groups (at most a quarter, see regroup),
// within the budget.
func (f *finder) heldBudget() int { return int(f.o.Budget / 8) }

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
	sum.Regrouped = -1
	// Before the files: a file changed after they are read has a later
	// number, and the next run regroups it.
	seq, err := ix.WriteSeq(ctx)
	if err != nil {
		return sum, err
	}
	// The stages: load (load.go), group (group.go) or regroup (kept.go),
	// chain (chain.go), bridge, estimate (estimate.go), rewrites
	// (rewrite.go), emit (emit.go).
	files, byID, seqs, err := load(ctx, ix, o, bs, &sum)
	if err != nil {
		return sum, err
	}
	sum.Files = len(files)
	for i := range files {
		sum.Blocks += files[i].blocks(bs)
	}
	if o.WholeFiles {
		defer collectAt(25, sum.Blocks*pairSize, headroom(o.Budget))()
		defer limitMemory(&o, loadedSize(files, byID))()
		return sum, wholeFiles(ctx, ix, files, byID, bs, o, emit, &sum)
	}
	f := &finder{ctx: ctx, ix: ix, o: &o, bs: bs, files: files, byID: byID, seqs: seqs, sum: &sum,
		sources: newSources(files, bs), tmpdir: cmp.Or(o.TmpDir, filepath.Dir(ix.Path()))}
	f.tab = f.openTable(seq)
	defer f.tab.close()
	f.kext = f.keptExtents()
	defer f.kext.close()
	var untouched []bool
	// The files whose shared flags are in doubt are read meanwhile, on a
	// connection of their own: only remap needs them.
	var doubted sync.WaitGroup
	var doubtErr error
	if o.Live {
		if untouched = f.untouched(); untouched != nil {
			doubted.Go(func() { doubtErr = f.doubtShared(untouched) })
			defer doubted.Wait()
		}
	}
	// The files' rowSeq are held through grouping too.
	unlimit := limitMemory(&o, loadedSize(files, byID)+int64(len(seqs))*int64(unsafe.Sizeof(rowSeq{})))
	defer unlimit()
	err = errGroupAll
	if f.tab != nil && f.tab.base != nil {
		err = f.regroup() // it holds few sums: the collector as it is
	}
	if errors.Is(err, errGroupAll) {
		f.redo = nil
		if f.tab != nil {
			f.tab.close()
			f.tab.base, f.tab.delta, f.tab.regrouped = nil, nil, -1
			f.createTable(false)
		}
		// The index holds no sums for the zero blocks at the end of a
		// file nor for chunks of zero blocks: a large sparse file must not
		// make grouping take more passes, or reserve room, for sums it
		// never reads.
		held := min(sum.Blocks, storedSums(ctx, ix))
		defer collectAt(25, held*pairSize, headroom(o.Budget))()
		err = f.group(held)
	}
	f.seqs = nil
	if err != nil {
		if f.maps != nil {
			f.maps.close()
		}
		return sum, err
	}
	if f.tab != nil {
		sum.Regrouped, sum.Cloned = f.tab.regrouped, f.tab.cloned
		if !o.Live {
			f.tab.need = make([]bool, len(files))
		}
		f.tab.named = make([]bool, len(files))
	}
	// The involved files, whose extents the next stages look at: those
	// the mappings name, and those referring to a leftover. With o.Live,
	// remap maps them again, but for the settled ones; else their
	// recorded extents are read.
	involved := f.mapped
	if o.Live {
		if err := f.settle(involved); err != nil {
			return sum, err
		}
	}
	if o.Live {
		markOwnLeaves(files, involved)
	}
	if doubted.Wait(); doubtErr != nil {
		return sum, doubtErr
	}
	if o.Rewrite {
		if err := markLeftovers(ctx, ix, files, byID, involved, cmp.Or(o.RewriteMin, DefaultRewriteMin)); err != nil {
			return sum, err
		}
	}
	if o.Live {
		sum.Skipped, sum.Unmapped = remap(files, involved, untouched, &o)
	} else if err := loadExtents(ctx, ix, files, byID, involved, &o, f.kext); err != nil {
		return sum, err
	}
	runs, err := f.chain()
	if err != nil {
		return sum, err
	}
	sum.Temporary = f.temp.peak
	unlimit() // what is held from here on is the plan's
	// The plan's stages hold the files and the runs to the end; their
	// own lists (units, their members, digests) come on top, and at the
	// quarter of grouping the peak was the collector's: at 1.9 million
	// files, 814 MiB against 738 MiB at a tenth (medians), the CPU time
	// within its noise.
	held := loadedSize(files, byID) + int64(len(runs))*int64(unsafe.Sizeof(run{}))
	if os.Getenv("GOGC") == "" {
		// Chaining let go of the mappings, most of what grouping held,
		// but the collector's goal is still set from what was live at its
		// last cycle, with them, and the plan's garbage would grow into
		// their room (a re-run at 200M blocks, -mem 256M: 312 MiB at
		// most, 170 to 177 MiB with a cycle here; at 400M blocks, with
		// the goal a headroom above them, 730 MiB against 562).
		runtime.GC()
	}
	defer collectAt(10, held, headroom(o.Budget))()
	sum.Immutable = refusedImmutable(files, &o)
	if runs, err = bridge(ctx, ix, files, f.held, runs, bs, &o); err != nil {
		return sum, err
	}
	runs = filter(alignRuns(runs, files, bs), o)
	var refs func(int, int64) ([]fiemap.Ref, bool)
	if o.Live {
		var done func()
		refs, done = extentRefs(files)
		defer done()
	}
	// The rewrites read no run's freed bytes; the estimate with refs
	// weighs their units with the runs' (see weighFirst).
	estimated := len(runs) // the runs estimate sets; rewrites add others
	markShared(files)
	var ws []rewriteAt
	if o.Rewrite {
		var relinks []run
		ws, relinks, err = rewrites(runs, files, bs, cmp.Or(o.RewriteMin, DefaultRewriteMin), refs, loadReferrers(ctx, ix, files, byID))
		if err != nil {
			return sum, err
		}
		runs = append(runs, relinks...)
	}
	if refs != nil {
		weighFirst(runs, estimated, ws, files, bs, refs)
	} else {
		estimate(runs[:estimated], files, bs, nil, nil)
	}
	var named []bool
	if f.tab != nil {
		named = f.tab.named
	}
	if err := lines(ctx, ix, files, f.redo, named, f.commitTable, f.held, runs, ws, bs, emit, &sum, &o); err != nil {
		return sum, err
	}
	return sum, nil
}

// loadedSize is what the files loaded take in memory, beyond what -mem
// bounds: their records, paths, index by id and sources.
func loadedSize(files []file, byID fileIndex) int64 {
	n := int64(cap(files))*int64(unsafe.Sizeof(file{})) + int64(len(byID))*4 + int64(len(files))*12
	for i := range files {
		n += int64(len(files[i].path))
	}
	return n
}

// collectAt has the collector let the heap grow by percent of what is
// live (GOGC) where the stage to come holds held bytes, largeIndex or
// more, and GOGC is not set; it returns what puts it back. Grouping runs
// at a quarter: its heap is mostly pairs and mappings, which hold no
// pointers and cost the collector little, and at the default the garbage
// of reading every sum would grow the heap to twice them. A small index
// is done before that matters, and collecting often only slows it.
//
// The garbage of a stage is mostly the copies of the sums that SQLite's
// driver makes of each chunk it reads (2.8 GB of the 3.6 GB findsame
// allocated at 150M blocks); at a tenth of a small live heap, the
// collector ran every few megabytes of it. The heap may grow by at least
// least bytes (see headroom).
func collectAt(percent int, held, least int64) func() {
	if held < largeIndex || os.Getenv("GOGC") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(max(percent, int(min(100*least/held, 1000))))
	return func() { debug.SetGCPercent(old) }
}

// headroom is the least that the heap may grow past what is live before
// the collector runs, with budget -mem: an eighth of it, so that the
// garbage of reading the sums costs dozens of cycles rather than
// hundreds.
func headroom(budget int64) int64 { return budget / 8 }

// collectPast has the collector let the heap grow by at least least bytes
// past what it found live at its last cycle, for a stage whose live heap
// stays about as it is (the scan into partitions, whose garbage is the
// sums' copies), where GOGC is not set and the percent set now would allow
// less; it returns what puts it back. At 400 million blocks the collector
// ran 750 times in the scan's 7 s, on a live heap of 20 MB, at a quarter.
func collectPast(least int64) func() {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return func() {}
	}
	live := max(int64(s[0].Value.Uint64()), 1<<20)
	old := debug.SetGCPercent(100) // read, then set below
	debug.SetGCPercent(max(old, int(min(100*least/live, 1000))))
	return func() { debug.SetGCPercent(old) }
}

// limitMemory has the collector work harder as the heap nears what -mem
// (and the quarter more it may be off by) leaves it, SQLite's page cache
// aside, with loaded bytes of files on top (loadedSize), rather than let
// garbage take it; it returns what lifts the limit, which may be called
// more than once. The limit is for grouping and chaining, whose memory
// -mem bounds. A limit below what is live has the collector run all the
// time: at -mem itself (partition memory not yet collected), a third of
// the CPU; without the files, or through the plan's stages (runs, units,
// lines: as many as the plan has lines), half of it, and twice the time,
// at two million files.
func limitMemory(o *Options, loaded int64) func() {
	if o.Budget < 2*sqliteCache || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	old := debug.SetMemoryLimit(o.Budget + o.Budget/4 - sqliteCache + loaded)
	return sync.OnceFunc(func() { debug.SetMemoryLimit(old) })
}
