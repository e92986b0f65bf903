package apply

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"

	"same/internal/cli"
	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/plan"
)

// errExtentShared says that something else refers to the extent, so a
// rewrite would not free it.
var errExtentShared = errors.New("the extent is shared with another file or snapshot: rewriting it would free nothing")

// rewrite carries out one rewrite line: it checks the file's identity,
// finds which of the copy ranges still lie in the planned extent (a run
// interrupted or applied before moved the others), checks that none of
// them is shared, that the rewrite limit allows them and that the
// filesystem has room for them, then copies them and shares them back
// from the copy (dedupe.Rewrite). When none is left in the extent, the
// line is done already. need is what the rewrites of the unit yet to run,
// this one included, write: there must be room for them all. When there
// is too little and mayWait is set, it returns wait instead of a result,
// having done nothing. Whatever
// it does not finish is recorded (undone), so that the dedupe lines of
// its unit leave the extent alone. It runs in the loop's goroutine, after
// every line before it.
func (a *applier) rewrite(ctx context.Context, line int, w *plan.Rewrite, need int64, mayWait bool) (r *plan.Result, wait bool) {
	if fault != nil && !a.opt.DryRun {
		fault("rewrite-start")
	}
	r, wait = a.rewriteOnce(ctx, line, w, need, mayWait)
	if wait {
		return nil, true
	}
	if r.Status != plan.StatusDone && r.Status != plan.StatusChecked {
		a.undone(w)
	}
	if r.Status == plan.StatusDone && r.Rewrite.Written > 0 {
		a.synced = false // the unit's lines free the extent
	}
	if fault != nil && !a.opt.DryRun {
		fault("rewrite-done")
	}
	return r, false
}

func (a *applier) rewriteOnce(ctx context.Context, line int, w *plan.Rewrite, need int64, mayWait bool) (*plan.Result, bool) {
	rr := &plan.RewriteResult{Path: w.File.Path, Off: w.File.Off, Len: w.Len}
	r := &plan.Result{Line: line, Status: plan.StatusSkipped, Rewrite: rr}
	fail := func(st plan.Status, err error) (*plan.Result, bool) {
		r.Status, r.Error, rr.Errno = st, err.Error(), dedupe.ErrnoName(err)
		if st != plan.StatusSkipped && st != plan.StatusBusy {
			a.opt.Report(&ItemError{line, w.File.Path, err})
		}
		return r, false
	}
	if a.opt.RewriteLimit <= 0 {
		return fail(plan.StatusSkipped, errors.New("rewriting is off (-rewrite-limit 0)"))
	}
	f, st, bs, err := a.open(w.File, nil)
	if f != nil {
		defer a.files.release(f, false)
	}
	if err != nil {
		if stale(err) {
			return fail(plan.StatusStale, err)
		}
		return fail(plan.StatusError, err)
	}
	for _, s := range w.Copy {
		r := w.File
		r.Off = s.Off
		if err := checkAlign(r, s.Len, bs); err != nil {
			return fail(plan.StatusError, err)
		}
	}
	// The extents where the copy ranges lie, not the whole file's: FIEMAP
	// on btrfs looks up every extent's references to flag it shared, and
	// a VM image written at random holds a hundred thousand extents or
	// more, mapped again for each of its rewrites.
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, s := range w.Copy {
		lo, hi = min(lo, s.Off), max(hi, s.Off+s.Len)
	}
	ext, err := fiemap.ExtentsIn(f, lo, hi-lo)
	if err != nil {
		return fail(plan.StatusError, err)
	}
	spans, err := pending(ext, w)
	if err != nil {
		return fail(plan.StatusSkipped, err)
	}
	if len(spans) == 0 {
		r.Status = plan.StatusDone // nothing left in the extent: done before
		return r, false
	}
	var bytes int64
	for _, s := range spans {
		bytes += s.Len
	}
	if a.stats.Written+bytes > a.opt.RewriteLimit {
		return fail(plan.StatusSkipped, fmt.Errorf("would pass the rewrite limit of %s (-rewrite-limit)", cli.Bytes(a.opt.RewriteLimit)))
	}
	if a.opt.DryRun {
		r.Status = plan.StatusChecked
		return r, false
	}
	if err := a.room(f, st.Dev, max(need-w.Bytes+bytes, bytes)); err != nil {
		if mayWait && errors.Is(err, errNoRoom) {
			return nil, true
		}
		return fail(plan.StatusSkipped, err)
	}
	// The copy is made next to the file, or next to the one the plan
	// names when the file's directory cannot hold it.
	at, atPath := f, w.File.Path
	if w.CopyNextTo != nil {
		atPath = w.CopyNextTo.Path
		if at, err = dedupe.Open(atPath, w.CopyNextTo.Identity); err != nil {
			if stale(err) {
				return fail(plan.StatusStale, err)
			}
			return fail(plan.StatusError, err)
		}
		defer at.Close()
	}
	rr.Written, rr.Shared, err = dedupe.Rewrite(ctx, f, w.File.Path, at, atPath, spans, a.opt.Chunk)
	// A quota that leaves no room (EDQUOT), or a read-only mount, is that
	// of the volume the copy is made in, or, sharing it back, of the
	// file's.
	if w.CopyNextTo != nil && !dedupe.SharingBack(err) {
		a.noteBlocked(err, *w.CopyNextTo, line)
	} else {
		a.noteBlocked(err, w.File, line)
	}
	switch {
	case err == nil:
		r.Status = plan.StatusDone
		return r, false
	case errors.Is(err, dedupe.ErrDiffers):
		return fail(plan.StatusDiffers, err)
	case errors.Is(err, syscall.EAGAIN):
		return fail(plan.StatusBusy, err)
	case errors.Is(err, syscall.ENOSPC):
		a.noSpace = fmt.Sprintf("line %d ran out of space", line)
		if rr.Shared == 0 {
			// The copy went with its unnamed file: nothing changed.
			return fail(plan.StatusSkipped, err)
		}
	}
	return fail(plan.StatusError, err)
}

