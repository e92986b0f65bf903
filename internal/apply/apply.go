package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/plan"

	"golang.org/x/sys/unix"
)

// ErrInterrupted is returned by Run when its context was cancelled.
var ErrInterrupted = fmt.Errorf("interrupted: %w", context.Canceled)

// Options control Run.
type Options struct {
	// Chunk is the number of bytes per FIDEDUPERANGE call;
	// dedupe.DefaultChunk when zero.
	Chunk int64
	// DryRun checks every line (identities, file types, alignment) and
	// issues no ioctl; destinations that pass are "checked".
	DryRun bool
	// FromFdupes reads fdupes/jdupes groups instead of a plan.
	FromFdupes bool
	// StopOnError stops after the first line with an item not done; lines
	// already started finish, and their results are written.
	StopOnError bool
	// Jobs is how many lines are applied at once (1 when zero or less).
	// Results are written in plan order all the same, and every rewrite
	// line before them is done before a dedupe line after it starts.
	Jobs int
	// RewriteLimit bounds the bytes rewrite lines may write in the run;
	// a rewrite that would pass it is skipped. 0 turns rewriting off.
	RewriteLimit int64
	// Reserve is the space (bytes) rewrites leave available on a
	// filesystem: a rewrite that would leave less is skipped. Negative
	// means DefaultReserve of the filesystem's size.
	Reserve int64
	// Deadline, if set, is when the run starts no further unit of work;
	// the unit in progress is finished and the lines after it are
	// skipped.
	Deadline time.Time
	// Report, if set, is called for every item not done, as it happens
	// (so, with several Jobs, not always in plan order; one call at a
	// time): with a *plan.LineError for an invalid line, an *ItemError
	// otherwise.
	Report func(error)
	// Progress, if set, is called with the counts so far each time a
	// line's result is written, from one goroutine; the Stats are only
	// valid during the call.
	Progress func(*Stats)
}

// ItemError is the failure of one file of a plan line.
type ItemError struct {
	Line int    // plan line
	Path string // the source or destination
	Err  error
}

