package scan

import (
	"context"
	"fmt"
	"time"

	"same/internal/fsys"
	"same/internal/index"
)

// Batches are committed when they hold this many files or sum bytes, or
// after this long, whichever comes first.
const (
	batchFiles = 2000
	batchBytes = 32 << 20
	batchTime  = time.Second
)

// adoptRows is how many rows the adoptions of one batch may record before
// it is committed: it holds them until compare asks (see adoption), and
// the write-ahead log grows with them, 300 bytes or so a row.
const adoptRows = 1 << 18

// pruneBatch is how many files one transaction of the prune removes.
const pruneBatch = 2000

// batch is the writer's open transaction and what it holds.
type batch struct {
	tx     *index.Tx
	n      int // ops
	bytes  int // sum bytes
	opened time.Time
	puts   []op  // ru drops their sums once committed
	keys   []key // inflight drops them once committed
	adopts []*adoption
	rows   int64 // recorded by the adoptions
}

// write is the writer: the one goroutine that writes the index. It
// records the ops the other stages send, in the order it receives them,
// in batched transactions, until ops is closed. Once a write fails, it
// cancels the run (the rest of the tree would be read for nothing) and
// drains ops, so that no sender blocks; the error is returned.
func (s *scanner) write() error {
	var b batch
	var err error
	// ended tells each adoption of the batch that its transaction ended
	// (see adoption).
	ended := func() {
		for _, a := range b.adopts {
			close(a.committed)
		}
		b.adopts = b.adopts[:0]
	}
	commit := func() {
		err = b.tx.Commit()
		ended()
		for _, o := range b.puts {
			s.ru.drop(o.put.Vol.FS, o.ext, o.sums)
		}
		s.inflight.drop(b.keys)
		b = batch{puts: b.puts[:0], keys: b.keys[:0], adopts: b.adopts}
	}
	for o := range s.ops {
		if err != nil {
			if o.adopt != nil {
				o.adopt.done <- index.Adopted{}
				close(o.adopt.committed)
			}
			continue // drain, so senders never block
		}
		switch {
		case o.flush:
			if b.tx != nil {
				commit()
			}
		case o.prune:
			if b.tx != nil {
				commit()
			}
			if err == nil {
				err = s.prune()
			}
		case b.tx == nil:
			if b.tx, err = s.ix.Begin(context.Background()); err != nil {
				break
			}
			b.opened = time.Now()
			fallthrough
		default:
			if err = s.apply(&b, o); err != nil {
				err = fmt.Errorf("record %s: %w", o.item(), err)
			}
			b.n++
			// A batch that holds adoptions waits for compare to ask
			// (flush) rather than for the time: the walker may record
			// more into it meanwhile.
			if err == nil && (b.n >= batchFiles || b.bytes >= batchBytes || b.rows >= adoptRows ||
				(len(b.adopts) == 0 && time.Since(b.opened) >= batchTime)) {
				commit()
			}
		}
		if err != nil {
			s.cancel()
		}
	}
	if b.tx != nil {
		if err != nil {
			b.tx.Rollback()
			ended()
			return err
		}
		commit()
	}
	return err
}

// item names what o records, for an error.
func (o op) item() string {
	switch {
	case o.put != nil:
		return o.put.Path
	case o.copy != nil:
		return o.copy.file.Path
	case o.rename != nil:
		return o.rename.Path
	case o.adopt != nil:
		return o.adopt.toTop
	}
	return "the walk's progress"
}

