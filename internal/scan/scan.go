package scan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	// NewFS accepts roots found on another volume than at the last run.
	NewFS bool
	// Listed says the roots were listed on standard input: one missing
	// is a failed item, not an error of the run.
	Listed bool
	// Error receives every per-file error; the run goes on.
	Error func(path string, err error)
	// Progress, if set, is called about twice a second while the run goes on.
	Progress func(Stats)
	// FS, if set, is called once for each filesystem (st_dev) the walk
	// meets, with the path of a directory or file on it, from the walk's
	// goroutine.
	FS func(path string, dev uint64)
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
	Links     int64 // further names of an inode already met
	Skipped   int64 // special files, symlinks, empty files
	Failed    int64 // files that could not be read or changed while read
	Pruned    int64 // index entries removed because their files are gone
	// SubvolsUnwalked counts btrfs subvolumes left unwalked: unchanged
	// since their last complete walk (see subvols); their files count as
	// seen and unchanged.
	SubvolsUnwalked int64
	BytesRead       int64
	// Reused counts hashed files whose sums were taken from extents
	// already in the index instead of being read; BytesReused, their bytes.
	Reused      int64
	BytesReused int64
	ToRead      int64 // bytes queued for reading so far, less holes skipped
	WalkDone    bool
	Elapsed     time.Duration
}

// ErrChanged marks a file that changed while it was read.
var ErrChanged = errors.New("changed while being read; not recorded")

// known is what the index holds of a file, or what the walk met of a file
// new to it; seen says the walk met it.
type known struct {
	id                 int64
	path               string
	size, mtime, ctime int64
	uid                int64
	nocow              int8
	seen               bool
}

// key names a file for good: its volume and inode.
type key struct {
	vol fsys.Volume
	ino uint64
}

type job struct {
	path string
	vol  fsys.Volume
	id   walk.Identity
	// attrOf, if not 0, is the index row of this unchanged file, whose
	// NOCOW attribute is to be read and recorded; its data is not read.
	attrOf int64
}

// op is one thing for the writer to record.
type op struct {
	put    *index.File
	sums   []byte
	ext    []fiemap.Extent
	rename *index.File
	volume *volume
	attr   *attr
	uid    *attr // nocow holds nothing; uid the owner
	root   *root
	walked *walked
	del    int64 // a file id to prune
}

// walked is what a complete walk of a subvolume saw (see subvols).
type walked struct {
	vol fsys.Volume
	key string
}

// volume is a volume met in this run under st_dev dev.
type volume struct {
	info fsys.Info
	dev  uint64
}

// root is a root walked whole, and its volume.
type root struct {
	path string
	vol  fsys.Volume
}

// attr is the NOCOW attribute or the owner of an indexed file.
type attr struct {
	id    int64
	nocow int8
	uid   uint32
}

type counters struct {
	seen, hashed, unchanged, renamed, links, skipped, failed, read, toRead atomic.Int64
	reused, reusedBytes                                                    atomic.Int64
	walkDone                                                               atomic.Bool
}

func (c *counters) stats(start time.Time) Stats {
	return Stats{
		Seen: c.seen.Load(), Hashed: c.hashed.Load(), Unchanged: c.unchanged.Load(),
		Renamed: c.renamed.Load(), Links: c.links.Load(), Skipped: c.skipped.Load(),
		Failed: c.failed.Load(), BytesRead: c.read.Load(), ToRead: c.toRead.Load(),
		Reused: c.reused.Load(), BytesReused: c.reusedBytes.Load(),
		WalkDone: c.walkDone.Load(), Elapsed: time.Since(start),
	}
}

