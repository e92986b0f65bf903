package scan

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/safeopen"
	"same/internal/walk"
)

// Options shape a run.
type Options struct {
	BlockSize int
	Jobs      int      // parallel readers; 0 means DefaultJobs()
	Exclude   []string // glob patterns, see walk.Options
	OneFS     bool
	// NewFS accepts roots found on another volume than at the last run,
	// and prunes the files of filesystems the walk did not meet.
	NewFS bool
	// Listed says the roots were listed on standard input: one missing
	// is a failed item, not an error of the run.
	Listed bool
	// Error receives every per-file error; the run goes on.
	Error func(path string, err error)
	// Progress, if set, is called about twice a second while the run goes on.
	Progress func(Stats)
	// Index, if set, is the path of the index: the walk leaves it out,
	// with the files beside it named after it (INDEX-wal, INDEX-sums,
	// ...) and findsame's temporary files there (see OwnFiles).
	Index string
	// DedupeOnly has the walk leave out filesystems that cannot
	// deduplicate (see walk.Options.DedupeOnly), and the files listed
	// on them: what the index holds there is pruned.
	DedupeOnly bool
	// Unwalked, if set, is told of each filesystem the walk met and did
	// not list: a pseudo one (proc, sysfs, ...), or with DedupeOnly one
	// that cannot deduplicate (see walk.Options.Unwalked), from any
	// goroutine.
	Unwalked func(path, fsType string, pseudo bool)
}

// DefaultJobs is two readers per CPU: while one waits for the disk, the
// other hashes. On cached data it costs nothing; on data read from disk it
// saves about a fifth of the time (a 2 GiB tree: 2.2 s against 2.7 s).
func DefaultJobs() int { return 2 * runtime.NumCPU() }

// Stats counts what a run did.
type Stats struct {
	Seen      int64 // regular non-empty files met
	Hashed    int64 // files read and recorded
	Unchanged int64 // files not read because the index was current
	Renamed   int64 // unchanged files met under a new path
	// Listed counts unchanged files taken as their directories list
	// them, without lstat: their inode items not rewritten since the
	// last complete walk, which the tree search shows (see
	// subvols.listed).
	Listed  int64
	Links   int64 // further names of an inode already met
	Skipped int64 // special files, symlinks, empty files
	Failed  int64 // files that could not be read or changed while read
	Pruned  int64 // index entries removed because their files are gone
	// KeptUnmet counts the index entries under the roots that the walk
	// did not meet, kept because it met nothing of their filesystem: not
	// mounted where it was (a disk that failed to mount one night), its
	// files are not gone for that (see finish).
	KeptUnmet int64
	// ToPrune is how many entries the run is pruning, once the walk
	// has completed; Pruned counts up to it.
	ToPrune int64
	// Known is how many files the last complete run met under the
	// roots (0 if not known): about as many as this walk will meet.
	Known int64
	// SubvolsUnwalked counts btrfs subvolumes left unwalked: unchanged
	// since their last complete walk (see subvols); their files count as
	// seen and unchanged.
	SubvolsUnwalked int64
	// RootsUnwalked counts roots on btrfs left unwalked because nothing
	// changed in their subvolume since their last complete walk (see
	// subvols.rootKey); their files count as seen and unchanged.
	RootsUnwalked int64
	// SubvolsSkimmed counts btrfs subvolumes left unwalked because no
	// directory in them changed since their last complete walk (for a
	// new snapshot taken whole, its origin's: see subvols.origin): only
	// the files whose items changed were looked at, where the index has
	// them (see subvols.decide).
	SubvolsSkimmed int64
	// SubvolsPart counts btrfs subvolumes walked only below the
	// directories that changed since their last complete walk, and
	// skimmed elsewhere (see subvols.partsOf).
	SubvolsPart int64
	// RootsSkimmed and RootsPart count the roots that lie below their
	// subvolume's top directory and are looked at as SubvolsSkimmed and
	// SubvolsPart count subvolumes (see subvols.rootParts); a root that
	// is a subvolume's top directory counts as a subvolume.
	RootsSkimmed, RootsPart int64
	BytesRead               int64
	// Reused counts hashed files whose sums were taken from extents
	// already in the index instead of being read; BytesReused, their bytes.
	Reused      int64
	BytesReused int64
	// Copied counts, of those, the files of a btrfs snapshot walked for
	// the first time that took their sums from the last walk of the
	// subvolume it was taken from: met as the rows recorded from it all
	// at once have them (see subvols.origin), or one by one (see
	// scanner.queueNew); or, one by one, from an older snapshot of that
	// subvolume (see subvols.fromSibling).
	Copied int64
	// Remapped counts unchanged files whose extents were recorded again,
	// without reading them: on btrfs, those whose extents changed since
	// the last complete walk (deduplicated, reflinked, defragmented);
	// others whose items lie in the same tree leaves are found as
	// recorded.
	Remapped int64
	ToRead   int64 // bytes queued for reading so far, less holes skipped
	WalkDone bool
	Elapsed  time.Duration
}