// apply records o in the open batch.
func (s *scanner) apply(b *batch, o op) error {
	tx := b.tx
	switch {
	case o.put != nil:
		s.ru.record(o.put.Vol.FS, o.ext)
		_, err := tx.Put(*o.put, o.sums, o.ext)
		b.bytes += len(o.sums)
		b.puts = append(b.puts, o)
		b.keys = append(b.keys, key{o.put.Vol, o.put.Ino})
		return err
	case o.copy != nil:
		f := o.copy.file
		b.keys = append(b.keys, key{f.Vol, f.Ino})
		s.ru.record(f.Vol.FS, o.ext)
		ok, err := tx.Copy(o.copy.from, o.copy.changed, f, o.ext)
		switch {
		case err != nil:
			return err
		case ok:
			s.c.fromOrigin(f.Size)
		default:
			s.fail(f.Path, fmt.Errorf("%s: %w", f.Path, ErrChanged), false)
		}
	case o.adopt != nil:
		a := o.adopt
		b.adopts = append(b.adopts, a)
		if s.marked == nil {
			s.marked = make(map[fsys.Volume]bool)
		}
		got, err := tx.Adopt(a.from, a.to, a.fromTop, a.toTop, s.seq, s.maxID, s.gen, a.withGone, !s.marked[a.from])
		a.known = make(map[uint64]bool)
		if err == nil && got.Files > 0 {
			s.marked[a.from] = true
			if len(a.ask) > 0 {
				var at []index.InodePath
				at, err = tx.InodePaths(a.to, a.ask)
				for _, p := range at {
					a.known[p.Ino] = true
				}
			}
		}
		if err != nil {
			got = index.Adopted{}
		}
		b.rows += got.Files
		a.done <- got // the walker goes on; compare waits for committed
		return err
	case o.rename != nil:
		b.keys = append(b.keys, key{o.rename.Vol, o.rename.Ino})
		return tx.Rename(*o.rename)
	case o.forget != nil:
		b.keys = append(b.keys, *o.forget)
	case o.gone != nil:
		return tx.MarkGone(o.gone.id, o.gone.path, s.gen)
	case o.unmark != 0:
		return tx.Unmark(o.unmark)
	case o.keep != "":
		return tx.KeepUnder(o.keep, s.gen)
	case o.keepFS != nil:
		n, err := tx.KeepUnmet(s.gen, o.keepFS)
		s.c.keptUnmet.Add(n)
		return err
	case o.distrust != "":
		return tx.Distrust(o.distrust)
	case o.volume != nil:
		return tx.PutVolume(o.volume.info, o.volume.dev)
	case o.attr != nil:
		if o.attr.remapped {
			// Not recorded (record): a file known before, so the index
			// held its filesystem's extents when the run began, unless it
			// held them without keys; then they are read once more.
			if err := tx.SetExtents(o.attr.id, o.attr.ext); err != nil {
				return err
			}
		}
		return tx.SetNoCOW(o.attr.id, o.attr.nocow)
	case o.uid != nil:
		return tx.SetUID(o.uid.id, o.uid.uid)
	case o.root != nil:
		if err := tx.PutRoot(o.root.path, o.root.vol, o.root.files, o.root.walked); err != nil || o.root.walked == "" {
			return err
		}
		return tx.SetRetries(o.root.vol, o.root.path, o.root.retry)
	case o.walked != nil:
		if err := tx.SetWalked(o.walked.vol, o.walked.key); err != nil {
			return err
		}
		return tx.SetRetries(o.walked.vol, "", o.walked.retry)
	case o.dir != nil:
		return tx.PutDir(o.dir.vol, o.dir.ino, o.dir.path, o.dir.ctime, o.dir.gen)
	case o.pruneDirs != nil:
		return tx.PruneDirs(o.pruneDirs.vol, o.pruneDirs.path, o.pruneDirs.gen)
	}
	return nil
}

// prune removes what this run found gone, a batch at a time, counting
// them in Stats.Pruned up to Stats.ToPrune. An interrupt stops it
// between batches: what is left is marked with this generation only, and
// the next run finds it gone again.
func (s *scanner) prune() error {
	n, err := s.ix.CountGone(context.Background(), s.gen)
	if err != nil {
		return err
	}
	s.c.toPrune.Store(n)
	for s.ctx.Err() == nil {
		tx, err := s.ix.Begin(context.Background())
		if err != nil {
			return err
		}
		k, err := tx.PruneGone(s.gen, pruneBatch)
		if err == nil && k < pruneBatch {
			err = tx.PruneRetries()
		}
		if err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		s.c.pruned.Add(int64(k))
		if k < pruneBatch {
			return nil
		}
	}
	return nil
}
