package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"same/internal/fsys"
	"same/internal/plan"
)

// loop reads and applies items until the input ends or ctx is cancelled.
// The input is read a unit of work at a time (reader.unit), one record
// only when the queue has room for it. A unit without rewrites starts its
// lines at once, each in a goroutine of its own, up to Jobs in flight; a
// unit with rewrites runs behind barriers (runUnit). A unit whose
// rewrites find too little room waits, its lines with it, until the input
// ends, and so does a unit with a line whose source lies in the extent of
// a waiting rewrite: run first, it would share that extent into other
// files, and the rewrite would then free nothing. Once the input ends the
// units waiting are tried again, in plan order (a unit once those it
// waits for are done), for as long as one of them frees room for others.
// A unit that would share or copy into a volume found to take nothing
// more (a btrfs subvolume's quota full, a filesystem mounted read-only)
// is skipped (see noteBlocked).
//
// After an interrupt, or past the time limit, no unit starts: a unit
// read but not started is reported skipped, and so is the record read
// after it.
func (a *applier) loop(ctx context.Context, src source) error {
	in := newReader(src)
	defer in.close()
	q := &queue{a: a, jobs: a.opt.Jobs}
	var waiting []*unit // units waiting for room, or for units that do
	// wait makes u wait, and the extents of its rewrites with it.
	var held map[fsys.FileID][]heldExtent
	wait := func(u *unit) {
		u.waits = true
		waiting = append(waiting, u)
		for _, it := range u.rws {
			if held == nil {
				held = make(map[fsys.FileID][]heldExtent)
			}
			k := it.rw.File.File()
			held[k] = append(held[k], heldExtent{it.rw.File.Off, it.rw.File.Off + it.rw.Len, u})
		}
	}
	for q.fatal == nil && !q.stop && ctx.Err() == nil {
		if q.full() {
			q.pop()
			continue
		}
		n, ok := in.next(ctx)
		if !ok {
			break
		}
		var le *plan.LineError
		switch {
		case errors.As(n.err, &le):
			a.opt.Report(le)
			q.add(&plan.Result{Line: le.Line, Status: plan.StatusInvalid, Error: le.Err.Error()})
			continue
		case n.err != nil:
			q.fatal = fmt.Errorf("read plan: %w", n.err)
			continue
		}
		u := in.unit(ctx, n.it)
		if ctx.Err() != nil {
			q.skip(u, "interrupted")
			break
		}
		if held != nil {
			u.after = u.holders(held)
		}
		full := a.blockedUnit(u)
		switch {
		case a.timeUp():
			q.skip(u, "time is up (-max-time)")
		case full != "":
			q.skip(u, full)
		case len(u.after) > 0:
			wait(u)
		case len(u.rws) == 0:
			for _, it := range u.lines {
				q.start(ctx, it)
			}
		case !q.runUnit(ctx, u, u.rws[0].rw.Unit != 0):
			wait(u)
		}
	}
	if in.ahead != nil && in.ahead.err == nil && q.fatal == nil && ctx.Err() != nil {
		q.add(a.notStarted(in.ahead.it, "interrupted"))
	}
	q.barrier()

	// The units that waited for room, while one of them frees some.
	for more := in.eof; more && q.fatal == nil && !q.stop; {
		more = false
		var still []*unit
		for _, u := range waiting {
			if q.fatal != nil || q.stop || ctx.Err() != nil || a.timeUp() || u.waitsFor() || a.blockedUnit(u) != "" || !q.runUnit(ctx, u, true) {
				still = append(still, u)
				continue
			}
			u.waits = false
			more = true
		}
		waiting = still
	}
	for _, u := range waiting {
		switch {
		case q.fatal != nil:
		case q.stop:
			q.skip(u, "stopped: a line before it had an item not done (-stop-on-error)")
		case ctx.Err() != nil:
			q.skip(u, "interrupted")
		case a.timeUp():
			q.skip(u, "time is up (-max-time)")
		default:
			q.runUnit(ctx, u, false) // its rewrites are skipped for want of room
		}
	}
	q.barrier()
	switch {
	case q.fatal != nil:
		return q.fatal
	case ctx.Err() != nil:
		return ErrInterrupted
	}
	return nil
}