// ErrChanged marks a file that changed while it was read.
var ErrChanged = errors.New("changed while being read; not recorded")

// key names a file for good: its volume and inode.
type key struct {
	vol fsys.Volume
	ino uint64
}

type job struct {
	path string
	vol  fsys.Volume
	id   fsys.Stat
	// attrOf, if not 0, is the index row of this unchanged file, whose
	// NOCOW attribute is to be read and recorded; its data is not read.
	attrOf int64
	// remap, with attrOf, has its extents mapped and recorded too.
	remap bool
	// verify, with remap, has the extent items in moved compared with
	// the record first: where they are as recorded, nothing is done.
	verify bool
	moved  []fiemap.Extent
	// items is the index.ItemsDigest of the extents recorded of the row
	// attrOf or sumsOf, 0 where not known: extents found alike to it
	// need not be read back from the index to be compared.
	items int64
	// sumsOf, if not 0, is the row of the same inode in origin, the
	// subvolume this new file's snapshot was taken from, whose identity
	// it has: the file's extent items are read through top, the
	// snapshot's top directory, and it takes that row's sums
	// (fromOrigin). sumsSeq is that row's index.File.Changed when it was
	// compared.
	sumsOf, sumsSeq int64
	origin          fsys.Volume
	top             *os.File
	// opened, if not nil, is the file of this job to be read, opened by
	// a placer (see order.go).
	opened *opened
}

// op is one thing for the writer to record.
type op struct {
	put    *index.File
	sums   []byte
	ext    []fiemap.Extent
	rename *index.File
	copy   *copied
	adopt  *adoption
	forget *key // a file queued for reading that was not recorded
	volume *volume
	attr   *attr
	uid    *attr // nocow holds nothing; uid the owner
	root   *root
	walked *walked
	dir    *dirMet // a directory met (see subvols.dirTo)
	// pruneDirs drops the records of directories no longer in a tree
	// walked whole (see subvols.dirRegions)
	pruneDirs *region
	gone      *gone  // a file not met where the index has it
	unmark    int64  // a file id met after all
	keep      string // a path not fully read: nothing at or below it is pruned
	// keepFS names the filesystems the walk met: the files of others
	// that it found gone are kept (Tx.KeepUnmet)
	keepFS   []string
	distrust string // a path that failed: the rows at or below it are looked at by the next run (see finish)
	prune    bool   // prune what this run found gone
	flush    bool   // commit what is recorded (see adoption)
}

// dirMet is a directory the walk met, and what it records of it (see
// subvols.dirTo).
type dirMet struct {
	vol   fsys.Volume
	ino   uint64
	path  string
	ctime int64
	gen   uint64
}

// copied is a file of a snapshot recorded with the sums and extents of
// row from, the same inode in the subvolume it was taken from (see
// scanner.queueNew).
type copied struct {
	from, changed int64 // the row and its index.File.Changed
	file          index.File
}

// adoption asks the writer to record the files of a new snapshot, met at
// toTop, from the rows of the subvolume it was taken from, whose last
// complete walk met it at fromTop (see subvols.origin, index.Tx.Adopt),
// and which of the snapshot's inodes ask it then has rows of (known);
// what it recorded goes to done (nothing when it did not, or could not)
// as soon as it is recorded, so that the walker goes on, and committed
// is closed once the transaction that holds it ends. The rows are not
// seen outside that transaction before: compare waits for committed
// before it reads the index again (see scanner.compare), and asks the
// writer to commit. So the adoptions of the snapshots the walker decides
// one after the other share a transaction: each writes most pages of
// the indexes on the rows it refers to (their sums, their extents), and
// a commit writes every page it changed.
type adoption struct {
	from, to       fsys.Volume
	fromTop, toTop string
	withGone       bool // see index.Tx.Adopt
	ask            []uint64
	known          map[uint64]bool
	done           chan index.Adopted // buffered: the writer never waits on it
	committed      chan struct{}
}

