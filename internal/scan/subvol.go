package scan

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/walk"
)

// subvols decides which btrfs subvolumes a run leaves unwalked: those
// whose generation -- the transaction that last changed anything in them
// -- and walk options are what their last complete walk saw, and that
// hold no other subvolume and have no filesystem mounted below them
// (whose changes their generation would not show). An unchanged
// read-only snapshot then costs a few ioctls. So does, but for the files
// that changed, one in which no directory changed since (skimmed: see
// decide). Each filesystem is committed (syncfs) before its first
// generation is read, so that no change waits unseen in a transaction.
//
// The walk asks enter from its goroutine; compare asks under as it
// merges, and the run reads the rest once the walk is done.
type subvols struct {
	sig      string                 // the options that shape a walk
	excludes bool                   // the walk leaves out paths that match patterns
	walked   map[fsys.Volume]string // what the index says each last walk saw
	// ended holds, for the volumes in walked whose last walk recorded
	// it, the volume's generation when that walk's run ended: every
	// change the walk could have seen was made no later (see endKeys).
	ended map[fsys.Volume]uint64
	// retry holds, by volume, the directories that held what the run
	// that recorded its last walk could not read (index.Index.Retries):
	// walked again, whatever changed (see withRetries).
	retry map[fsys.Volume][]uint64
	note  func(path string, dev uint64) fsys.Volume

	mu      sync.Mutex
	decided map[uint64]bool        // by st_dev: enter or not
	synced  map[string]bool        // filesystems committed in this run
	seen    map[fsys.Volume]string // subvolumes met: what this walk sees
	left    []leftOut              // subvolumes left unwalked
	// singles holds, in path order, the files the walk hands over
	// where it does not go (see singlesOf), until it has passed them.
	singles []single
	// changes holds, for each subvolume walked or skimmed again with
	// the options of its last complete walk, what changed since (see
	// since): the files whose extents may have changed (deduplication,
	// a reflink or a defragmentation changes them without changing the
	// file's identity, and compare has the readers record them again),
	// their extent items in the leaves written since, and the files
	// whose inode items were rewritten.
	changes map[fsys.Volume]fiemap.Changes
	// origins holds, for each snapshot walked for the first time, the
	// subvolume it was taken from after that subvolume's last complete
	// walk, and the files whose extent items changed in the snapshot
	// since that walk: the others are as that walk recorded them. Or,
	// where there is no such walk, an older snapshot of the same
	// subvolume met before in this run (see siblings).
	origins map[fsys.Volume]origin
	// siblings holds, by filesystem and origin, the read-only snapshots
	// unchanged since they were made that the walk met for the first
	// time, in the order it met them, with the transaction that made
	// each.
	siblings map[string][]sibling
	// readOnly holds, by filesystem and UUID, the read-only subvolumes
	// the walk met, each with the last transaction that changed it: the
	// origin of a snapshot met after it (see originMet).
	readOnly map[string]readOnlyMet
	// listable holds, by path, the device of each subvolume (or root)
	// walked again whose changes since its last complete walk there (or
	// its origin's, for a snapshot taken whole) are in changes: below
	// it, on that device, the walk hands over files as listed (see
	// listed).
	listable map[string]uint64
	// mounts holds where filesystems were mounted when the run began
	// (empty, with mountsErr, when that could not be read).
	mounts    map[string]bool
	mountsErr error
	// parts holds, by st_dev, the subvolumes walked only in part (see
	// partsOf): the directories below which the walk goes, each with a
	// trailing slash, sorted.
	parts map[uint64][]string
	// recording holds, for each btrfs volume the walk goes into after a
	// tree search, the generation the walk began at: it records every
	// directory it meets there (see dirTo).
	recording map[fsys.Volume]uint64
	// whole holds the trees walked whole in those volumes: the records
	// of the directories no longer in them (nor in the parts walked, see
	// left) are dropped when the run completes (see dirRegions).
	whole []region
	// dirs, if set, returns what walks recorded of directories of a
	// volume (index.Index.Dirs).
	dirs func(v fsys.Volume, inos []uint64) (map[uint64]index.Dir, error)
	// known tells which of the inodes inos of volume v the index has a
	// row of.
	known func(v fsys.Volume, inos []uint64) (map[uint64]bool, error)
	// adopt, if set, records the files of a new snapshot from its
	// origin's rows, and tells which of the inodes asked it has rows of
	// then (scanner.adopt).
	adopt func(from, to fsys.Volume, fromTop, toTop string, withGone bool, ask []uint64) (index.Adopted, map[uint64]bool, moves)
}

// region is a tree a walk went through whole, in volume vol, from the
// generation gen on.
type region struct {
	vol  fsys.Volume
	path string
	gen  uint64
}

// origin is where a snapshot came from (see subvols.origins), with the
// snapshot's top directory open for tree searches (see fromOrigin).
type origin struct {
	vol     fsys.Volume
	changed map[uint64]bool
	top     *os.File
}

// leftOut is a subvolume left unwalked at path: unchanged since its last
// complete walk, or skimmed, when no directory in it changed since (see
// decide), and then the files whose inode or extent items changed since
// are looked at again (see changes). Where parts is set, the subvolume is
// skimmed but for the directories it names, which are walked (see
// partsOf).
type leftOut struct {
	path    string
	vol     fsys.Volume
	skimmed bool
	root    bool     // a root left unwalked, not a subvolume met below one
	parts   []string // the directories walked, as in subvols.parts
	top     string   // with parts: where its top directory is (see walkParts)
	check   []uint64 // skimmed: the files to look at again (see leftAt)
}

// btrfsFirstFree is BTRFS_FIRST_FREE_OBJECTID: the inode of a subvolume's
// root directory.
const btrfsFirstFree = 256