// queue holds the results of the lines in flight or done, in plan order,
// and writes each (counted, then encoded) once every line before it is
// written. It is used from the loop's goroutine alone.
type queue struct {
	a       *applier
	jobs    int                 // results queued at most before start waits
	pending []chan *plan.Result // in plan order
	fatal   error               // output unwritable: nothing more is written
	stop    bool                // -stop-on-error: nothing more is started
}

// full reports whether as many results are queued as lines may be in
// flight: the loop writes the first before it reads on.
func (q *queue) full() bool { return len(q.pending) >= q.jobs }

// add queues a result known already.
func (q *queue) add(r *plan.Result) {
	c := make(chan *plan.Result, 1)
	c <- r
	q.pending = append(q.pending, c)
}

// start applies a dedupe line in a goroutine of its own, once fewer than
// jobs results are queued, and queues its result.
func (q *queue) start(ctx context.Context, it item) {
	for q.full() {
		q.pop()
	}
	c := make(chan *plan.Result, 1)
	go func() { c <- q.a.apply(ctx, it) }()
	q.pending = append(q.pending, c)
}

// pop waits for the first result queued and writes it.
func (q *queue) pop() {
	c := q.pending[0]
	q.pending = q.pending[1:]
	q.write(<-c)
}

// barrier waits for every line queued and writes their results: what
// starts after it starts after they are done. The rewrites of a unit run
// behind one, so that they find the extents and the room the lines
// before them left, and no line runs beside them; the lines after the
// unit start behind another, once it is done.
func (q *queue) barrier() {
	for len(q.pending) > 0 {
		q.pop()
	}
}

// write counts and writes one result, unless the output failed before.
func (q *queue) write(r *plan.Result) {
	a := q.a
	a.count(r)
	if a.opt.Progress != nil {
		a.opt.Progress(a.stats)
	}
	if r.Status == plan.StatusDone || r.Status == plan.StatusPartial {
		a.synced = false // what it freed shows after the next commit
	}
	if q.fatal != nil {
		return
	}
	if err := a.enc.Encode(r); err != nil {
		q.fatal = fmt.Errorf("write result: %w", err)
	}
	if a.opt.StopOnError && failed(r) {
		q.stop = true
	}
}

// runUnit applies a unit with rewrites, unless it may wait and there is
// too little room for all its rewrites: then it returns false, having
// done nothing. It starts once every line before it is done, runs its
// rewrites one after the other, then its lines (so that they know which
// extents were rewritten), and returns once they are done; or skips it,
// when a line before it found a volume it would need to take nothing
// more. Once its first
// rewrite has started the unit is finished whatever happens: an
// interrupt, or the time limit, stops the run before the next unit, so
// that no copy is left written whose extent is not freed.
func (q *queue) runUnit(ctx context.Context, u *unit, mayWait bool) bool {
	q.barrier()
	if why := q.a.blockedUnit(u); why != "" { // found by a line just done, or while it waited
		q.skip(u, why)
		return true
	}
	var need int64
	for _, it := range u.rws {
		need += it.rw.Bytes
	}
	uctx := context.WithoutCancel(ctx) // begun, the unit is finished
	for i, it := range u.rws {
		r, wait := q.a.rewrite(uctx, it.line, it.rw, need, mayWait && i == 0)
		if wait {
			return false
		}
		q.write(r)
		need -= it.rw.Bytes
	}
	for _, it := range u.lines {
		q.start(uctx, it)
	}
	q.barrier()
	return true
}

// skip queues the results of every item of u, not started, and why.
func (q *queue) skip(u *unit, why string) {
	for _, it := range append(u.rws, u.lines...) {
		q.add(q.a.notStarted(it, why))
	}
}

// unit is a unit of work: its rewrites and its dedupe lines.
type unit struct {
	rws, lines []item
	waits      bool    // held back, for room or for the units in after
	after      []*unit // units held back whose rewrites hold sources of its lines
}

// heldExtent is the extent of a rewrite held back, in its file, and its
// unit.
type heldExtent struct {
	lo, hi int64
	u      *unit
}