// gone is a file not met at its path.
type gone struct {
	id   int64
	path string
}

// walked is what a complete walk of a subvolume saw (see subvols), and
// the directories in it that held what the run could not read (see
// retrySet).
type walked struct {
	vol   fsys.Volume
	key   string
	retry []index.Retry
}

// volume is a volume met in this run under st_dev dev.
type volume struct {
	info fsys.Info
	dev  uint64
}

// root is a root walked whole, its volume, the files met under it, and
// what the walk saw of its subvolume.
type root struct {
	path   string
	vol    fsys.Volume
	files  int64
	walked string
	retry  []index.Retry // with walked: the directories to retry in vol (see retrySet)
}

// attr is the NOCOW attribute or the owner of an indexed file, and its
// extents when mapped again (remapped).
type attr struct {
	id       int64
	nocow    int8
	uid      uint32
	remapped bool
	ext      []fiemap.Extent
}

type counters struct {
	seen, hashed, unchanged, renamed, listed, links, skipped, failed, read, toRead atomic.Int64
	reused, reusedBytes, copied, pruned, toPrune, known, remapped, keptUnmet       atomic.Int64
	// changedRead counts the failed files that changed while they were
	// read (see finish).
	changedRead atomic.Int64
	walkDone    atomic.Bool
}

// fromOrigin counts a file of size bytes recorded with the sums of its
// origin's row (see scanner.queueNew): hashed, without reading.
func (c *counters) fromOrigin(size int64) {
	c.hashed.Add(1)
	c.reused.Add(1)
	c.reusedBytes.Add(size)
	c.copied.Add(1)
}

// fromOriginWhole counts n files of a snapshot skimmed, recorded in this
// run from its origin's rows (see subvols.origin): as fromOrigin, but for
// their bytes, which the index counted without reading them.
func (c *counters) fromOriginWhole(n int64) {
	c.hashed.Add(n)
	c.reused.Add(n)
	c.copied.Add(n)
}

func (c *counters) stats(start time.Time) Stats {
	return Stats{
		Seen: c.seen.Load(), Hashed: c.hashed.Load(), Unchanged: c.unchanged.Load(),
		Renamed: c.renamed.Load(), Listed: c.listed.Load(), Links: c.links.Load(), Skipped: c.skipped.Load(),
		Failed: c.failed.Load(), BytesRead: c.read.Load(), ToRead: c.toRead.Load(),
		Reused: c.reused.Load(), BytesReused: c.reusedBytes.Load(), Copied: c.copied.Load(), Remapped: c.remapped.Load(),
		Pruned: c.pruned.Load(), ToPrune: c.toPrune.Load(), Known: c.known.Load(), KeptUnmet: c.keptUnmet.Load(),
		WalkDone: c.walkDone.Load(), Elapsed: time.Since(start),
	}
}

// scanner is one run: its stages are the methods walk (walk.go), compare
// (compare.go), read (read.go) and write (write.go), each on goroutines
// of its own; the package doc says who owns what.
type scanner struct {
	ix       *index.Index
	o        Options
	roots    []string
	rootVols map[string]fsys.Volume // from checkRoots; read only
	gen      int64                  // this run's scan generation
	legacy   bool                   // the index holds volumes named by st_dev
	empty    bool                   // the index held no file at the start
	newVols  map[fsys.Volume]bool   // compare's: volumes with no file at the start (see newVolume)
	adopted  map[fsys.Volume]bool   // compare's: volumes whose files the writer recorded from their origin's rows (see adopt)
	marked   map[fsys.Volume]bool   // the writer's: origins whose rows an adoption marked shared (see index.Tx.Adopt)
	seq      int64                  // the index's write sequence number at the start: rows changed since were written by this run
	maxID    int64                  // the largest file id at the start: rows above it were created by this run
	items    chan item              // walker -> compare
	moved    movedSet               // the files compare gave another path, by volume (see adopt)
	start    time.Time

	ctx    context.Context
	cancel context.CancelFunc

	c    counters
	jobs chan job // compare -> readers
	ops  chan op  // compare, readers, walker -> writer
	ru   *reuser
	sv   *subvols

	devs   devices         // st_dev -> volume, learnt by the walker
	noteMu sync.Mutex      // one noteDevice at a time: the walker's, compare's
	own    *walk.Own       // see Options.Index
	metFS  map[string]bool // the filesystems (UUIDs) met, under noteMu
	mounts *walk.Mounts    // as the run began
	// unwalked holds the devices told to o.Unwalked, under noteMu: each
	// Walk of a root tells its own.
	unwalked map[uint64]bool
	unread   pathList // paths not fully read, added by the walker and readers
	retries  retrySet // where the next run looks again for what failed
	inflight inflight // inodes met in this run, until the writer commits them
	rootSeen []int64  // files met under each root; compare's own
	// checkAt holds, for each volume skimmed with many files to look
	// at again, where the index has them (see checkWithin); compare's
	// own.
	checkAt  map[fsys.Volume][]index.InodePath
	rootKeys []string // what the walk sees of each root's subvolume (see subvols.rootKey)
}