func newSubvols(walked map[fsys.Volume]string, o Options, note func(string, uint64) fsys.Volume) *subvols {
	points, err := fsys.MountPoints()
	mounts := make(map[string]bool, len(points))
	for _, m := range points {
		mounts[m] = true
	}
	keys := make(map[fsys.Volume]string, len(walked))
	ended := make(map[fsys.Volume]uint64)
	for v, k := range walked {
		base, end, ok := splitEnd(k)
		keys[v] = base
		if ok {
			ended[v] = end
		}
	}
	return &subvols{
		mounts:    mounts,
		mountsErr: err,
		sig:       fmt.Sprintf("bs=%d x=%v exclude=%q", o.BlockSize, o.OneFS, o.Exclude),
		excludes:  len(o.Exclude) > 0,
		walked:    keys,
		ended:     ended,
		note:      note,
		decided:   make(map[uint64]bool),
		synced:    make(map[string]bool),
		seen:      make(map[fsys.Volume]string),
		changes:   make(map[fsys.Volume]fiemap.Changes),
		origins:   make(map[fsys.Volume]origin),
		siblings:  make(map[string][]sibling),
		readOnly:  make(map[string]readOnlyMet),
		listable:  make(map[string]uint64),
		parts:     make(map[uint64][]string),
		recording: make(map[fsys.Volume]uint64),
	}
}

// enter reports whether the walk goes into the directory at path.
func (s *subvols) enter(path string, st *unix.Stat_t) bool {
	dev := uint64(st.Dev)
	if st.Ino != btrfsFirstFree {
		parts, ok := s.partsOn(dev)
		return !ok || inPart(parts, childPath(path)) || aboveAPart(parts, path)
	}
	s.mu.Lock()
	ok, done := s.decided[dev]
	s.mu.Unlock()
	if done {
		return ok
	}
	ok = s.decide(path, dev)
	s.mu.Lock()
	s.decided[dev] = ok
	s.mu.Unlock()
	return ok
}