func (e *ItemError) Error() string { return fmt.Sprintf("line %d: %s: %v", e.Line, e.Path, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// Stats counts what Run did.
type Stats struct {
	Lines   int   // lines (or fdupes groups) read, invalid ones included
	Invalid int   // lines that could not be parsed or validated
	Dests   int   // destinations of valid lines
	Deduped int   // destinations deduped in full
	Checked int   // destinations checked (dry run)
	Bytes   int64 // bytes deduplicated, partly deduped ranges included
	Differs int   // destinations whose data differ
	Stale   int   // sources and destinations changed since planned
	Errors  int   // sources and destinations that failed otherwise
	Skipped int   // destinations not attempted
	Busy    int   // destinations and rewrites that got EAGAIN, also when retried
	// Rewrites counts rewrite lines done; Written, the bytes they copied.
	Rewrites int
	Written  int64
	// FS has an entry per filesystem touched, in the order first touched.
	FS []FSStats
	// Blocked has an entry per volume found to take nothing more (a
	// btrfs subvolume's quota full, a filesystem mounted read-only), in
	// the order found: why, as the results of the lines it kept from
	// starting say, and how many of them there were (rewrites included).
	Blocked []Blocked
}

// Blocked is a volume that took nothing more in the run, and the lines
// not started for it.
type Blocked struct {
	Why   string
	Lines int
}

// Failed is the number of items not done: invalid lines, differing,
// stale and failed files.
func (s *Stats) Failed() int { return s.Invalid + s.Differs + s.Stale + s.Errors }

// FSStats is the space a filesystem reports free before the first dedupe
// on it and after the run, following a sync.
type FSStats struct {
	Path       string // the first file touched on it
	ID, Type   string // see fsys.FS
	FreeBefore int64
	FreeAfter  int64
	Err        error // the after measurement failed
}

// Freed is the space freed as the filesystem reports it. Other writers
// on the filesystem make it differ from what dedupe alone freed.
func (f *FSStats) Freed() int64 { return f.FreeAfter - f.FreeBefore }

// item is one plan line or fdupes group.
type item struct {
	line int
	d    *plan.Dedupe
	rw   *plan.Rewrite // instead of d, for a rewrite line
	// whole marks an fdupes group: whole files whose identities were
	// taken while reading.
	whole bool
	// srcErr and dstErr are failures found while reading (fdupes).
	srcErr error
	dstErr []error
}

// source yields items; an error is a *plan.LineError (the line is
// skipped), io.EOF or a read error.
type source interface {
	next() (item, error)
}

type planSource struct{ r *plan.Reader }

func (s planSource) next() (item, error) {
	line, rec, err := s.r.Next()
	it := item{line: line}
	switch rec := rec.(type) {
	case *plan.Dedupe:
		it.d = rec
	case *plan.Rewrite:
		it.rw = rec
	}
	return it, err
}

// Run reads plan lines from in, applies up to opt.Jobs of them at once,
// writes a result record per line to out, in plan order, and returns the
// counts. Its error is nil, ErrInterrupted, or a fatal error (input
// unreadable, output unwritable); items that were not done are only
// counted (Stats.Failed).
func Run(ctx context.Context, in io.Reader, out io.Writer, opt Options) (*Stats, error) {
	if opt.Chunk <= 0 {
		opt.Chunk = dedupe.DefaultChunk
	}
	opt.Jobs = max(opt.Jobs, 1)
	if opt.Report == nil {
		opt.Report = func(error) {}
	}
	var reportMu sync.Mutex
	report := opt.Report
	opt.Report = func(err error) {
		reportMu.Lock()
		defer reportMu.Unlock()
		report(err)
	}
	var src source = planSource{plan.NewReader(in)}
	if opt.FromFdupes {
		src = newFdupesSource(in)
	}
	a := &applier{
		opt:          opt,
		enc:          plan.NewEncoder(out),
		stats:        &Stats{},
		devs:         make(map[uint64]*fsState),
		ids:          make(map[string]*fsState),
		notRewritten: make(map[fsys.FileID][]notRewritten),
		busyDevs:     make(map[fsys.FileID]bool),
		blocked:      make(map[fsys.FileID]string),
		files:        newHandles(),
	}
	err := a.loop(ctx, src)
	a.files.closeAll()
	a.finish()
	return a.stats, err
}

type applier struct {
	opt   Options
	enc   *plan.Encoder
	stats *Stats // written by count alone, in the loop
	// noSpace, once set, says why no rewrite writes any more (ENOSPC);
	// synced, that the filesystems were committed since the last
	// rewrite. Rewrites run in the loop's goroutine alone, and so do
	// these.
	noSpace string
	synced  bool
	mu      sync.Mutex          // guards what follows: lines in flight open files
	devs    map[uint64]*fsState // by st_dev
	ids     map[string]*fsState // by filesystem ID
	order   []*fsState
	// notRewritten holds the extents of rewrite lines not done, by file.
	notRewritten map[fsys.FileID][]notRewritten
	// ro caches, by st_dev, whether a subvolume is read-only.
	ro map[uint64]bool
	// busyDevs are the devices (subvolumes) that stayed busy (EAGAIN)
	// through every retry: later lines are not retried there.
	busyDevs map[fsys.FileID]bool
	// blocked holds the volumes that take nothing more in the run, and
	// why: a dedupe or a rewrite's copy found the quota of a btrfs
	// subvolume full, or a filesystem mounted read-only (see noteBlocked).
	blocked map[fsys.FileID]string
	files   *handles // the files lines open
	looks   looks    // whether a destination is looked at first
}

// fault, when set (by tests), is called at the points of a unit of work
// where an interruption or a failure is tested: "rewrite-done", after a
// rewrite line and before the dedupe lines of its unit; "busy-retry",
// before destinations that got EAGAIN are tried again; and where tests
// count: "look", before a destination is looked at (see looks).
var fault func(point string)

// now is time.Now; tests move it.
var now = time.Now

// busyBackoff are the waits before each retry of destinations that got
// EAGAIN (a btrfs send reading the subvolume).
var busyBackoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}

// fsState is a filesystem touched by the run.
type fsState struct {
	fs    fsys.FS
	stats FSStats
	file  *os.File // kept open to sync and measure the filesystem at the end
	// availAtStart is the space available when the first rewrite on it
	// asked for room; -1 before.
	availAtStart int64
}

// errSkip marks a destination that needs no dedupe (fdupes hard links).
var errSkip = errors.New("skipped")

// apply applies one item and returns its result.
func (a *applier) apply(ctx context.Context, it item) *plan.Result {
	d := it.d
	r := &plan.Result{
		Line:   it.line,
		Len:    d.Len,
		Src:    &plan.Loc{Path: d.Src.Path, Off: d.Src.Off},
		Status: plan.StatusSkipped,
		Dst:    make([]plan.DstResult, len(d.Dst)),
	}
	for i, dst := range d.Dst {
		r.Dst[i] = plan.DstResult{Path: dst.Path, Off: dst.Off, Status: plan.DstSkipped}
	}
	var open []*os.File
	defer func() {
		for _, f := range open {
			a.files.release(f, false)
		}
	}()

	// A line of a unit begun before a destination's volume was found to
	// take nothing more is not started either (see blockedUnit).
	var vols []fsys.FileID
	for _, dst := range d.Dst {
		vols = append(vols, dst.Volume())
	}
	if why := a.blockedIn(vols); why != "" {
		r.Error = why
		return r
	}

	if it.whole && d.Len == 0 {
		for i := range r.Dst {
			r.Dst[i].Error = "empty file: nothing to dedupe"
		}
		return r
	}

	src, _, bs, err := a.open(d.Src, it.srcErr)
	if src != nil {
		open = append(open, src)
	}
	if err == nil {
		err = checkAlign(d.Src, d.Len, bs)
	}
	if err != nil {
		r.Status, r.Error = plan.StatusError, err.Error()
		if stale(err) {
			r.Status = plan.StatusStale
		}
		a.opt.Report(&ItemError{it.line, d.Src.Path, err})
		return r
	}

	var dests []dedupe.Dest
	var idx []int              // index in d.Dst of each of dests
	var srcExt []fiemap.Extent // read once a destination needs them
	// A source in the extent of a rewrite not done still lies there: the
	// line shares it back into files that refer to that extent already
	// (a snapshot's copy of the file rewritten), which the kernel would
	// compare, read whole, for nothing. Each destination is looked at.
	srcUndone := a.inUndone(d.Src, d.Len) != nil
	for i, dst := range d.Dst {
		var pre error
		if it.dstErr != nil {
			pre = it.dstErr[i]
		}
		f, st, bs, err := a.open(dst, pre)
		if f != nil {
			open = append(open, f)
			r.Dst[i].ReadOnly = a.readOnly(f, st.Dev)
		}
		if err == nil {
			err = checkAlign(dst, d.Len, bs)
		}
		if err != nil {
			a.setDst(&r.Dst[i], err)
			if !errors.Is(err, errSkip) {
				a.opt.Report(&ItemError{it.line, dst.Path, err})
			}
			continue
		}
		if a.opt.DryRun {
			if err := mayDedupeInto(f, st.UID); err != nil {
				a.setDst(&r.Dst[i], err)
				a.opt.Report(&ItemError{it.line, dst.Path, err})
				continue
			}
			r.Dst[i].Status = plan.DstChecked
			continue
		}
		if w := a.inUndone(dst, d.Len); w != nil {
			r.Dst[i].Error = fmt.Sprintf("the rewrite of its extent (%s at %d) was not done: sharing part of the extent would free nothing", w.File.Path, w.File.Off)
			continue
		}
		if srcUndone || a.looks.want() {
			if fault != nil {
				fault("look")
			}
			if srcExt == nil {
				srcExt = extentsIn(src, d.Src.Off, d.Len)
			}
			shared := sharesStorage(srcExt, d.Src.Off, extentsIn(f, dst.Off, d.Len), dst.Off, d.Len)
			if !srcUndone {
				a.looks.saw(shared) // what the looks find there says nothing of the plan
			}
			if shared {
				// Shared already (this plan applied before, or its rewrite
				// not done): nothing to read.
				r.Dst[i].Status, r.Dst[i].Bytes = plan.DstDeduped, d.Len
				continue
			}
		}
		dests = append(dests, dedupe.Dest{File: f, Off: dst.Off})
		idx = append(idx, i)
	}
	if len(dests) > 0 {
		a.dedupe(ctx, it.line, d, src, dests, idx, r)
	}
	r.Status = lineStatus(r.Dst, a.opt.DryRun)
	return r
}

// dedupe shares d's source with dests (those of d.Dst at idx) and records
// the outcomes in r. Destinations that get EAGAIN are tried again, from
// where they stopped, after each of busyBackoff, unless their device
// stayed busy through that before in the run; those still busy are
// DstBusy.
func (a *applier) dedupe(ctx context.Context, line int, d *plan.Dedupe, src *os.File, dests []dedupe.Dest, idx []int, r *plan.Result) {
	for k, o := range dedupe.Range(ctx, src, d.Src.Off, d.Len, dests, a.opt.Chunk) {
		dr := &r.Dst[idx[k]]
		dr.Status, dr.Bytes = dstStatus(o.Status), o.Bytes
		if errors.Is(o.Err, syscall.EAGAIN) {
			dr.Status = plan.DstBusy
		}
		if o.Err != nil {
			dr.Error, dr.Errno = o.Err.Error(), dedupe.ErrnoName(o.Err)
			a.noteBlocked(o.Err, d.Dst[idx[k]], line)
		}
	}
	for _, wait := range busyBackoff {
		var again []dedupe.Dest
		var at []int
		for k, i := range idx {
			if r.Dst[i].Status == plan.DstBusy && !a.isBusy(d.Dst[i].Volume()) {
				again = append(again, dests[k])
				at = append(at, i)
			}
		}
		if len(again) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if fault != nil {
			fault("busy-retry")
		}
		// Each destination resumes where it stopped; those at the same
		// position go in one call.
		for len(again) > 0 {
			i0 := at[0]
			pos := r.Dst[i0].Bytes
			var batch []dedupe.Dest
			var bi []int
			var restD []dedupe.Dest
			var restI []int
			for k, i := range at {
				if r.Dst[i].Bytes == pos {
					batch = append(batch, dedupe.Dest{File: again[k].File, Off: again[k].Off + pos})
					bi = append(bi, i)
				} else {
					restD, restI = append(restD, again[k]), append(restI, i)
				}
			}
			for k, o := range dedupe.Range(ctx, src, d.Src.Off+pos, d.Len-pos, batch, a.opt.Chunk) {
				dr := &r.Dst[bi[k]]
				dr.Status, dr.Bytes, dr.Error, dr.Errno = dstStatus(o.Status), pos+o.Bytes, "", ""
				if errors.Is(o.Err, syscall.EAGAIN) {
					dr.Status = plan.DstBusy
				}
				if o.Err != nil {
					dr.Error, dr.Errno = o.Err.Error(), dedupe.ErrnoName(o.Err)
					a.noteBlocked(o.Err, d.Dst[bi[k]], line)
				}
			}
			again, at = restD, restI
		}
	}
	for k, i := range idx {
		dr := &r.Dst[i]
		switch dr.Status {
		case plan.DstBusy:
			a.setBusy(d.Dst[i].Volume())
			a.opt.Report(&ItemError{line, d.Dst[idx[k]].Path, errors.New(dr.Error)})
		case plan.DstDiffers, plan.DstError:
			a.opt.Report(&ItemError{line, d.Dst[idx[k]].Path, errors.New(dr.Error)})
		}
	}
}

// noteBlocked records that r's volume takes nothing more in the run, and
// why, where err says so: the quota of its btrfs subvolume leaves no room
// (EDQUOT: a qgroup limit reached; sharing into it needs room for
// metadata), or its filesystem is mounted read-only (EROFS: say btrfs
// made itself so after an error). The units read after that which share
// or copy into that volume are skipped (see blockedUnit): each would fail
// after reading its ranges, and a unit whose other destinations were done
// would free nothing and cost metadata. On other filesystems than btrfs a
// quota is the owner's or the project's, not the volume's: nothing is
// recorded for EDQUOT there.
func (a *applier) noteBlocked(err error, r plan.Range, line int) {
	v := r.Volume()
	var why string
	switch {
	case errors.Is(err, syscall.EDQUOT) && v.Vol.Subvol != 0:
		why = fmt.Sprintf("not started: the quota of the subvolume of %s (qgroup 0/%d) was found full on line %d (EDQUOT); "+
			"raise its limit and run again: btrfs qgroup limit SIZE 0/%[2]d PATH, PATH on that filesystem outside the subvolume", r.Path, v.Vol.Subvol, line)
	case errors.Is(err, syscall.EROFS):
		why = fmt.Sprintf("not started: the filesystem of %s was found mounted read-only on line %d (EROFS); mount it read-write and run again", r.Path, line)
	default:
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.blocked[v]; !ok {
		a.blocked[v] = why
	}
}

// blockedUnit returns why u may not start, or "": a destination of one of
// its lines, or the file or the copy of one of its rewrites, lies in a
// volume that takes nothing more (see noteBlocked).
func (a *applier) blockedUnit(u *unit) string {
	var vols []fsys.FileID
	for _, it := range u.rws {
		vols = append(vols, it.rw.File.Volume())
		if c := it.rw.CopyNextTo; c != nil {
			vols = append(vols, c.Volume())
		}
	}
	for _, it := range u.lines {
		if it.d != nil {
			for _, dst := range it.d.Dst {
				vols = append(vols, dst.Volume())
			}
		}
	}
	return a.blockedIn(vols)
}

// blockedIn returns why a volume of vols takes nothing more (see
// noteBlocked), or "".
func (a *applier) blockedIn(vols []fsys.FileID) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range vols {
		if why, ok := a.blocked[v]; ok {
			return why
		}
	}
	return ""
}

// isBlocked reports whether why is that of a volume found to take nothing
// more (see noteBlocked).
func (a *applier) isBlocked(why string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.blocked {
		if w == why {
			return true
		}
	}
	return false
}

func (a *applier) isBusy(dev fsys.FileID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.busyDevs[dev]
}

func (a *applier) setBusy(dev fsys.FileID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.busyDevs[dev] = true
}

// lineStatus derives a line's status from its destinations'.
func lineStatus(dsts []plan.DstResult, dryRun bool) plan.Status {
	want := plan.DstDeduped
	if dryRun {
		want = plan.DstChecked
	}
	all, skipped, busy, rest := true, true, false, true
	for _, d := range dsts {
		all = all && d.Status == want
		skipped = skipped && d.Status == plan.DstSkipped && d.Bytes == 0
		if d.Status == plan.DstBusy {
			busy = true
		} else {
			rest = rest && d.Status == want
		}
	}
	switch {
	case all && dryRun:
		return plan.StatusChecked
	case all:
		return plan.StatusDone
	case skipped:
		return plan.StatusSkipped
	case busy && rest:
		return plan.StatusBusy
	}
	return plan.StatusPartial
}

// stale reports whether err says that a file is not the one planned: its
// identity differs, or nothing is at its path now (deleted or renamed
// since it was hashed).
func stale(err error) bool {
	return errors.Is(err, dedupe.ErrStale) || errors.Is(err, os.ErrNotExist)
}

// setDst records a destination that failed before any ioctl.
func (a *applier) setDst(dr *plan.DstResult, err error) {
	dr.Error, dr.Errno = err.Error(), dedupe.ErrnoName(err)
	switch {
	case errors.Is(err, errSkip):
		dr.Status = plan.DstSkipped
	case stale(err):
		dr.Status = plan.DstStale
	case errors.Is(err, dedupe.ErrDiffers):
		dr.Status = plan.DstDiffers
	default:
		dr.Status = plan.DstError
	}
}

// count adds a finished line to the stats.
func (a *applier) count(r *plan.Result) {
	s := a.stats
	s.Lines++
	if r.Status == plan.StatusSkipped && r.Error != "" && a.isBlocked(r.Error) {
		k := slices.IndexFunc(s.Blocked, func(b Blocked) bool { return b.Why == r.Error })
		if k < 0 {
			k = len(s.Blocked)
			s.Blocked = append(s.Blocked, Blocked{Why: r.Error})
		}
		s.Blocked[k].Lines++
	}
	if rr := r.Rewrite; rr != nil {
		a.countRewrite(r)
		return
	}
	s.Dests += len(r.Dst)
	switch r.Status {
	case plan.StatusInvalid:
		s.Invalid++
	case plan.StatusStale:
		s.Stale++
	case plan.StatusError:
		s.Errors++
	}
	for _, d := range r.Dst {
		s.Bytes += d.Bytes
		switch d.Status {
		case plan.DstDeduped:
			s.Deduped++
		case plan.DstChecked:
			s.Checked++
		case plan.DstDiffers:
			s.Differs++
		case plan.DstStale:
			s.Stale++
		case plan.DstError:
			s.Errors++
		case plan.DstSkipped:
			s.Skipped++
		case plan.DstBusy:
			s.Busy++
		}
	}
}

// open opens one side of an item (unless pre reports a failure found while
// reading it) and returns its stat, as dedupe.OpenStat checked it, and its
// filesystem's block size; a.files.release gives the file back. The first
// file opened on a filesystem is kept open (a descriptor of its own) until
// the end of the run, and the filesystem is synced and its free space
// recorded, before any dedupe on it.
func (a *applier) open(r plan.Range, pre error) (*os.File, fsys.Stat, int64, error) {
	if pre != nil {
		return nil, fsys.Stat{}, 0, pre
	}
	f, st, err := a.files.open(r)
	if err != nil {
		return nil, st, 0, err
	}
	bs, err := a.blockSize(f, st.Dev, r.Path)
	return f, st, bs, err
}

// blockSize returns the block size of the filesystem of f (on device
// dev, at path) and records the filesystem when it is the first file on
// it.
func (a *applier) blockSize(f *os.File, dev uint64, path string) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.devs[dev]; ok {
		return st.fs.BlockSize, nil
	}
	fs, err := fsys.StatFS(f)
	if err != nil {
		return 0, err
	}
	st, ok := a.ids[fs.ID]
	if !ok {
		// Data not yet written back has no blocks yet; the dedupe would
		// write it back and the space would count as taken, not freed. A
		// failed sync only makes the measurement less exact.
		_ = fsys.SyncFS(f)
		if fs, err = fsys.StatFS(f); err != nil {
			return 0, err
		}
		keep, err := dup(f)
		if err != nil {
			return 0, err
		}
		st = &fsState{fs: fs, file: keep, availAtStart: -1, stats: FSStats{
			Path: path, ID: fs.ID, Type: fs.Type, FreeBefore: fs.Free,
		}}
		a.ids[fs.ID] = st
		a.order = append(a.order, st)
	}
	a.devs[dev] = st
	return fs.BlockSize, nil
}