// Run walks roots (absolute, clean paths), hashes what changed and records
// it in ix. It returns ctx's error when interrupted, after committing what
// was done.
func Run(ctx context.Context, ix *index.Index, roots []string, o Options) (Stats, error) {
	s, err := newScanner(ctx, ix, roots, o)
	if err != nil {
		return Stats{}, err
	}
	defer s.cancel()
	return s.run()
}

// newScanner checks the options and the roots and prepares a run.
func newScanner(ctx context.Context, ix *index.Index, roots []string, o Options) (*scanner, error) {
	start := time.Now()
	if err := blockhash.CheckBlockSize(o.BlockSize); err != nil {
		return nil, err
	}
	if err := walk.CheckPatterns(o.Exclude); err != nil {
		return nil, err
	}
	if err := ix.UseBlockSize(o.BlockSize); err != nil {
		return nil, err
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs()
	}
	if o.Error == nil {
		o.Error = func(string, error) {}
	}
	roots = distinctRoots(roots)
	var mounts *walk.Mounts
	if ms, err := fsys.Mounts(); err == nil {
		mounts = walk.NewMounts(ms, o.DedupeOnly)
	} // else each filesystem is looked at as the walk meets it
	rootVols, err := checkRoots(ctx, ix, roots, mounts, o.NewFS, o.Listed)
	if err != nil {
		return nil, err
	}
	walkedBefore, err := ix.Walked(ctx)
	if err != nil {
		return nil, err
	}
	retry, err := ix.Retries(ctx)
	if err != nil {
		return nil, err
	}
	known, err := ix.KnownUnder(ctx, roots)
	if err != nil {
		return nil, err
	}
	vols, err := ix.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	legacy := false
	for v := range vols {
		legacy = legacy || index.Legacy(v)
	}
	empty, err := ix.Empty(ctx)
	if err != nil {
		return nil, err
	}
	gen, err := ix.NextScan(ctx)
	if err != nil {
		return nil, err
	}
	seq, err := ix.WriteSeq(ctx)
	if err != nil {
		return nil, err
	}
	maxID := ix.MaxFileID(ctx)
	s := &scanner{
		ix: ix, o: o, roots: roots, rootVols: rootVols, gen: gen, seq: seq, maxID: maxID, legacy: legacy, empty: empty, start: start,
		jobs:     make(chan job, 256),
		ops:      make(chan op, 256),
		ru:       &reuser{ix: ix, bs: int64(o.BlockSize)},
		newVols:  make(map[fsys.Volume]bool),
		adopted:  make(map[fsys.Volume]bool),
		rootSeen: make([]int64, len(roots)),
		checkAt:  make(map[fsys.Volume][]index.InodePath),
	}
	s.own = OwnFiles(o.Index)
	s.metFS = make(map[string]bool)
	for _, v := range rootVols {
		s.metFS[v.FS] = true
	}
	s.mounts = mounts
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.c.known.Store(known)
	s.sv = newSubvols(walkedBefore, o, func(path string, dev uint64) fsys.Volume {
		s.noteDevice(path, dev)
		return s.devs.of(dev)
	})
	s.sv.adopt = s.adopt
	s.sv.retry = retry
	s.sv.dirs = func(v fsys.Volume, inos []uint64) (map[uint64]index.Dir, error) { return ix.Dirs(s.ctx, v, inos) }
	s.sv.known = func(v fsys.Volume, inos []uint64) (map[uint64]bool, error) {
		at, err := ix.InodePaths(s.ctx, v, inos)
		known := make(map[uint64]bool, len(at))
		for _, p := range at {
			known[p.Ino] = true
		}
		return known, err
	}
	rootsWalked, err := ix.RootsWalked(ctx)
	if err != nil {
		return nil, err
	}
	s.rootKeys = make([]string, len(roots))
	for i, r := range roots {
		if v, ok := rootVols[r]; ok {
			s.rootKeys[i] = s.sv.rootKey(r, v, rootsWalked[r])
		}
	}
	return s, nil
}