func (s *subvols) decide(path string, dev uint64) bool {
	f, err := open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	var st unix.Stat_t
	var sf unix.Statfs_t
	if unix.Fstat(int(f.Fd()), &st) != nil || uint64(st.Dev) != dev || st.Ino != btrfsFirstFree ||
		unix.Fstatfs(int(f.Fd()), &sf) != nil || sf.Type != fstype.Btrfs {
		return true
	}
	v := s.note(path, dev)
	gen, ok := s.generation(f, v)
	if !ok {
		return true
	}
	s.noteSibling(f, v)
	key := s.key(gen, path)
	s.mu.Lock()
	prev := s.walked[v]
	s.seen[v] = key
	s.mu.Unlock()
	nested := s.nested(f, path)
	skimmed := false
	switch {
	case prev == key && !nested && len(s.retry[v]) == 0:
		// Unchanged: left unwalked.
	case prev == "":
		parts, singles, ok := s.origin(f, v, path)
		if !ok || nested {
			s.walkWhole(f, v, path, gen)
			return true
		}
		// What changed in it since that origin's walk is known: its
		// files go as listed, as in a subvolume walked again.
		s.mu.Lock()
		s.listable[path] = dev
		s.mu.Unlock()
		s.addSingles(singles)
		if len(parts) > 0 {
			// Directories changed in it since that origin's last walk:
			// walked below them alone, and skimmed elsewhere.
			s.walkParts(f, dev, path, path, v, parts, gen)
			return true
		}
		// Its files recorded from its origin's rows, and no directory
		// changed in it since that origin's last walk: skimmed, as if
		// that walk had been its own.
		skimmed = true
	default:
		c, ok := s.since(f, v, prev, gen, path)
		if !ok || nested {
			return true
		}
		var parts []string
		if c.Others {
			// Directories changed: walked below them alone, and skimmed
			// elsewhere (see partsOf), or walked whole; skimmed where
			// only their access times changed.
			if parts, ok = partsOf(f, path, path, btrfsFirstFree, s.entriesChanged(v, prev, path, c)); !ok {
				s.walkWhole(f, v, path, gen)
				return true
			}
		}
		s.addSingles(singlesOf(f, path, path, v, s.unknownFiles(v, c), parts))
		if len(parts) > 0 {
			s.walkParts(f, dev, path, path, v, parts, gen)
			return true
		}
		// Skimmed: no directory changed since the last complete walk, so
		// every path it recorded still leads to its file, and no file was
		// added or removed. The files whose items changed are looked at
		// where the index has them; the rest are as it has them.
		skimmed = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left = append(s.left, leftOut{path: path, vol: v, skimmed: skimmed})
	return false
}

// partsOf returns the directories below dir, inode ino, of the subvolume
// open at f, whose top directory is at top, that a walk of dir goes below
// when changed holds the directories whose entries may have changed since
// dir's last complete walk (see entriesChanged): those of them that lie
// below no other, where they are now, each with a trailing slash, sorted.
// false when dir is among them (it is walked whole) or a path cannot be
// had.
//
// Elsewhere the walk is not needed. A directory none of whose entries was
// added, removed or renamed since, and that was not renamed or moved
// itself, has its inode item as it was (each of those rewrites it), so
// if none above it changed either, it is where the last walk met it and
// lists the files it listed then: every row the index has in it leads to
// its file, as in a subvolume skimmed, and the files whose items changed
// are looked at where the index has them (and those it has no row of
// where they are: see singlesOf). Below a directory that changed,
// paths may have been added, removed or moved (a directory renamed moves
// all below it), and the walk goes there as into any subvolume walked
// again; a directory deleted since has none to walk, and the one that
// held it changed.
func partsOf(f *os.File, top, dir string, ino uint64, changed map[uint64]bool) ([]string, bool) {
	if changed[ino] {
		return nil, false
	}
	below := childPath(dir)
	parts := make([]string, 0, len(changed))
	for d := range changed {
		rel, ok, err := fsys.InoPath(f, d)
		if err != nil {
			return nil, false
		}
		if !ok || rel == "" {
			continue // gone since: nothing to walk
		}
		p := childPath(top) + rel + "/"
		switch {
		case p == below:
			return nil, false
		case strings.HasPrefix(p, below):
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	// Keep those below no other: one below another sorts after it, and
	// before anything not below it (see inPart).
	out := parts[:0]
	for _, p := range parts {
		if len(out) == 0 || !strings.HasPrefix(p, out[len(out)-1]) {
			out = append(out, p)
		}
	}
	return out, true
}

// single is a file of volume vol, inode ino, that the walk hands over
// at path, where it does not go itself (see singlesOf).
type single struct {
	path string
	vol  fsys.Volume
	ino  uint64
}

// singlesOf returns, for unknown, regular files of volume v whose inode
// items were rewritten since the last complete walk of dir (in the
// subvolume open at f, whose top directory is at top) that the index has
// no row of, where each is now: those below dir and outside parts, the
// directories walked. Such a file (empty when walked, say, and holding
// data now; or one the walk leaves out) lies in a directory that need
// not have changed, which the walk does not list: it hands the file over
// as if it had met it there (see scanner.single), rather than walk its
// directory and all below it, which for a file in the top directory is
// the whole subvolume, every night that file changes. One gone since has
// no path, and is left.
func singlesOf(f *os.File, top, dir string, v fsys.Volume, unknown []uint64, parts []string) []single {
	below := childPath(dir)
	var out []single
	for _, ino := range unknown {
		rel, ok, err := fsys.InoPath(f, ino)
		if err != nil || !ok || rel == "" {
			continue
		}
		p := childPath(top) + rel
		if strings.HasPrefix(p, below) && !inPart(parts, p) {
			out = append(out, single{path: p, vol: v, ino: ino})
		}
	}
	return out
}

// addSingles adds files for the walk to hand over (see singlesOf).
func (s *subvols) addSingles(add []single) {
	if len(add) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.singles = append(s.singles, add...)
	slices.SortFunc(s.singles, func(a, b single) int { return strings.Compare(a.path, b.path) })
}

// takeSingles removes and returns the files to hand over that lie below
// root and whose paths sort before before (all of them below root if it
// is ""). Those of the roots a run takes later, noted before it starts
// (see rootParts), wait for their own walk.
func (s *subvols) takeSingles(root, before string) []single {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.singles) == 0 {
		return nil
	}
	at := func(p string) int {
		i, _ := slices.BinarySearchFunc(s.singles, p, func(a single, p string) int { return strings.Compare(a.path, p) })
		return i
	}
	lo, hi := index.PathRange(root)
	if before != "" && before < hi {
		hi = before
	}
	i, j := at(lo), at(hi)
	if i >= j {
		return nil
	}
	out := slices.Clone(s.singles[i:j])
	s.singles = slices.Delete(s.singles, i, j)
	return out
}

// unknownFiles returns the regular files of volume v whose inode items
// the tree search found rewritten (c) that the index has no row of.
func (s *subvols) unknownFiles(v fsys.Volume, c fiemap.Changes) []uint64 {
	if len(c.Files) == 0 || s.known == nil {
		return nil
	}
	known, err := s.known(v, inodesOf(c.Files))
	if err != nil {
		return nil
	}
	return unknownOf(c, known)
}

// inodesOf returns the inodes of set, in no order.
func inodesOf(set map[uint64]bool) []uint64 {
	inos := make([]uint64, 0, len(set))
	for ino := range set {
		inos = append(inos, ino)
	}
	return inos
}

// unknownOf returns those of the files of c whose inode items changed
// that known does not hold, in order.
func unknownOf(c fiemap.Changes, known map[uint64]bool) []uint64 {
	var out []uint64
	for ino := range c.Files {
		if !known[ino] {
			out = append(out, ino)
		}
	}
	slices.Sort(out)
	return out
}

// entriesChanged returns those of the directories whose inode items the
// tree search found rewritten since a complete walk of volume v that saw
// prev, met at path ("": anywhere), in v or in a snapshot made of v since
// (c), whose entries may have changed: all but those whose ctime is
// the one a complete walk that began no later than that one recorded
// (see dirTo). Adding, removing or renaming an entry, or moving the
// directory, sets its ctime; writing its access time (relatime: once a
// day, as another tool lists it) rewrites its inode item and leaves its
// ctime. A record made by a walk that did not complete began later than
// the complete walk a run goes by, and is not believed.
func (s *subvols) entriesChanged(v fsys.Volume, prev, path string, c fiemap.Changes) map[uint64]bool {
	changed := make(map[uint64]bool, len(c.Dirs))
	inos := make([]uint64, 0, len(c.Dirs))
	for d := range c.Dirs {
		changed[d] = true
		inos = append(inos, d)
	}
	before, ok := s.genOf(prev, path)
	if !ok || s.dirs == nil || len(inos) == 0 {
		return changed
	}
	recorded, err := s.dirs(v, inos)
	if err != nil {
		return changed
	}
	for d, r := range recorded {
		if r.Gen <= before && r.Ctime == c.Dirs[d] {
			delete(changed, d)
		}
	}
	return changed
}

// walkWhole notes that the walk goes through path, in volume v (open at
// f), whole, from generation gen on, and records the directories it meets
// there; but not in a read-only snapshot, whose directories do not
// change (made writable and changed, its changed directories have no
// record, and are walked).
func (s *subvols) walkWhole(f *os.File, v fsys.Volume, path string, gen uint64) {
	if fsys.ReadOnly(f) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recording[v] = gen
	s.whole = append(s.whole, region{vol: v, path: path, gen: gen})
}

// dirTo reports whether the walk records a directory it meets in volume v
// (see entriesChanged), and the generation it began at there: in a btrfs
// volume searched (not a read-only snapshot: see walkWhole), every one,
// its ctime taken before it is listed (walk.Options.Dir), so that a
// change the listing misses makes it differ.
func (s *subvols) dirTo(v fsys.Volume) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen, ok := s.recording[v]
	return gen, ok
}

// dirRegions returns the trees a complete run walked whole where it
// recorded directories: those walked whole, and the parts walked of
// others. Every directory in them was met and recorded again; the records
// of the others there are of directories gone (Tx.PruneDirs).
func (s *subvols) dirRegions() []region {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.whole)
	for _, l := range s.left {
		gen, ok := s.recording[l.vol]
		if !ok {
			continue
		}
		for _, p := range l.parts {
			out = append(out, region{vol: l.vol, path: strings.TrimSuffix(p, "/"), gen: gen})
		}
	}
	return out
}