// holders returns the units in held (the extents of rewrites held back, by
// file) whose extents hold the source of one of u's lines.
func (u *unit) holders(held map[fsys.FileID][]heldExtent) []*unit {
	var out []*unit
	for _, it := range u.lines {
		if it.d == nil {
			continue
		}
		for _, e := range held[it.d.Src.File()] {
			if e.lo < it.d.Src.Off+it.d.Len && it.d.Src.Off < e.hi && !slices.Contains(out, e.u) {
				out = append(out, e.u)
			}
		}
	}
	return out
}

// waitsFor reports whether a unit u waits for is still held back.
func (u *unit) waitsFor() bool {
	return slices.ContainsFunc(u.after, func(w *unit) bool { return w.waits })
}

func (u *unit) add(it item) {
	if it.rw != nil {
		u.rws = append(u.rws, it)
	} else {
		u.lines = append(u.lines, it)
	}
}

// record is what the reader read: an item or an error.
type record struct {
	it  item
	err error
}

// reader reads the source in a goroutine of its own, one record when
// asked, so that an interrupt is honoured while the input blocks.
type reader struct {
	req chan struct{}
	res chan record
	// ahead is the record read after the last unit, not yet handed out.
	ahead *record
	// eof says that the input ended.
	eof bool
}

func newReader(src source) *reader {
	r := &reader{req: make(chan struct{}), res: make(chan record, 1)}
	go func() {
		for range r.req {
			it, err := src.next()
			r.res <- record{it, err}
		}
	}()
	return r
}

// close ends the reading goroutine once it is done with the record it
// reads, if any.
func (r *reader) close() { close(r.req) }

// next returns the next record, or ok false when the run must stop
// reading: the input ended (r.eof), or ctx was cancelled.
func (r *reader) next(ctx context.Context) (n record, ok bool) {
	if r.ahead != nil {
		n, r.ahead = *r.ahead, nil
		return n, true
	}
	r.req <- struct{}{}
	select {
	case n = <-r.res:
	case <-ctx.Done():
		// The goroutine is left blocked on the input, which ends with
		// the process; its item, if any, is never started.
		return n, false
	}
	if n.err == io.EOF {
		r.eof = true
		return n, false
	}
	return n, true
}

// unit reads the unit of work that first starts: first and the records
// after it with the same unit number, its rewrites before its lines. The
// record that ends it is kept for the next call of next.
func (r *reader) unit(ctx context.Context, first item) *unit {
	u := &unit{}
	u.add(first)
	for id := first.unit(); id != 0; {
		m, ok := r.next(ctx)
		if !ok {
			break
		}
		if m.err != nil || m.it.unit() != id || (m.it.rw != nil && len(u.lines) > 0) {
			r.ahead = &m
			break
		}
		u.add(m.it)
	}
	return u
}

// unit returns the unit of work the item belongs to, 0 if none.
func (it *item) unit() int64 {
	switch {
	case it.d != nil:
		return it.d.Unit
	case it.rw != nil:
		return it.rw.Unit
	}
	return 0
}

// timeUp reports whether Options.Deadline has passed.
func (a *applier) timeUp() bool {
	return !a.opt.Deadline.IsZero() && !now().Before(a.opt.Deadline)
}

// notStarted is the result of an item the run did not start: skipped, and
// why.
func (a *applier) notStarted(it item, why string) *plan.Result {
	if it.rw != nil {
		return a.rewriteSkipped(it.line, it.rw, errors.New(why))
	}
	d := it.d
	r := &plan.Result{Line: it.line, Len: d.Len, Src: &plan.Loc{Path: d.Src.Path, Off: d.Src.Off}, Status: plan.StatusSkipped, Error: why}
	for _, dst := range d.Dst {
		r.Dst = append(r.Dst, plan.DstResult{Path: dst.Path, Off: dst.Off, Status: plan.DstSkipped})
	}
	return r
}

// failed reports whether r has an item not done.
func failed(r *plan.Result) bool {
	switch r.Status {
	case plan.StatusInvalid, plan.StatusStale, plan.StatusError, plan.StatusDiffers:
		return true
	}
	for _, d := range r.Dst {
		switch d.Status {
		case plan.DstDiffers, plan.DstStale, plan.DstError:
			return true
		}
	}
	return false
}