// run starts the stages and waits for them. The walker, the readers and
// the writer run on goroutines of their own; compare runs on the caller's.
func (s *scanner) run() (Stats, error) {
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.write() }()

	// compare -> jobs -> placers -> e -> readers
	e := newElevator(windowSize())
	e.hold = holdReads
	var placers, readers sync.WaitGroup
	for range s.o.Jobs {
		placers.Go(func() { s.place(e) })
		readers.Go(func() { s.read(e) })
	}
	go func() {
		placers.Wait()
		e.close()
	}()

	stopProgress := make(chan struct{})
	var progress sync.WaitGroup
	if s.o.Progress != nil {
		progress.Go(func() { s.report(stopProgress) })
	}

	entries := make(chan item, 4096)
	s.items = entries
	walkErr := make(chan error, 1)
	go func() { walkErr <- s.walk(entries) }()
	cmpErr := s.compare(entries) // until the walker closes entries
	werr := <-walkErr
	s.c.walkDone.Store(true)
	close(s.jobs)
	readers.Wait()
	s.sv.close()

	if werr == nil && cmpErr == nil && s.ctx.Err() == nil {
		s.finish()
	}
	close(s.ops)
	wrErr := <-writeErr
	close(stopProgress)
	progress.Wait()

	st := s.c.stats(s.start)
	s.sv.unwalked(&st)
	switch {
	case cmpErr != nil:
		return st, cmpErr
	case wrErr != nil:
		return st, wrErr
	case werr != nil:
		return st, werr
	}
	return st, s.ctx.Err()
}

// report calls o.Progress about twice a second until stop is closed.
func (s *scanner) report(stop <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.o.Progress(s.c.stats(s.start))
		case <-stop:
			return
		}
	}
}

// finish sends what a run records once its walk has completed: the paths
// not fully read (nothing under them is pruned), the prune, each root
// with its volume and the files met under it, and, unless a file failed
// where the next run would not look again, what the walk saw of each
// subvolume and where the records of directories no longer there are
// dropped.
//
// What the walk saw of a btrfs subvolume tells the next run to look only
// at what changed since (see subvols). A file that changed while it was
// read needs nothing more: its inode item was written after the
// generation the walk records, so the next run's tree search finds it.
// Anything else that failed (a file with an I/O error, a directory that
// could not be listed, a path too long to open) may never change, and
// the search would never show it again: the directory that holds it is
// recorded with the walk (see retrySet), and the next run walks below it
// again, whatever changed, and looks at each file kept there (distrust);
// a failure that cannot be placed so keeps the run from recording any
// walk, and the next run walks again all that this one walked. Without
// this, a file that fails every night (a bad sector, a VM image in use)
// would have every night walk again all that the last complete one did.
func (s *scanner) finish() {
	whole := s.sv.walkedWhole()
	retry, failed := s.retries.all()
	for _, p := range s.unread.all() {
		s.ops <- op{keep: p}
	}
	if !failed && (len(whole) > 0 || slices.ContainsFunc(s.rootKeys, func(k string) bool { return k != "" })) {
		for _, p := range s.retries.failed {
			s.ops <- op{distrust: p}
		}
	}
	if !s.o.NewFS {
		s.noteMu.Lock()
		met := slices.AppendSeq([]string{}, maps.Keys(s.metFS))
		s.noteMu.Unlock()
		s.ops <- op{keepFS: met}
	}
	s.ops <- op{prune: true}
	for i, r := range s.roots {
		if v, ok := s.rootVols[r]; ok {
			o := root{path: r, vol: v, files: s.rootSeen[i]}
			if !failed {
				o.walked, o.retry = s.rootKeys[i], retry[v]
			}
			s.ops <- op{root: &o}
		}
	}
	if !failed {
		for v, key := range s.sv.endKeys(whole) {
			s.ops <- op{walked: &walked{vol: v, key: key, retry: retry[v]}}
		}
		for _, r := range s.sv.dirRegions() {
			s.ops <- op{pruneDirs: &r}
		}
	}
}