// walkParts notes that the walk of dir, on device dev and volume v (open
// at f), goes only below parts (see partsOf), and records the directories
// it meets there, from generation gen on (see dirTo), but in a read-only
// snapshot (see walkWhole); top is where its top directory would be if
// dir lies where it does in it (the paths of its inodes, relative to it,
// follow top).
func (s *subvols) walkParts(f *os.File, dev uint64, top, dir string, v fsys.Volume, parts []string, gen uint64) {
	ro := fsys.ReadOnly(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ro {
		s.recording[v] = gen
	}
	// Two roots in one subvolume: the walk goes below the parts of both.
	all := append(slices.Clone(s.parts[dev]), parts...)
	slices.Sort(all)
	s.parts[dev] = all
	s.left = append(s.left, leftOut{path: dir, vol: v, skimmed: true, parts: parts, top: top})
}

// inPart reports whether path (a file's, or a directory's with a trailing
// slash) lies below one of parts (see subvols.parts). The greatest part
// not after path is the only one it can lie below: any part between
// another that holds path and path would lie below that one too.
func inPart(parts []string, path string) bool {
	i, found := slices.BinarySearch(parts, path)
	if found {
		return true
	}
	return i > 0 && strings.HasPrefix(path, parts[i-1])
}

// aboveAPart reports whether one of parts lies below the directory at
// path: the walk goes through it to get there.
func aboveAPart(parts []string, path string) bool {
	dir := childPath(path)
	i, _ := slices.BinarySearch(parts, dir)
	return i < len(parts) && strings.HasPrefix(parts[i], dir)
}

// nextPart returns the first of parts after path, a path that lies below
// none of them, or "" if there is none: where rows to walk start again.
func nextPart(parts []string, path string) string {
	i, _ := slices.BinarySearch(parts, path)
	if i < len(parts) {
		return parts[i]
	}
	return ""
}

// files reports whether the walk hands over the files of the directory at
// path (see walk.Options.Files): all but those of a subvolume walked in
// part, outside its parts.
func (s *subvols) files(path string, st *unix.Stat_t) bool {
	parts, ok := s.partsOn(uint64(st.Dev))
	return !ok || inPart(parts, childPath(path))
}

// partsOn returns the parts walked of the subvolume on device dev, if it
// is walked in part (see subvols.parts).
func (s *subvols) partsOn(dev uint64) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts, ok := s.parts[dev]
	return parts, ok
}

// nested reports whether the subvolume holding f holds other subvolumes,
// or a filesystem is mounted below path (or may be: what is mounted where
// could not be read). Its generation does not show their changes, so it
// is walked, however unchanged.
func (s *subvols) nested(f *os.File, path string) bool {
	if fsys.HasSubvols(f) || s.mountsErr != nil {
		return true
	}
	below := childPath(path)
	for m := range s.mounts {
		if strings.HasPrefix(m, below) {
			return true
		}
	}
	return false
}

// mountedOn reports whether something is mounted on path.
func (s *subvols) mountedOn(path string) bool { return s.mounts[path] }

// childPath returns path with a trailing slash: what the paths below it
// begin with.
func childPath(path string) string {
	if strings.HasSuffix(path, "/") {
		return path
	}
	return path + "/"
}

// since notes in changes what changed in volume v (open at f, met at
// path) since a complete walk that saw prev (its key) and recorded every
// file it met as it was then, when prev is of a walk with today's options
// that met it at the same path, and returns it.
func (s *subvols) since(f *os.File, v fsys.Volume, prev string, gen uint64, path string) (fiemap.Changes, bool) {
	before, ok := s.genOf(prev, path)
	if !ok || before > gen {
		return fiemap.Changes{}, false
	}
	// Unchanged since (a root, or a subvolume holding others, walked
	// whatever its generation): the search finds nothing, and every file
	// goes as listed.
	c, err := fiemap.Changed(f, before+1)
	if err != nil {
		return fiemap.Changes{}, false
	}
	c = s.withRetries(v, c)
	var st unix.Stat_t
	ferr := unix.Fstat(int(f.Fd()), &st)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteChanges(v, c)
	if ferr == nil {
		s.listable[path] = uint64(st.Dev)
	}
	return c, true
}

// withRetries returns c with the directories of volume v to walk again
// (see retry) among those whose entries changed: with a ctime no walk
// records, so that entriesChanged keeps them, and partsOf has the walk go
// below them. The rows at what failed there had their owner forgotten
// (see index.Tx.Distrust), so none is taken as listed.
func (s *subvols) withRetries(v fsys.Volume, c fiemap.Changes) fiemap.Changes {
	dirs := s.retry[v]
	if len(dirs) == 0 {
		return c
	}
	c.Dirs = maps.Clone(c.Dirs)
	if c.Dirs == nil {
		c.Dirs = make(map[uint64]int64, len(dirs))
	}
	for _, d := range dirs {
		c.Dirs[d] = -1
	}
	c.Others = true
	return c
}

// listed reports whether the walk hands over the files of the directory
// at path, st, and of those below it on its device, as listed (see
// walk.Options.Listed): where a complete walk with today's options last
// met its subvolume, or a root, and what changed in it since is known
// (see since), or met the origin of a snapshot taken whole, and what
// changed in the snapshot since is known (see origin). compare then
// takes a file for unchanged, without lstat, where the index records it
// at its path with the inode number its directory lists, and its inode
// item was not rewritten since nor its extent items but as recorded
// (scanner.asListed, asRecorded).
//
// That is exact. The walk that saw prev recorded every file it met under
// path, and marked gone every row there that did not lead to its file
// (for a snapshot taken whole, its origin's walk did, and its rows are
// that walk's: see origin); every row written since, by any run,
// recorded a file where the walk met it. So a row not marked gone, at a
// path below, describes its inode as it was at that walk's start or
// later, and an inode whose items were not rewritten since is as it was
// then. Only the listing's inode number ties the path to it now: a
// directory renamed, swapped or replaced since gives its paths other
// inodes, which compare looks at as the walk would have (see
// scanner.stat). A file mounted over another is listed as the one
// below it: compare stats the files at mount points (see mountedOn), and
// nothing goes as listed where what is mounted where could not be read.
func (s *subvols) listed(path string, st *unix.Stat_t) bool {
	if s.mountsErr != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dev, ok := s.listable[path]
	return ok && dev == uint64(st.Dev)
}

// asRecorded reports whether file ino of volume v is as a row recorded
// by its last complete walk or since, whose digest of extent items is
// items (see since): its inode item not rewritten since, and its extent
// items either in no tree leaf written since or the same as the row's
// (a file in a leaf with one that changed: see movedOnly). A file whose
// extents change has its inode item rewritten, but its extent items may
// lie in other leaves than its inode item, and a balance moves extents
// without rewriting inodes.
func (s *subvols) asRecorded(v fsys.Volume, ino uint64, items int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.changes[v]
	if !ok || c.Files[ino] {
		return false
	}
	return !c.Extents[ino] || index.ItemsDigest(c.Items[ino]) == items
}