// Run walks roots (absolute, clean paths), hashes what changed and records
// it in ix. It returns ctx's error when interrupted, after committing what
// was done.
func Run(ctx context.Context, ix *index.Index, roots []string, o Options) (Stats, error) {
	start := time.Now()
	if err := blockhash.CheckBlockSize(o.BlockSize); err != nil {
		return Stats{}, err
	}
	if err := walk.CheckPatterns(o.Exclude); err != nil {
		return Stats{}, err
	}
	if err := ix.UseBlockSize(o.BlockSize); err != nil {
		return Stats{}, err
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs()
	}
	if o.Error == nil {
		o.Error = func(string, error) {}
	}
	roots = distinctRoots(roots)
	rootVols, err := checkRoots(ctx, ix, roots, o.NewFS, o.Listed)
	if err != nil {
		return Stats{}, err
	}
	walkedBefore, err := ix.Walked(ctx)
	if err != nil {
		return Stats{}, err
	}

	// Derived before the loader below starts: it reads ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// What the index holds is loaded while the walk starts.
	// The map holds positions in all, not pointers: a million files take
	// one allocation, not a million, and less for the collector to scan.
	var all []known
	files := make(map[key]int)
	loaded := make(chan error, 1)
	go func() {
		loaded <- ix.Files(ctx, func(f index.File) error {
			files[key{f.Vol, f.Ino}] = len(all)
			all = append(all, known{id: f.ID, path: f.Path, size: f.Size, mtime: f.Mtime, ctime: f.Ctime, uid: f.UID, nocow: f.NoCOW})
			return nil
		})
	}()

	var c counters
	jobs := make(chan job, 256)
	ops := make(chan op, 256)
	var unread []string // paths not fully read: nothing is pruned at or below them
	var mu sync.Mutex   // guards unread
	fail := func(path string, err error, keep bool) {
		c.failed.Add(1)
		o.Error(path, err)
		if keep {
			mu.Lock()
			unread = append(unread, path)
			mu.Unlock()
		}
	}

	// The writer.
	writeErr := make(chan error, 1)
	ru := &reuser{ix: ix, bs: int64(o.BlockSize)}
	// When the index cannot take more (its disk is full, say), the run
	// stops reading rather than read the rest of the tree for nothing.
	go func() { writeErr <- write(ix, ops, ru, cancel) }()

	// The readers.
	var readers sync.WaitGroup
	for range o.Jobs {
		readers.Go(func() {
			r, _ := blockhash.NewReader(o.BlockSize)
			r.Progress = func(read, hole int64) { // as it goes: files can be large
				c.read.Add(read)
				c.toRead.Add(-hole) // not to be read after all
			}
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if j.attrOf != 0 {
					if nocow, ok := readAttr(j); ok {
						ops <- op{attr: &attr{id: j.attrOf, nocow: nocow}}
					}
					continue
				}
				f, s, ext, _, reused, err := hash(ctx, r, ru, j)
				if err != nil {
					if ctx.Err() == nil { // else interrupted, not failed
						fail(j.path, err, false)
					}
					continue
				}
				c.hashed.Add(1)
				if reused {
					c.reused.Add(1)
					c.reusedBytes.Add(f.Size)
					c.toRead.Add(-f.Size)
				}
				// Handed over, not copied: the sums of a large (or sparse)
				// file can take hundreds of MiB.
				ops <- op{put: &f, sums: s, ext: ext}
			}
		})
	}

	// Progress.
	stopProgress := make(chan struct{})
	var progress sync.WaitGroup
	if o.Progress != nil {
		progress.Go(func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					o.Progress(c.stats(start))
				case <-stopProgress:
					return
				}
			}
		})
	}

	// noteDevice learns the volume of st_dev dev, met at path, the first
	// time the walk meets it, records it and tells o.FS. A volume that cannot be
	// described keeps a name made of dev, which findsame leaves out.
	// The walker calls it; decide reads what it learnt.
	var volMu sync.Mutex
	vols := make(map[uint64]fsys.Volume)
	noteDevice := func(path string, dev uint64) {
		volMu.Lock()
		_, ok := vols[dev]
		volMu.Unlock()
		if ok {
			return
		}
		if o.FS != nil {
			o.FS(path, dev)
		}
		v := index.LegacyVolume(dev)
		if in, err := describe(path, dev); err == nil {
			v = in.Volume
			ops <- op{volume: &volume{info: in, dev: dev}}
		} else {
			o.Error(path, err)
		}
		volMu.Lock()
		vols[dev] = v
		volMu.Unlock()
	}
	volOf := func(dev uint64) fsys.Volume {
		volMu.Lock()
		defer volMu.Unlock()
		return vols[dev]
	}

	// The walker runs ahead of the decisions below, which need the index.
	sv := newSubvols(walkedBefore, o, func(path string, dev uint64) fsys.Volume {
		noteDevice(path, dev)
		return volOf(dev)
	})
	walkOpts := walk.Options{
		Exclude: o.Exclude,
		OneFS:   o.OneFS,
		Skipped: func(string, string) { c.skipped.Add(1) },
		// A path the walk could not read (a directory it cannot list, an
		// entry it cannot lstat) may still hold what the index has: keep it,
		// unless it is gone.
		Error: func(path string, err error) {
			fail(path, err, !errors.Is(err, os.ErrNotExist))
		},
		Dir:   func(path string, st *unix.Stat_t) { noteDevice(path, uint64(st.Dev)) },
		Enter: sv.enter,
	}
	entries := make(chan walk.Entry, 4096)
	var walkErr error
	go func() {
		defer close(entries)
		for _, root := range roots {
			walkErr = walk.Walk(ctx, root, walkOpts, func(e walk.Entry) error {
				noteDevice(e.Path, e.Dev) // a root may be a file, met with no Dir call
				select {
				case entries <- e:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if walkErr != nil {
				return
			}
		}
	}()
	loadErr := <-loaded
	if loadErr != nil {
		cancel()
	}
	decide := func(e walk.Entry) {
		c.seen.Add(1)
		vol := volOf(e.Dev)
		k := key{vol, e.Ino}
		i, ok := files[k]
		if !ok {
			// Recorded by an older index under its st_dev, which the
			// writer has renamed to vol by now.
			i, ok = files[key{index.LegacyVolume(e.Dev), e.Ino}]
		}
		var kf *known
		if ok {
			kf = &all[i]
		}
		switch {
		case kf != nil && kf.seen:
			c.links.Add(1)
			return
		case kf != nil && kf.size == e.Size && kf.mtime == e.Mtime && (kf.ctime == e.Ctime || kf.path != e.Path):
			kf.seen = true
			c.unchanged.Add(1)
			if kf.path != e.Path {
				c.renamed.Add(1)
				kf.path = e.Path
				ops <- op{rename: &index.File{Path: e.Path, Vol: vol, Ino: e.Ino, Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime, UID: int64(e.UID)}}
			} else if kf.uid == index.UIDUnknown {
				ops <- op{uid: &attr{id: kf.id, uid: e.UID}}
			}
			if kf.nocow == index.NoCOWUnknown {
				select {
				case jobs <- job{path: e.Path, vol: vol, id: e.Identity, attrOf: kf.id}:
				case <-ctx.Done():
				}
			}
			return
		case kf != nil:
			kf.seen = true
		default:
			files[k] = len(all)
			all = append(all, known{path: e.Path, seen: true})
		}
		c.toRead.Add(e.Size)
		select {
		case jobs <- job{path: e.Path, vol: vol, id: e.Identity}:
		case <-ctx.Done():
		}
	}
	for e := range entries {
		if ctx.Err() == nil {
			decide(e)
		}
	}
	c.walkDone.Store(true)
	close(jobs)
	readers.Wait()
	// The files of subvolumes left unwalked are as the index has them.
	if len(sv.left) > 0 && loadErr == nil {
		for k, i := range files {
			if kf := &all[i]; !kf.seen && kf.path != "" && sv.under(kf.path, k.vol) {
				kf.seen = true
				c.seen.Add(1)
				c.unchanged.Add(1)
			}
		}
	}

	// Prune what the walk did not meet, if it met everything it should have.
	var pruned int64
	if walkErr == nil && ctx.Err() == nil {
		for i := range all {
			kf := &all[i]
			if kf.seen || kf.id == 0 {
				continue
			}
			if kf.path != "" && (!underAny(kf.path, roots) || underAny(kf.path, unread)) {
				continue
			}
			pruned++
			ops <- op{del: kf.id}
		}
		for _, r := range roots {
			if v, ok := rootVols[r]; ok {
				ops <- op{root: &root{path: r, vol: v}}
			}
		}
		if c.failed.Load() == 0 {
			for v, key := range sv.walkedWhole() {
				ops <- op{walked: &walked{vol: v, key: key}}
			}
		}
	}
	close(ops)
	werr := <-writeErr
	close(stopProgress)
	progress.Wait()

	st := c.stats(start)
	st.Pruned = pruned
	st.SubvolsUnwalked = int64(len(sv.left))
	switch {
	case loadErr != nil:
		return st, loadErr
	case werr != nil:
		return st, werr
	case walkErr != nil:
		return st, walkErr
	}
	return st, ctx.Err()
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

// open opens a directory or regular file met by the walk for reading. No
// symlink is followed in any component of path, and nothing else is
// opened: the path is looked up as an O_PATH descriptor, which opens
// nothing, and only a directory or regular file there is opened, that
// very inode (safeopen). A device, FIFO or socket found there now is
// refused unopened.
func open(path string) (*os.File, error) {
	h, err := safeopen.Lookup(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer h.Close()
	return openHandle(h, path)
}

func openHandle(h *safeopen.Handle, path string) (*os.File, error) {
	flags := os.O_RDONLY | unix.O_NONBLOCK | unix.O_NOATIME
	f, err := h.Open(flags)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership or CAP_FOWNER
		f, err = h.Open(flags &^ unix.O_NOATIME)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}

// openListed opens the file of j as open does, if it is still the regular
// file the walk listed there: the same device and inode. The walk reached
// it through directory descriptors; this open goes by path, so it checks
// that the path still leads to the inode listed, and reads no other.
// (Carrying each directory's descriptor to the readers instead would hold
// one open for every directory with a file queued.)
func openListed(j job) (*os.File, error) {
	h, err := safeopen.Lookup(j.path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: j.path, Err: err}
	}
	defer h.Close()
	if h.Stat.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: no longer a regular file", j.path)
	}
	if uint64(h.Stat.Dev) != j.id.Dev || h.Stat.Ino != j.id.Ino {
		return nil, fmt.Errorf("%s: %w", j.path, walk.ErrReplaced)
	}
	return openHandle(h, j.path)
}

// readAttr reads the NOCOW attribute of the file of j, if it is still the
// file the walk met. A file that cannot be opened or changed is left to
// the next run.
func readAttr(j job) (int8, bool) {
	f, err := openListed(j)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || walk.FromStat(&st) != j.id {
		return 0, false
	}
	return noCOW(f), true
}

func noCOW(f *os.File) int8 {
	if fsys.NoCOW(f) {
		return index.NoCOWSet
	}
	return index.NoCOWUnset
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
func checkRoots(ctx context.Context, ix *index.Index, roots []string, newFS, listed bool) (map[string]fsys.Volume, error) {
	was, err := ix.Roots(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]fsys.Volume)
	for _, r := range roots {
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

// hash reads one file, or takes its sums from the index through ru (see
// reuser) when ru is not nil, reading only what it does not find there when
// that is at most half the file, and checks that it did not change while
// read. It returns the file, its sums (which ru holds until the writer
// commits them), its extents, the bytes covered (read or holes), and
// whether the sums were reused.
func hash(ctx context.Context, r *blockhash.Reader, ru *reuser, j job) (index.File, []byte, []fiemap.Extent, int64, bool, error) {
	f, err := openListed(j)
	if err != nil {
		return index.File{}, nil, nil, 0, false, err
	}
	defer f.Close()
	var before, after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &before); err != nil {
		return index.File{}, nil, nil, 0, false, &os.PathError{Op: "fstat", Path: j.path, Err: err}
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG {
		return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: no longer a regular file", j.path)
	}
	id := walk.FromStat(&before)
	nocow := noCOW(f)
	// On btrfs, a file all of whose extents were hashed before (in
	// another file, snapshot or copy) is not read.
	var ext []fiemap.Extent
	reused, partial := false, false
	var partRead int64 // bytes read of a file hashed in part before
	release := func() {}
	defer func() { release() }() // after the caller's add, on success
	var sums []byte
	if ru != nil && nocow == index.NoCOWUnset {
		items, err := fiemap.DiskExtents(f)
		switch {
		case err == nil:
			var ok bool
			var missing []span
			if sums, missing, ok, release, err = ru.sums(ctx, items, id.Size, nil); err != nil {
				return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: %w", j.path, err)
			}
			var want int64
			for _, m := range missing {
				want += m.len
			}
			switch {
			case ok && len(missing) == 0:
				sums = trimZeroSums(sums)
				ext, reused = items, true
			case ok && want <= id.Size/2:
				// Most of it was hashed before: read the rest alone.
				if err := readMissing(ctx, r, f, sums, missing, ru.bs, &partRead); err != nil {
					if errors.Is(err, blockhash.ErrShrunk) {
						err = ErrChanged
					}
					return index.File{}, nil, nil, partRead, false, fmt.Errorf("%s: %w", j.path, err)
				}
				sums = trimZeroSums(sums)
				ext, partial = items, true
			}
		case !errors.Is(err, fiemap.ErrNoTreeSearch):
			return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: %w", j.path, err)
		}
	}
	var n int64
	if partial {
		n = id.Size // covered: read (partRead) or taken from the index
	}
	if !reused && !partial {
		var err error
		sums, n, err = r.HashFile(ctx, f, id.Size, sums[:0])
		if errors.Is(err, blockhash.ErrShrunk) {
			return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
		}
		if err != nil {
			return index.File{}, nil, nil, n, false, readError(j.path, err)
		}
		if n != id.Size {
			return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
		}
		ext, err = fiemap.Map(f)
		if err != nil && !errors.Is(err, fiemap.ErrUnsupported) {
			return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, err)
		}
	}
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return index.File{}, nil, nil, n, false, &os.PathError{Op: "fstat", Path: j.path, Err: err}
	}
	if walk.FromStat(&after) != id {
		return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
	}
	if ru != nil {
		ru.add(id.Size, nocow, ext, sums)
	}
	return index.File{Path: j.path, Vol: j.vol, Ino: id.Ino, Size: id.Size, Mtime: id.Mtime, Ctime: id.Ctime, NoCOW: nocow, UID: int64(id.UID)}, sums, ext, n, reused, nil
}

// readError names path in err once: errors from reading a file mostly
// name it already.
func readError(path string, err error) error {
	if _, ok := errors.AsType[*os.PathError](err); ok {
		return err
	}
	return fmt.Errorf("read %s: %w", path, err)
}

// Batches are committed when they hold this many files or sum bytes, or
// after this long, whichever comes first.
const (
	batchFiles = 2000
	batchBytes = 32 << 20
	batchTime  = time.Second
)

func write(ix *index.Index, ops <-chan op, ru *reuser, failed func()) error {
	var tx *index.Tx
	var n, bytes int
	var opened time.Time
	var err error
	var puts []op // of the open batch: ru drops them once committed
	commit := func() {
		err = tx.Commit()
		tx, n, bytes = nil, 0, 0
		for _, o := range puts {
			ru.drop(o.ext, o.sums)
		}
		puts = puts[:0]
	}
	stopped := false
	for o := range ops {
		if err != nil {
			if !stopped {
				stopped = true
				failed()
			}
			continue // drain, so senders never block
		}
		if tx == nil {
			if tx, err = ix.Begin(context.Background()); err != nil {
				continue
			}
			opened = time.Now()
		}
		switch {
		case o.put != nil:
			_, err = tx.Put(*o.put, o.sums, o.ext)
			bytes += len(o.sums)
			puts = append(puts, o)
		case o.del != 0:
			err = tx.Delete(o.del)
		case o.rename != nil:
			err = tx.Rename(*o.rename)
		case o.volume != nil:
			err = tx.PutVolume(o.volume.info, o.volume.dev)
		case o.attr != nil:
			err = tx.SetNoCOW(o.attr.id, o.attr.nocow)
		case o.uid != nil:
			err = tx.SetUID(o.uid.id, o.uid.uid)
		case o.root != nil:
			err = tx.PutRoot(o.root.path, o.root.vol)
		case o.walked != nil:
			err = tx.SetWalked(o.walked.vol, o.walked.key)
		}
		n++
		if err == nil && (n >= batchFiles || bytes >= batchBytes || time.Since(opened) >= batchTime) {
			commit()
		}
	}
	if tx != nil {
		if err != nil {
			tx.Rollback()
			return err
		}
		commit()
	}
	return err
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

// readMissing hashes the ranges of f in missing and puts their sums into
// sums (zeroed there, and long enough for the whole file), adding the
// bytes read to read.
func readMissing(ctx context.Context, r *blockhash.Reader, f *os.File, sums []byte, missing []span, bs int64, read *int64) error {
	var part []byte
	for _, m := range missing {
		var n int64
		var err error
		part, n, err = r.HashRange(ctx, f, m.off, m.len, part[:0])
		*read += n
		if err != nil {
			return err
		}
		copy(sums[m.off/bs*blockhash.SumSize:], part)
	}
	return nil
}