// fail reports a file that could not be read; keep says that what the
// index holds at or below path stays. The next run looks at path again
// (see retrySet).
func (s *scanner) fail(path string, err error, keep bool) {
	s.c.failed.Add(1)
	s.o.Error(path, err)
	if keep {
		s.unread.add(path)
	}
	s.retries.fail(path)
	s.retryAt(path)
}

// failChanged reports a file that changed while it was read: the next
// run's tree search finds it (see finish).
func (s *scanner) failChanged(path string, err error) {
	s.c.failed.Add(1)
	s.c.changedRead.Add(1)
	s.o.Error(path, err)
}

// retryAt notes, for the next run to walk again, the directory that holds
// path, which could not be read: the nearest above it that can be looked
// up (a path too long to open has none close by), without following a
// symlink, on a device the walk met. path itself on another device (the
// top of a subvolume, a mount point) cannot be placed so, as the walk
// would record what it saw of that volume though it could not list it:
// such a failure keeps the run from recording any walk.
func (s *scanner) retryAt(path string) {
	var dev uint64
	hasDev := false
	if h, err := safeopen.Lookup(path); err == nil {
		dev, hasDev = uint64(h.Stat.Dev), true
		h.Close()
	}
	for d := filepath.Dir(path); filepath.IsAbs(d); d = filepath.Dir(d) {
		h, err := safeopen.Lookup(d)
		if err != nil {
			if d == "/" {
				break
			}
			continue
		}
		st := h.Stat
		h.Close()
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && s.devs.known(uint64(st.Dev)) && (!hasDev || dev == uint64(st.Dev)) {
			s.retries.add(s.devs.of(uint64(st.Dev)), index.Retry{Ino: st.Ino, Path: d})
			return
		}
		break
	}
	s.retries.lost()
}

// retrySet holds, by volume, the directories that held what a run could
// not read, and how many such failures could not be placed (see finish).
type retrySet struct {
	mu      sync.Mutex
	dirs    map[fsys.Volume]map[uint64]string // inode -> path
	nowhere int
	failed  []string // the paths that failed; read once the run is done
}

func (r *retrySet) fail(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, path)
}

func (r *retrySet) add(v fsys.Volume, d index.Retry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dirs == nil {
		r.dirs = make(map[fsys.Volume]map[uint64]string)
	}
	if r.dirs[v] == nil {
		r.dirs[v] = make(map[uint64]string)
	}
	r.dirs[v][d.Ino] = d.Path
}

func (r *retrySet) lost() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nowhere++
}

// all returns the directories to retry in each volume, by inode, and
// whether a failure could not be placed. Each lies in a volume whose
// walk the run records, whole or from a root inside it, or in one of a
// filesystem without a tree search, whose next walk looks at everything
// again.
func (r *retrySet) all() (map[fsys.Volume][]index.Retry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[fsys.Volume][]index.Retry, len(r.dirs))
	for v, dirs := range r.dirs {
		for _, ino := range slices.Sorted(maps.Keys(dirs)) {
			out[v] = append(out[v], index.Retry{Ino: ino, Path: dirs[ino]})
		}
	}
	return out, r.nowhere > 0
}

// pathList is a list of paths that several goroutines add to.
type pathList struct {
	mu    sync.Mutex
	paths []string
}

func (l *pathList) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p)
}

// under reports whether path lies at or below one of the paths.
func (l *pathList) under(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return underAny(path, l.paths)
}

func (l *pathList) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.paths...)
}

// devices maps the st_dev numbers met in this run to their volumes.
type devices struct {
	mu   sync.Mutex
	vols map[uint64]fsys.Volume
}

// movedSet holds, for each volume, the files compare gave another path
// in this run, each added before it sends the op that does: a snapshot
// taken whole from its origin's rows (see scanner.adopt) is skimmed only
// where none of the origin's rows took another path first (see
// subvols.origin).
type movedSet struct {
	mu    sync.Mutex
	moves map[fsys.Volume]moves
}