// noteChanges notes c in changes for volume v, with what was noted of it
// before: asked twice (a root inside v, and v entered from above), both
// searches ran in this run; what either found changed, did. The caller
// holds mu.
func (s *subvols) noteChanges(v fsys.Volume, c fiemap.Changes) {
	had, ok := s.changes[v]
	if !ok {
		s.changes[v] = c
		return
	}
	maps.Copy(had.Extents, c.Extents)
	maps.Copy(had.Files, c.Files)
	// Each search lists a file's items in every leaf written since its
	// transaction, as they are now: the one from further back lists all
	// that the other does, and more.
	for ino, items := range c.Items {
		if len(items) > len(had.Items[ino]) {
			had.Items[ino] = items
		}
	}
	if had.Dirs == nil {
		had.Dirs = make(map[uint64]int64)
	}
	maps.Copy(had.Dirs, c.Dirs)
	had.Others = had.Others || c.Others
	s.changes[v] = had
}

// genOf returns the generation a walk that saw key started at, if it
// walked with today's options and met the subvolume at path (anywhere
// when path is "").
func (s *subvols) genOf(key, path string) (uint64, bool) {
	var gen uint64
	if _, err := fmt.Sscanf(key, "gen=%d ", &gen); err != nil {
		return 0, false
	}
	if path == "" {
		return gen, strings.HasPrefix(key, fmt.Sprintf("gen=%d %s at=", gen, s.sig))
	}
	return gen, key == s.key(gen, path)
}

// topOf returns the path at which the walk that saw key met its
// subvolume, if it walked with today's options.
func (s *subvols) topOf(key string) (string, bool) {
	gen, ok := s.genOf(key, "")
	if !ok {
		return "", false
	}
	path, err := strconv.Unquote(strings.TrimPrefix(key, fmt.Sprintf("gen=%d %s at=", gen, s.sig)))
	return path, err == nil
}

// origin notes in origins where volume v, open at f and never walked,
// came from, when it is a read-only snapshot of a subvolume whose last
// complete walk, with today's options, was over before the snapshot was
// made: its run ended at a generation of the subvolume older than the
// snapshot (see endKeys). Every tree leaf of v written no later than that
// walk's first generation was then in that subvolume unchanged, and its
// rows hold the files as the walk met them, none changed after the
// snapshot was made, so a file of v whose items lie in no newer leaf has
// the data and extents that walk recorded (compare has the writer copy
// them). A snapshot made while the walk was under way may hold a file as
// it was before the walk met it changed.
//
// The snapshot may have been written after it was made, before it was
// made read-only: btrfs receive makes each incremental snapshot as a
// snapshot of its parent and then applies the stream to it. What was
// written lies in newer leaves, and is looked at as anything changed
// since the origin's walk: files whose items changed, and directories
// whose entries did (walked). A file it created may have the inode
// number of a file the origin deleted after its walk, whose row is
// copied: its items are new, so it is looked at again, and its ctime
// (the time it was made) is not the row's.
//
// Where v's top directory is met at top by the walk (not a root inside
// it: "" then), the files of v are first recorded from that subvolume's
// rows, all at once (adopt: index.Tx.Adopt), and v is then handled as if
// that subvolume's last complete walk had been its own, at the same
// generation, and had met it at top: changes holds what changed in it
// since, and the files whose rows this run wrote before (their rows may
// be newer than the snapshot). origin reports whether v may be skimmed
// but below the directories it returns, as a subvolume walked again is
// (see partsOf; none when no directory changed since): its files were
// all recorded (none left out, see index.Adopted.Whole), no row of the
// origin took another path in this run (moved) but between directories
// walked, its top directory did not change since, and the walk excludes
// no paths. Otherwise v is walked
// whole, and its files compared with their rows as in any subvolume
// walked again; one met without a row is recorded from the origin's row
// or read, as before.
//
// A snapshot's directory is the origin's, with the same inode number, as
// it was when the snapshot was made; so the origin's record of it (see
// entriesChanged) tells whether its entries changed since that walk.
func (s *subvols) origin(f *os.File, v fsys.Volume, top string) ([]string, []single, bool) {
	sn, ok := readOnlySnapshot(f)
	if !ok {
		return nil, nil, false
	}
	older, known := s.sibling(v, sn)
	if !known {
		older, known = s.originMet(v, sn)
	}
	id, ok, err := fiemap.SubvolByUUID(f, sn.Origin)
	if err != nil || !ok {
		s.fromSibling(f, v, older, known)
		return nil, nil, false
	}
	from := fsys.Volume{FS: v.FS, Subvol: id}
	s.mu.Lock()
	prev := s.walked[from]
	s.mu.Unlock()
	before, ok := s.genOf(prev, "") // where the origin is does not matter: its rows are found by inode
	// The walk's rows hold the origin's files as it met them, from
	// before on: a snapshot made before its run ended may hold a file
	// as it was before the walk met it changed (see endKeys).
	end, ended := s.ended[from]
	if !ok || !ended || sn.Made <= max(before, end) {
		s.fromSibling(f, v, older, known)
		return nil, nil, false
	}
	c, err := fiemap.Changed(f, before+1)
	if err != nil {
		return nil, nil, false
	}
	// What the origin's walk could not read, the snapshot holds too.
	c = s.withRetries(from, c)
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, nil, false
	}
	unix.CloseOnExec(fd)
	s.mu.Lock()
	if o, ok := s.origins[v]; ok {
		o.top.Close()
	}
	s.origins[v] = origin{vol: from, changed: c.Extents, top: os.NewFile(uintptr(fd), f.Name())}
	s.mu.Unlock()
	fromTop, ok := s.topOf(prev)
	if top == "" || s.adopt == nil || !ok {
		return nil, nil, false
	}
	// A row marked gone by this run is a file deleted since that walk:
	// after the snapshot was made, and the snapshot holds it, or before,
	// and the directory that held it changed in the snapshot too, and is
	// walked, which finds it gone again.
	// The rows are not committed yet (see scanner.adopt): which of the
	// files whose inode items changed have one is asked with them.
	a, has, moved := s.adopt(from, v, fromTop, top, true, inodesOf(c.Files))
	if a.Files == 0 {
		return nil, nil, false
	}
	// The rows this run wrote are looked at again, as files whose inode
	// and extents changed: a row may hold what the origin's file became
	// after the snapshot was made (read again where its identity did),
	// or extents it has since (recorded again from the snapshot's own).
	c.Files, c.Extents = maps.Clone(c.Files), maps.Clone(c.Extents)
	if c.Files == nil {
		c.Files = make(map[uint64]bool)
	}
	if c.Extents == nil {
		c.Extents = make(map[uint64]bool)
	}
	for _, ino := range a.Changed {
		c.Files[ino], c.Extents[ino] = true, true
		has[ino] = true // a row adopted
	}
	s.mu.Lock()
	s.noteChanges(v, c)
	s.mu.Unlock()
	// A pattern may name the origin's paths and not the snapshot's
	// (by full path): then only a walk finds what the snapshot holds.
	if !a.Whole || s.excludes {
		return nil, nil, false
	}
	var parts []string
	if c.Others {
		changed := s.entriesChanged(from, prev, "", c)
		sameEntries(f, from.Subvol, before, c.Dirs, changed)
		if parts, ok = partsOf(f, top, top, btrfsFirstFree, changed); !ok {
			return nil, nil, false
		}
	}
	return parts, singlesOf(f, top, top, v, unknownOf(c, has), parts), movedWithin(moved, fromTop, top, parts)
}

