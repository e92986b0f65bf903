package apply

import (
	"context"
	"errors"
	"fmt"

	"same/internal/cli"
	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/plan"
)

// errExtentMoved says that a rewrite's extent no longer holds its copy
// ranges: the file was deduplicated or rewritten since findsame planned.
var errExtentMoved = errors.New("the extent no longer holds the ranges to copy (changed since planned)")

// errExtentShared says that something else refers to the extent, so a
// rewrite would not free it.
var errExtentShared = errors.New("the extent is shared with another file or snapshot: rewriting it would free nothing")

// rewrite carries out one rewrite line: it checks the file's identity and
// that the copy ranges still lie, unshared, in the planned extent, then
// copies them and shares them back from the copy (dedupe.Rewrite).
func (a *applier) rewrite(ctx context.Context, line int, w *plan.Rewrite) *plan.Result {
	rr := &plan.RewriteResult{Path: w.File.Path, Off: w.File.Off, Len: w.Len}
	r := &plan.Result{Line: line, Status: plan.StatusSkipped, Rewrite: rr}
	fail := func(st plan.Status, err error) *plan.Result {
		r.Status, r.Error, rr.Errno = st, err.Error(), dedupe.ErrnoName(err)
		if st != plan.StatusSkipped {
			a.opt.Report(&ItemError{line, w.File.Path, err})
		}
		return r
	}
	f, bs, err := a.open(w.File, nil)
	if err != nil {
		if f != nil && !a.kept(f) {
			f.Close()
		}
		if errors.Is(err, dedupe.ErrStale) {
			return fail(plan.StatusStale, err)
		}
		return fail(plan.StatusError, err)
	}
	if !a.kept(f) {
		defer f.Close()
	}
	for _, s := range w.Copy {
		if err := checkAlign(plan.Range{Off: s.Off, Size: w.File.Size}, s.Len, bs); err != nil {
			return fail(plan.StatusError, err)
		}
	}
	ext, err := fiemap.Extents(f)
	if err != nil {
		return fail(plan.StatusError, err)
	}
	if err := holds(ext, w); err != nil {
		if errors.Is(err, errExtentShared) {
			return fail(plan.StatusSkipped, err)
		}
		return fail(plan.StatusStale, err)
	}
	if a.opt.DryRun {
		r.Status = plan.StatusChecked
		return r
	}
	rr.Written, rr.Shared, err = dedupe.Rewrite(ctx, f, w.File.Path, w.Copy, a.opt.Chunk)
	switch {
	case errors.Is(err, dedupe.ErrDiffers):
		return fail(plan.StatusDiffers, err)
	case err != nil:
		return fail(plan.StatusError, err)
	}
	r.Status = plan.StatusDone
	return r
}

// reserve sets aside w's bytes of the rewrite limit before w starts, or
// says why w may not start: rewriting is off, or w would pass the limit.
// The loop gives back what w did not write once it is done.
func (a *applier) reserve(w *plan.Rewrite) error {
	if a.opt.RewriteLimit <= 0 {
		return errors.New("rewriting is off (-rewrite-limit 0)")
	}
	if a.reserved+w.Bytes > a.opt.RewriteLimit {
		return fmt.Errorf("would pass the rewrite limit of %s (-rewrite-limit)", cli.Bytes(a.opt.RewriteLimit))
	}
	a.reserved += w.Bytes
	return nil
}

// rewriteSkipped is the result of a rewrite line that reserve refused.
func (a *applier) rewriteSkipped(line int, w *plan.Rewrite, err error) *plan.Result {
	return &plan.Result{Line: line, Status: plan.StatusSkipped, Error: err.Error(),
		Rewrite: &plan.RewriteResult{Path: w.File.Path, Off: w.File.Off, Len: w.Len}}
}

// countRewrite adds a finished rewrite line to the stats.
func (a *applier) countRewrite(r *plan.Result) {
	s, rr := a.stats, r.Rewrite
	switch r.Status {
	case plan.StatusDone:
		s.Rewrites++
	case plan.StatusStale:
		s.Stale++
	case plan.StatusError:
		s.Errors++
	case plan.StatusDiffers:
		s.Differs++
	case plan.StatusSkipped:
		s.Skipped++
	}
	s.Written += rr.Written
}

// holds checks that every copy range of w lies in the planned extent (at
// the disk offset the plan implies) and that no extent piece there is
// shared.
func holds(ext []fiemap.Extent, w *plan.Rewrite) error {
	for _, s := range w.Copy {
		for off := s.Off; off < s.Off+s.Len; {
			e, ok := fiemap.At(ext, off)
			if !ok || e.Physical+(off-e.Logical) != w.Physical+(off-w.File.Off) {
				return errExtentMoved
			}
			if e.Flags&fiemap.FlagShared != 0 {
				return errExtentShared
			}
			off = e.End()
		}
	}
	return nil
}