// moves are the paths files of a volume left and took, in the order
// compare gave them, up to maxMoves of them; over that, only that there
// were more.
type moves struct {
	paths [][2]string
	over  bool
}

// maxMoves bounds the moves held of a volume: a snapshot of it is walked
// whole past that (see movedWithin).
const maxMoves = 4096

func (m *movedSet) add(v fsys.Volume, from, to string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.moves == nil {
		m.moves = make(map[fsys.Volume]moves)
	}
	mv := m.moves[v]
	if len(mv.paths) < maxMoves {
		mv.paths = append(mv.paths, [2]string{from, to})
	} else {
		mv.over = true
	}
	m.moves[v] = mv
}

// of returns the files of volume v that took another path so far.
func (m *movedSet) of(v fsys.Volume) moves {
	m.mu.Lock()
	defer m.mu.Unlock()
	mv := m.moves[v]
	return moves{paths: slices.Clone(mv.paths), over: mv.over}
}

func (d *devices) of(dev uint64) fsys.Volume {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.vols[dev]
}

func (d *devices) known(dev uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.vols[dev]
	return ok
}

func (d *devices) set(dev uint64, v fsys.Volume) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.vols == nil {
		d.vols = make(map[uint64]fsys.Volume)
	}
	d.vols[dev] = v
}

// adopt has the writer record the files of volume to, a new snapshot
// met at toTop, from the rows of volume from, met at fromTop by its last
// complete walk (see subvols.origin), and returns which of the inodes
// ask the snapshot has rows of then; it tells compare, ahead of anything
// the walker sends after it, to read its rows again once committed (the
// cursor may have read past where they are; see adoption). It also
// returns the rows of volume from that this run gave another path before
// (see moved). It runs on the walker's goroutine, and waits for the
// writer to record the rows, not to commit them.
func (s *scanner) adopt(from, to fsys.Volume, fromTop, toTop string, withGone bool, ask []uint64) (index.Adopted, map[uint64]bool, moves) {
	req := &adoption{from: from, to: to, fromTop: fromTop, toTop: toTop, withGone: withGone, ask: ask,
		done: make(chan index.Adopted, 1), committed: make(chan struct{})}
	select {
	case s.ops <- op{adopt: req}:
	case <-s.ctx.Done():
		return index.Adopted{}, nil, moves{}
	}
	var a index.Adopted
	select {
	case a = <-req.done:
	case <-s.ctx.Done():
		return index.Adopted{}, nil, moves{}
	}
	if a.Files == 0 {
		return a, nil, moves{}
	}
	select {
	case s.items <- item{adopted: to, committed: req.committed}:
	case <-s.ctx.Done():
		return index.Adopted{}, nil, moves{}
	}
	return a, req.known, s.moved.of(from)
}

// noteDevice learns the volume of st_dev dev, met at path, the first time
// the walk meets it, and records it. A volume that cannot be
// described keeps a name made of dev, which findsame leaves out. The
// walker calls it (through subvols too), and compare for a file it
// stat'ed itself; compare reads what it learnt.
func (s *scanner) noteDevice(path string, dev uint64) {
	if s.devs.known(dev) {
		return
	}
	s.noteMu.Lock()
	defer s.noteMu.Unlock()
	if s.devs.known(dev) {
		return
	}
	v := index.LegacyVolume(dev)
	if in, err := describe(path, dev); err == nil {
		v = in.Volume
		s.metFS[v.FS] = true
		s.ops <- op{volume: &volume{info: in, dev: dev}}
	} else {
		s.o.Error(path, err)
	}
	s.devs.set(dev, v)
}