// sameEntries takes out of changed the directories of the snapshot open
// at f whose entries (names, and the inodes or subvolumes they name) are
// those of the directory of the same inode number in its origin, the
// subvolume origin, where that directory has not changed since
// generation before, that of the origin's last complete walk: their
// times alone were written since. A read-only origin has no record of its
// directories (see walkWhole), and btrfs receive, which makes each
// incremental snapshot of the one before, sets the times of every
// directory it writes into, the snapshot's top one too: each snapshot
// received was walked whole. The origin's directory is asked again once
// its entries are read: one that changed meanwhile stays in changed. So
// does one to walk again for what the origin's walk could not read there
// (a ctime of -1 in dirs: see withRetries).
func sameEntries(f *os.File, origin, before uint64, dirs map[uint64]int64, changed map[uint64]bool) {
	for d := range changed {
		if dirs[d] < 0 {
			continue
		}
		gen, dir, err := fiemap.DirChanged(f, origin, d)
		if err != nil || !dir || gen > before {
			continue
		}
		now, err := fiemap.DirEntries(f, 0, d)
		if err != nil {
			continue
		}
		then, err := fiemap.DirEntries(f, origin, d)
		if err != nil {
			continue
		}
		if again, dir, err := fiemap.DirChanged(f, origin, d); err == nil && dir && again == gen && slices.Equal(now, then) {
			delete(changed, d)
		}
	}
}

// readOnlySnapshot describes the subvolume holding f, and reports
// whether it is a read-only snapshot.
func readOnlySnapshot(f *os.File) (fsys.Snapshot, bool) {
	sn, err := fsys.SnapshotOf(f)
	return sn, err == nil && sn.Origin != [16]byte{} && sn.ReadOnly
}

// sibling is a read-only snapshot met in this run (see subvols.siblings).
type sibling struct {
	vol  fsys.Volume
	made uint64
}

// readOnlyMet is a read-only subvolume met in this run (see
// subvols.readOnly), with the last transaction that changed it.
type readOnlyMet struct {
	vol     fsys.Volume
	changed uint64
}

// noteSibling notes v, the subvolume open at f, if it is read-only (in
// readOnly, for a snapshot of it met after it: see originMet), and as a
// sibling if it is also a snapshot unchanged since it was made: its
// rows, those of an earlier walk or those this walk records, are what it
// holds, and may serve a snapshot of the same subvolume met after it
// (see fromSibling). The
// walk decides every subvolume below a directory before it goes into
// any (walk.Options.Enter), so one met later in the walk is noted later.
func (s *subvols) noteSibling(f *os.File, v fsys.Volume) {
	sn, err := fsys.SnapshotOf(f)
	if err != nil || !sn.ReadOnly {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOnly[v.FS+string(sn.UUID[:])] = readOnlyMet{v, sn.Changed}
	if sn.Origin == ([16]byte{}) || sn.Changed > sn.Made {
		return // not a snapshot unchanged since it was made
	}
	k := v.FS + string(sn.Origin[:])
	if !slices.ContainsFunc(s.siblings[k], func(o sibling) bool { return o.vol == v }) {
		s.siblings[k] = append(s.siblings[k], sibling{v, sn.Made})
	}
}

// sibling returns the latest made of the snapshots of the subvolume
// that v, the snapshot sn, was taken from, noted before it and made
// before it, if any.
func (s *subvols) sibling(v fsys.Volume, sn fsys.Snapshot) (sibling, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var older sibling
	known := false
	for _, o := range s.siblings[v.FS+string(sn.Origin[:])] {
		if o.vol != v && o.made < sn.Made && (!known || o.made > older.made) {
			older, known = o, true
		}
	}
	return older, known
}

// originMet returns, for v, the snapshot sn, the subvolume it was taken
// from as an older sibling made when v was (see fromSibling), if the walk
// met it before v, read-only and unchanged since v was made: btrfs
// receive makes each incremental snapshot of the one received before it,
// read-only by then, and writes the stream into it. v held then what
// that subvolume holds now.
func (s *subvols) originMet(v fsys.Volume, sn fsys.Snapshot) (sibling, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.readOnly[v.FS+string(sn.Origin[:])]
	if !ok || o.vol == v || o.changed > sn.Made {
		return sibling{}, false
	}
	return sibling{o.vol, sn.Made}, true
}

// fromSibling has the files of v, a read-only snapshot open at f whose
// origin has no complete walk made before it (a first run), recorded
// from the rows of older, an older snapshot of the same subvolume that
// this run met before (or that subvolume, read-only: see originMet),
// where they are as that snapshot holds them.
// Both hold what the subvolume held when each was made, so a file of v
// whose inode and extent items lie in no leaf written after older was
// made is, with the same inode number, size, mtime and ctime, the file
// older holds, with the same data and extents (as for an origin: see
// origin; compare copies its row where the writer has committed it, and
// reads the file where not). v is then walked whole.
func (s *subvols) fromSibling(f *os.File, v fsys.Volume, older sibling, known bool) {
	if !known {
		return
	}
	c, err := fiemap.Changed(f, older.made+1)
	if err != nil {
		return
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return
	}
	unix.CloseOnExec(fd)
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.origins[v]; ok {
		o.top.Close()
	}
	s.origins[v] = origin{vol: older.vol, changed: c.Extents, top: os.NewFile(uintptr(fd), f.Name())}
}

// movedWithin reports whether each of the files of a subvolume met at
// fromTop that took another path (moved) left a path and took one that
// lie, in its snapshot met at top, below the directories walked there
// (parts). A row given another path before the snapshot took its origin's
// rows has that path there too, where the file may not be (it moved after
// the snapshot was made), and none where it may be: both must be walked.
func movedWithin(moved moves, fromTop, top string, parts []string) bool {
	if moved.over {
		return false
	}
	for _, m := range moved.paths {
		for _, p := range m {
			rel, ok := strings.CutPrefix(p, childPath(fromTop))
			if !ok || !inPart(parts, childPath(top)+rel) {
				return false
			}
		}
	}
	return true
}

// close closes the snapshots' top directories that origin kept open.
func (s *subvols) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, o := range s.origins {
		o.top.Close()
		delete(s.origins, v)
	}
}