// dup returns a descriptor of f's file of its own.
func dup(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: dup: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// finish syncs every filesystem touched, measures its free space and
// closes the files kept open for that.
func (a *applier) finish() {
	for _, st := range a.order {
		st.stats.Err = fsys.SyncFS(st.file)
		if st.stats.Err == nil {
			var fs fsys.FS
			fs, st.stats.Err = fsys.StatFS(st.file)
			st.stats.FreeAfter = fs.Free
		}
		st.file.Close()
		a.stats.FS = append(a.stats.FS, st.stats)
	}
}

// checkAlign checks that a range starts on a block boundary and, when the
// length is not a whole number of blocks, ends at the file's EOF (as the
// plan's identity, verified by Open, says).
func checkAlign(r plan.Range, length, bs int64) error {
	if bs <= 0 {
		return nil
	}
	if r.Off%bs != 0 {
		return fmt.Errorf("offset %d is not a multiple of the filesystem block size %d", r.Off, bs)
	}
	if length%bs != 0 && r.Off+length != r.Size {
		return fmt.Errorf("len %d is not a multiple of the filesystem block size %d and the range [%d, %d) does not end at EOF (size %d)",
			length, bs, r.Off, r.Off+length, r.Size)
	}
	return nil
}

// mayDedupeInto returns the error the kernel would give a dedupe into f
// (owned by uid) for want of permission: it takes CAP_SYS_ADMIN (root
// here), owning the file, or being able to open it for writing.
func mayDedupeInto(f *os.File, uid uint32) error {
	euid := os.Geteuid()
	if euid == 0 {
		return nil
	}
	if int(uid) == euid || unix.Faccessat(unix.AT_FDCWD, f.Name(), unix.W_OK, unix.AT_EACCESS) == nil {
		return nil
	}
	return dedupe.Explain(unix.EPERM)
}

// readOnly reports whether f, on device dev, is in a read-only btrfs
// subvolume, asking the kernel once per device.
func (a *applier) readOnly(f *os.File, dev uint64) bool {
	a.mu.Lock()
	ro, ok := a.ro[dev]
	a.mu.Unlock()
	if ok {
		return ro
	}
	ro = fsys.ReadOnly(f)
	a.mu.Lock()
	if a.ro == nil {
		a.ro = make(map[uint64]bool)
	}
	a.ro[dev] = ro
	a.mu.Unlock()
	return ro
}

// dstStatus is the plan status of a destination's dedupe outcome.
func dstStatus(s dedupe.Status) plan.Status {
	switch s {
	case dedupe.Deduped:
		return plan.DstDeduped
	case dedupe.Differs:
		return plan.DstDiffers
	case dedupe.Skipped:
		return plan.DstSkipped
	}
	return plan.DstError
}