// OwnFiles names the files the tools keep in the directory of the index
// at path, which a walk leaves out: a tree that holds the index would
// otherwise have it, its log and findsame's table of sums read again
// after every run that wrote them (gigabytes on a large host), and a
// file changing while read failed every night. They are the index, the
// files whose names start with its name and "-" (INDEX-wal, INDEX-shm,
// INDEX-lock, INDEX-sums...) or with "." and that ("." INDEX-sums-*.tmp),
// and findsame's temporary files (.findsame-*.tmp). It returns nil for
// no path, or a directory that cannot be stat'ed.
func OwnFiles(path string) *walk.Own {
	if path == "" {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(filepath.Dir(path), &st) != nil {
		return nil
	}
	base := filepath.Base(path)
	return &walk.Own{Dev: uint64(st.Dev), Ino: st.Ino, Names: func(name string) bool {
		return name == base || strings.HasPrefix(name, base+"-") || strings.HasPrefix(name, "."+base+"-") || strings.HasPrefix(name, ".findsame-")
	}}
}

// noteUnwalked tells o.Unwalked of a filesystem the walk did not list,
// once a run.
func (s *scanner) noteUnwalked(path, fsType string, dev uint64, pseudo bool) {
	s.noteMu.Lock()
	defer s.noteMu.Unlock()
	if s.unwalked[dev] || s.o.Unwalked == nil {
		return
	}
	if s.unwalked == nil {
		s.unwalked = make(map[uint64]bool)
	}
	s.unwalked[dev] = true
	s.o.Unwalked(path, fsType, pseudo)
}

// distinctRoots returns roots without repeats and without the roots that
// lie under another, in their order: walking a tree twice would count
// every file in it as a hard link of itself.
func distinctRoots(roots []string) []string {
	var out []string
	for i, r := range roots {
		covered := false
		for j, o := range roots {
			if j != i && walk.Under(r, o) && (r != o || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

func underAny(path string, roots []string) bool {
	for _, r := range roots {
		if walk.Under(path, r) {
			return true
		}
	}
	return false
}

// describe returns the volume of dev, met at path (a directory or a
// regular file).
func describe(path string, dev uint64) (fsys.Info, error) {
	f, err := open(path)
	if err != nil {
		return fsys.Info{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fsys.Info{}, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if uint64(st.Dev) != dev {
		return fsys.Info{}, fmt.Errorf("%s: %w", path, ErrChanged)
	}
	in, err := fsys.Describe(f)
	if err != nil {
		return fsys.Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return in, nil
}

// ErrRoot marks a root that cannot be walked: missing, or on another
// volume than at the last run.
var ErrRoot = errors.New("bad root")

// rootError is a root that cannot be walked.
type rootError struct {
	root string
	err  error
}

func (e *rootError) Error() string        { return fmt.Sprintf("root %s: %v", e.root, e.err) }
func (e *rootError) Unwrap() error        { return e.err }
func (e *rootError) Is(target error) bool { return target == ErrRoot }

// checkRoots returns the volume of each root, refusing a root that is
// missing or that is on another volume than at the last complete run
// (the mount point of a filesystem that is not mounted, say), unless
// newFS accepts the change: walking it would prune all its files. With
// listed, roots are paths listed on standard input (by find, say), and one
// that is gone is left to the walk, which reports it as failed.
func checkRoots(ctx context.Context, ix *index.Index, roots []string, mounts *walk.Mounts, newFS, listed bool) (map[string]fsys.Volume, error) {
	was, err := ix.Roots(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]fsys.Volume)
	for _, r := range roots {
		if len(mounts.Listed(r)) == 0 {
			// On a mount the walk leaves out, with none below that it
			// lists: not looked at (its server may be gone), and the walk
			// tells it not walked.
			m, _ := mounts.Nearest(r)
			if v, ok := was[r]; ok && !index.Legacy(v) && !newFS {
				return nil, &rootError{r, fmt.Errorf("on %s, but it was on %s at the last run: is a filesystem not mounted there? (nothing was changed; -new-fs accepts the change)", m.Type, v)}
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(r, &st); err != nil {
			if listed && errors.Is(err, unix.ENOENT) {
				continue // gone since listed: the walk reports it
			}
			return nil, &rootError{r, err}
		}
		if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
			continue // the walk skips it
		}
		in, err := describe(r, uint64(st.Dev))
		if err != nil {
			return nil, &rootError{r, err}
		}
		if v, ok := was[r]; ok && v != in.Volume && !index.Legacy(v) && !newFS {
			return nil, &rootError{r, fmt.Errorf("on %s %s, but it was on %s at the last run: is a filesystem not mounted there? (nothing was changed; -new-fs accepts the change)",
				fstype.Name(in.Magic), in.Volume, v)}
		}
		out[r] = in.Volume
	}
	return out, nil
}

// Abs makes each root absolute and clean.
func Abs(roots []string) ([]string, error) {
	out := make([]string, len(roots))
	for i, r := range roots {
		a, err := filepath.Abs(r)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}