// originOf returns where volume v came from (see origin), if it is a
// snapshot noted there, and whether the extents of file ino may differ
// from those the origin's last complete walk recorded: changed since in
// v, or in the origin, where this run records them again.
func (s *subvols) originOf(v fsys.Volume, ino uint64) (o origin, ok, extentsChanged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok = s.origins[v]
	if !ok {
		return origin{}, false, false
	}
	return o, true, o.changed[ino] || s.changes[o.vol].Extents[ino]
}

// rootKey returns what a walk of root, on volume v, starting now sees of
// its btrfs subvolume ("" where it is not btrfs or cannot tell), and
// notes the files changed since the last complete walk of that root,
// which saw prev: a root inside a subvolume, not its top directory, does
// not walk the subvolume whole, so volumes.walked does not serve, but
// every file met under it was recorded as it was then.
func (s *subvols) rootKey(root string, v fsys.Volume, prev string) string {
	f, err := open(root)
	if err != nil {
		return ""
	}
	defer f.Close()
	var sf unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sf) != nil || sf.Type != fstype.Btrfs {
		return ""
	}
	gen, ok := s.generation(f, v)
	if !ok {
		return ""
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil && st.Ino == btrfsFirstFree {
		s.noteSibling(f, v) // a subvolume's top directory
	}
	key := s.key(gen, root)
	switch {
	case prev == key && !s.nested(f, root) && len(s.retry[v]) == 0:
		// Unchanged since its last complete walk, as an unchanged
		// subvolume is (see decide): left unwalked, its rows counted.
		s.mu.Lock()
		s.left = append(s.left, leftOut{path: root, vol: v, root: true})
		s.mu.Unlock()
	case prev != "":
		c, ok := s.since(f, v, prev, gen, root)
		switch {
		case !ok:
		case !s.nested(f, root) && s.rootParts(f, root, v, gen, s.entriesChanged(v, prev, root, c), s.unknownFiles(v, c)):
		default:
			s.walkWhole(f, v, root, gen)
		}
	default:
		s.origin(f, v, "") // notes where v came from: the walk takes its files from the origin's rows
		s.walkWhole(f, v, root, gen)
	}
	return key
}

// rootParts has the walk of root, a directory of the subvolume open at f
// (volume v) that begins at generation gen, go only below the directories
// in changed, those whose entries may have changed since root's last
// complete walk (see partsOf, entriesChanged), and nowhere where there are
// none (root is skimmed, as a subvolume in which no directory changed):
// root's own inode
// item not rewritten since, its files and directories are the ones that
// walk met, where it met them. (A root renamed or replaced since is
// another inode, or one whose inode item was rewritten.) The files of
// unknown that lie elsewhere are handed over (see singlesOf). It reports
// whether it does; otherwise root is walked whole.
func (s *subvols) rootParts(f *os.File, root string, v fsys.Volume, gen uint64, changed map[uint64]bool, unknown []uint64) bool {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	top := root
	if st.Ino != btrfsFirstFree {
		rel, ok, err := fsys.InoPath(f, st.Ino)
		if err != nil || !ok || rel == "" || !strings.HasSuffix(root, "/"+rel) {
			return false
		}
		top = strings.TrimSuffix(root, "/"+rel)
	}
	parts, ok := partsOf(f, top, root, st.Ino, changed)
	if ok {
		if len(parts) == 0 {
			parts = nil // skimmed: no directory walked
		}
		s.addSingles(singlesOf(f, top, root, v, unknown, parts))
		s.walkParts(f, uint64(st.Dev), top, root, v, parts, gen)
	}
	return ok
}

// rootLeft reports whether root is left unwalked (see rootKey).
func (s *subvols) rootLeft(root string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.left {
		if l.root && l.path == root {
			return true
		}
	}
	return false
}

// generation returns the generation of btrfs subvolume v, open at f,
// once its filesystem is committed (syncfs, once a run), so that no
// change waits unseen in a transaction; false for a volume of an older
// index or one f is not in.
func (s *subvols) generation(f *os.File, v fsys.Volume) (uint64, bool) {
	if index.Legacy(v) {
		return 0, false
	}
	s.mu.Lock()
	first := !s.synced[v.FS]
	s.synced[v.FS] = true
	s.mu.Unlock()
	return committedGen(f, v, first)
}

// committedGen returns the generation of btrfs subvolume v, open at f,
// committing its filesystem first (syncfs) when sync is set; false where
// that or the reading fails, or f is not in v.
func committedGen(f *os.File, v fsys.Volume, sync bool) (uint64, bool) {
	if sync && unix.Syncfs(int(f.Fd())) != nil {
		return 0, false
	}
	id, gen, err := fsys.SubvolGen(f)
	return gen, err == nil && id == v.Subvol
}

// key is what a walk starting now records of a subvolume at generation
// gen whose top directory (or, for a root inside it, the root) it meets at
// path: those, and the options that shape the walk. A subvolume met at
// another path than at its last walk (a snapshot renamed or moved) has
// its files where the index does not: it is walked again, and they are
// found renamed. (A key recorded before paths were part of it matches
// none: each subvolume is walked once more.)
func (s *subvols) key(gen uint64, path string) string {
	return fmt.Sprintf("gen=%d %s at=%q", gen, s.sig, path)
}