// errNoRoom marks a rewrite refused for want of room; another may free
// some.
var errNoRoom = errors.New("not enough room")

// room says why a rewrite that writes n bytes on f's filesystem (f is on
// device dev) may not start: an earlier one ran out of space, or the space
// available would fall below the reserve. On a filesystem that had less
// than the reserve available when the run first asked, the floor is half
// of what it had then: rewrites that fit in that, and the space they
// free, are how a full filesystem is freed. Before it refuses, it commits
// the filesystem once since the last rewrite, for the space that
// dedupe lines freed shows only then.
func (a *applier) room(f *os.File, dev uint64, n int64) error {
	if a.noSpace != "" {
		return fmt.Errorf("no more writing in this run: %s (ENOSPC)", a.noSpace)
	}
	avail, size, err := space(f)
	if err != nil {
		return err
	}
	a.mu.Lock()
	st := a.devs[dev]
	a.mu.Unlock()
	reserve := a.opt.Reserve
	if reserve < 0 {
		reserve = DefaultReserve(size)
	}
	if st != nil {
		if st.availAtStart < 0 {
			st.availAtStart = avail
		}
		reserve = min(reserve, st.availAtStart/2)
	}
	if avail-n < reserve && !a.synced {
		if err := fsys.SyncFS(f); err != nil {
			return err
		}
		a.synced = true
		if avail, _, err = space(f); err != nil {
			return err
		}
	}
	if avail-n < reserve {
		return fmt.Errorf("%w: %s available, the copy takes %s and %s are kept free (-reserve)",
			errNoRoom, cli.Bytes(avail), cli.Bytes(n), cli.Bytes(reserve))
	}
	return nil
}

// DefaultReserve is the space rewrites leave free on a filesystem of the
// given size unless told otherwise: 2% of it, at most 1 GiB.
func DefaultReserve(size int64) int64 { return min(size/50, 1<<30) }

// undone records that w's extent was not rewritten (in full), so that
// destinations in it are left alone: sharing them would free nothing, and
// a later run plans them again with the rewrite. Lines whose source lies
// in it still run: they free other extents, and a later run finds the
// extent again, shared (see findsame).
func (a *applier) undone(w *plan.Rewrite) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := w.File.File()
	a.notRewritten[k] = append(a.notRewritten[k], notRewritten{w.File.Off, w.File.Off + w.Len, w})
}

// notRewritten is the extent of a rewrite line that was not done.
type notRewritten struct {
	lo, hi int64
	w      *plan.Rewrite
}

// inUndone returns the rewrite not done whose extent holds part of r's
// len bytes, if any.
func (a *applier) inUndone(r plan.Range, n int64) *plan.Rewrite {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.notRewritten[r.File()] {
		if e.lo < r.Off+n && r.Off < e.hi {
			return e.w
		}
	}
	return nil
}

// rewriteSkipped is the result of a rewrite line that was not started.
func (a *applier) rewriteSkipped(line int, w *plan.Rewrite, err error) *plan.Result {
	return &plan.Result{Line: line, Status: plan.StatusSkipped, Error: err.Error(),
		Rewrite: &plan.RewriteResult{Path: w.File.Path, Off: w.File.Off, Len: w.Len}}
}

// countRewrite adds a finished rewrite line to the stats.
func (a *applier) countRewrite(r *plan.Result) {
	s, rr := a.stats, r.Rewrite
	switch r.Status {
	case plan.StatusDone:
		if rr.Written > 0 {
			s.Rewrites++
		}
	case plan.StatusStale:
		s.Stale++
	case plan.StatusError:
		s.Errors++
	case plan.StatusDiffers:
		s.Differs++
	case plan.StatusSkipped:
		s.Skipped++
	case plan.StatusBusy:
		s.Busy++
	}
	s.Written += rr.Written
}

// pending returns the parts of w's copy ranges that still lie in the
// planned extent (at the disk offset the plan implies), or
// errExtentShared if a piece there is shared and the plan does not say
// that its unit's lines take care of that (plan.Rewrite.Shared).
func pending(ext []fiemap.Extent, w *plan.Rewrite) ([]dedupe.Span, error) {
	var out []dedupe.Span
	add := func(off, n int64) {
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == off {
			out[k].Len += n
			return
		}
		out = append(out, dedupe.Span{Off: off, Len: n})
	}
	for _, s := range w.Copy {
		end := s.Off + s.Len
		for off := s.Off; off < end; {
			e, ok := fiemap.At(ext, off)
			if !ok {
				// A hole: nothing to copy. The next extent, if any, starts
				// further on.
				next := end
				for _, x := range ext {
					if x.Logical > off {
						next = min(next, x.Logical)
						break
					}
				}
				off = next
				continue
			}
			hi := min(e.End(), end)
			if e.Physical+(off-e.Logical) == w.Physical+(off-w.File.Off) {
				if e.Flags&fiemap.FlagShared != 0 && !w.Shared {
					return nil, errExtentShared
				}
				add(off, hi-off)
			}
			off = hi
		}
	}
	return out, nil
}