// endKeys returns the keys of whole (see walkedWhole), what this complete
// walk saw of each volume, each with the volume's generation now that the
// run ends, once every change that waited in a transaction is committed
// (syncfs, once a filesystem). A snapshot made earlier may hold a file as
// it was before the walk met it changed, and so another than the walk's
// row of it; one made later holds, of a file whose items lie in no leaf
// written since the walk began, the file as the walk recorded it (see
// origin). Where the generation cannot be read, the key is left as it
// is, and no snapshot of that volume takes its files from the walk's
// rows.
func (s *subvols) endKeys(whole map[fsys.Volume]string) map[fsys.Volume]string {
	synced := make(map[string]bool)
	out := make(map[fsys.Volume]string, len(whole))
	for v, key := range whole {
		out[v] = key
		top, ok := s.topOf(key)
		if !ok {
			continue
		}
		f, err := open(top)
		if err != nil {
			continue
		}
		if gen, ok := committedGen(f, v, !synced[v.FS]); ok {
			synced[v.FS] = true
			out[v] = fmt.Sprintf("%s end=%d", key, gen)
		}
		f.Close()
	}
	return out
}

// splitEnd returns a key recorded by endKeys without the generation it
// added, and that generation, if it did.
func splitEnd(key string) (string, uint64, bool) {
	i := strings.LastIndex(key, " end=")
	if i < 0 {
		return key, 0, false
	}
	end, err := strconv.ParseUint(key[i+len(" end="):], 10, 64)
	if err != nil {
		return key, 0, false
	}
	return key[:i], end, true
}

// extentsChanged reports whether the extents of file ino of volume v may
// have changed since the last complete walk, which recorded them.
func (s *subvols) extentsChanged(v fsys.Volume, ino uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changes[v].Extents[ino]
}

// movedOnly returns the extent items of file ino of volume v in the tree
// leaves written since the last complete walk, when its extents may have
// changed since (extentsChanged) but its inode item was not rewritten:
// then only those items can differ from what the walk recorded, and most
// often none does (the file shares a leaf with one that changed).
func (s *subvols) movedOnly(v fsys.Volume, ino uint64) ([]fiemap.Extent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.changes[v]
	if !c.Extents[ino] || c.Files[ino] {
		return nil, false
	}
	return c.Items[ino], true
}

// under reports whether file ino at path of volume v lies in a subvolume
// left unwalked, and whether it is to be looked at again there: a
// subvolume skimmed, and its inode or extent items changed.
func (s *subvols) under(path string, v fsys.Volume, ino uint64) (left, check bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.leftHolding(path, v)
	if i < 0 {
		return false, false
	}
	c := s.changes[v]
	return true, s.left[i].skimmed && (c.Files[ino] || c.Extents[ino])
}

// leftHolding returns the index in left of the subvolume left unwalked
// that holds path, a file of its volume v outside the parts walked, or -1.
// The caller holds mu.
func (s *subvols) leftHolding(path string, v fsys.Volume) int {
	return slices.IndexFunc(s.left, func(l leftOut) bool {
		return l.vol == v && walk.Under(path, l.path) && !inPart(l.parts, path)
	})
}

// nameLeft returns, for f, a row in a part walked of a subvolume walked
// in part that the walk did not meet at its path, another name of its
// inode that lies outside the parts, where the walk does not go: a file
// with several names, the one the index has removed since, another in a
// directory that did not change. Its inode item was rewritten (its link
// count changed), and it is asked for one of its names (fsys.InoPath).
// false when it has none there, or is not such a row.
func (s *subvols) nameLeft(f index.Listed) (string, bool) {
	s.mu.Lock()
	var dir, top string
	var parts []string
	for _, l := range s.left {
		if l.vol == f.Vol && l.parts != nil && walk.Under(f.Path, l.path) && inPart(l.parts, f.Path) {
			dir, top, parts = l.path, l.top, l.parts
		}
	}
	changed := s.changes[f.Vol].Files[f.Ino]
	s.mu.Unlock()
	if dir == "" || !changed {
		return "", false
	}
	d, err := open(dir)
	if err != nil {
		return "", false
	}
	defer d.Close()
	rel, ok, err := fsys.InoPath(d, f.Ino)
	if err != nil || !ok || rel == "" {
		return "", false
	}
	path := childPath(top) + rel
	return path, walk.Under(path, dir) && !inPart(parts, path)
}

// leftAt returns the top directory of the subvolume left unwalked that
// holds path, when path is a file of its volume v outside the parts
// walked, the files of v to be looked at again (see under; none where it
// is unchanged), and where the next part walked starts ("" if none):
// every other row of v below it, before that, is as the index has it.
func (s *subvols) leftAt(path string, v fsys.Volume) (top string, check []uint64, next string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.leftHolding(path, v)
	if i < 0 {
		return "", nil, "", false
	}
	l := &s.left[i]
	if l.skimmed && l.check == nil { // asked again for each stretch between parts
		c := s.changes[v]
		l.check = make([]uint64, 0, len(c.Files)+len(c.Extents))
		for ino := range c.Files {
			l.check = append(l.check, ino)
		}
		for ino := range c.Extents {
			if !c.Files[ino] {
				l.check = append(l.check, ino)
			}
		}
	}
	return l.path, l.check, nextPart(l.parts, path), true
}

// unwalked counts in st the subvolumes and roots left unwalked as
// unchanged, skimmed, or walked in part.
func (s *subvols) unwalked(st *Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.left {
		// A root below its subvolume's top directory is a directory.
		dir := l.top != "" && l.top != l.path
		switch {
		case l.root:
			st.RootsUnwalked++
		case l.parts != nil && dir:
			st.RootsPart++
		case l.parts != nil:
			st.SubvolsPart++
		case l.skimmed && dir:
			st.RootsSkimmed++
		case l.skimmed:
			st.SubvolsSkimmed++
		default:
			st.SubvolsUnwalked++
		}
	}
}

// walkedWhole returns what a complete run records: what this walk saw of
// each subvolume it walked or skimmed.
func (s *subvols) walkedWhole() map[fsys.Volume]string {
	out := make(map[fsys.Volume]string)
	for v, key := range s.seen {
		out[v] = key
	}
	for _, l := range s.left {
		if !l.skimmed {
			delete(out, l.vol) // recorded already
		}
	}
	return out
}
