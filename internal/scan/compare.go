package scan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
	"same/internal/index"
	"same/internal/safeopen"
	"same/internal/walk"
)

// item is what the walker hands compare: a file met, or the start or the
// end of the walk of root number root.
type item struct {
	e          walk.Entry
	root       int
	begin, end bool
	// adopted, if not zero, is a new snapshot whose files the writer has
	// just recorded from its origin's rows (see scanner.adopt), in a
	// transaction that commits when committed is closed.
	adopted   fsys.Volume
	committed <-chan struct{}
}

// rootLink returns what root points to where it is a symbolic link, which
// hashfile does not follow. A listed path is not looked at (the walk
// skips it), nor one on a mount the walk leaves out, whose server may be
// gone (the walk tells it not walked).
func (s *scanner) rootLink(root string) (string, bool) {
	if s.o.Listed || len(s.mounts.Listed(root)) == 0 {
		return "", false
	}
	to, err := os.Readlink(root)
	return to, err == nil
}

// walk is the walker stage: it walks each root in turn, in path order,
// and sends what it meets to out, which it closes when done. It learns
// the volume of each device it meets (noteDevice) and asks subvols which
// subvolumes to enter; errors go to fail, and a path it could not read
// goes to unread, before anything after that path is sent.
func (s *scanner) walk(out chan<- item) error {
	defer close(out)
	opts := walk.Options{
		Exclude: s.o.Exclude,
		OneFS:   s.o.OneFS,
		Skipped: func(string, string) { s.c.skipped.Add(1) },
		// A path the walk could not read (a directory it cannot list, an
		// entry it cannot lstat) may still hold what the index has: keep it,
		// unless it is gone.
		Error: func(path string, err error) {
			s.fail(path, err, !errors.Is(err, os.ErrNotExist))
		},
		Dir: func(path string, st *unix.Stat_t) {
			s.noteDevice(path, uint64(st.Dev))
			s.noteDir(path, st)
		},
		Enter:      s.sv.enter,
		Files:      s.sv.files,
		Listed:     s.sv.listed,
		DedupeOnly: s.o.DedupeOnly,
		Own:        s.own,
		Mounts:     s.mounts,
		Unwalked:   s.noteUnwalked,
		TempDir:    s.tempDir(),
	}
	send := func(it item) error {
		select {
		case out <- it:
			return nil
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	for i, r := range s.roots {
		if err := send(item{root: i, begin: true}); err != nil {
			return err
		}
		// The files handed over where the walk does not go (see
		// singlesOf), each in its place in path order.
		singles := func(before string) error {
			for _, f := range s.sv.takeSingles(r, before) {
				if e, ok := s.single(f); ok {
					if err := send(item{e: e, root: i}); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if to, ok := s.rootLink(r); ok {
			// Refused, as a symlink above it is (see checkRoots), but as
			// a failed item rather than an error of the run. Skipped with
			// nothing said, as the walk skips the symlinks it meets, it
			// made the run look as if it found nothing to do. What the
			// index holds under it is kept.
			s.fail(r, fmt.Errorf("%s: a symbolic link (to %s), which hashfile does not follow: give the path it points to", r, to), true)
		} else if !s.sv.rootLeft(r) {
			err := walk.Walk(s.ctx, r, opts, func(e walk.Entry) error {
				if err := singles(e.Path); err != nil {
					return err
				}
				s.noteDevice(e.Path, e.Dev) // a root may be a file, met with no Dir call
				return send(item{e: e, root: i})
			})
			if err == nil {
				err = singles("")
			}
			if err != nil {
				return err
			}
		}
		if err := send(item{root: i, end: true}); err != nil {
			return err
		}
	}
	return nil
}

// tempDir is where the walk sorts the listing of a large directory:
// beside the index (a directory that only its owner may read, as the
// names of other users' files should be), or os.TempDir() without one.
func (s *scanner) tempDir() string {
	if s.o.Index == "" {
		return ""
	}
	return filepath.Dir(s.o.Index)
}

// single returns f, a file that the walk did not list (see singlesOf),
// as the walk would have met it: lstat'ed, its path looked up with no
// symlink followed. It reports false for one the walk would have left
// out (empty, excluded, another file or another filesystem there now) or
// could not stat, and one gone since.
func (s *scanner) single(f single) (walk.Entry, bool) {
	h, err := safeopen.Lookup(f.path)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			s.fail(f.path, &os.PathError{Op: "lstat", Path: f.path, Err: err}, true)
		}
		return walk.Entry{}, false
	}
	st := h.Stat
	h.Close()
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 || st.Ino != f.ino ||
		s.devs.of(uint64(st.Dev)) != f.vol || !s.willMeet(f.path) || walk.OwnFile(s.own, f.path) {
		return walk.Entry{}, false
	}
	return walk.Entry{Path: f.path, Stat: fsys.FromStat(&st), Nlink: uint64(st.Nlink)}, true
}

// noteDir has the writer record the directory st the walk enters at path,
// where that is needed (see subvols.dirTo), as lstat'ed before it is
// listed.
func (s *scanner) noteDir(path string, st *unix.Stat_t) {
	v := s.devs.of(uint64(st.Dev))
	if gen, ok := s.sv.dirTo(v); ok {
		s.send(op{dir: &dirMet{vol: v, ino: st.Ino, path: path, ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec, gen: gen}})
	}
}

// compare is the stage that decides, for each file the walker met, what
// to do: nothing (unchanged), record a new path (renamed), record that it
// is another name of a file met already (a hard link), or queue it for
// the readers. It merges the walk of each root, in path order, with the
// rows the index holds under that root, read in path order a page at a
// time (index.Cursor); a row the walk passes without meeting it at its
// path is marked gone for this scan generation, unless it lies where the
// walk could not read or in a subvolume left unwalked. A file met under
// a path the index does not have is looked up by its volume and inode.
//
// It holds no more of the index than a page of rows: files met earlier
// in the run are known from the index, and from inflight for those the
// writer has not committed yet.
func (s *scanner) compare(in <-chan item) error {
	var cur *index.Cursor
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	var seen0 int64
	var err error
	// The adoptions met since the cursor last read: their rows are read
	// once they are committed, before anything else is handled, and the
	// writer is asked to commit them then (see adoption). Until then the
	// walker may record more, in the same transaction.
	var pending []<-chan struct{}
	for it := range in {
		if err != nil || s.ctx.Err() != nil {
			continue // drain, so that the walker never blocks
		}
		if it.adopted != (fsys.Volume{}) {
			s.adopted[it.adopted] = true
			pending = append(pending, it.committed)
			continue
		}
		if len(pending) > 0 {
			s.send(op{flush: true})
			for _, c := range pending {
				select {
				case <-c:
				case <-s.ctx.Done():
				}
			}
			pending = pending[:0]
			if s.ctx.Err() != nil {
				continue
			}
			// Their rows are committed now, maybe after the cursor read
			// past where they are.
			if cur != nil {
				cur.Again()
			}
		}
		switch {
		case it.begin:
			if cur != nil {
				cur.Close()
			}
			cur = s.ix.Under(s.ctx, s.roots[it.root])
			seen0 = s.c.seen.Load()
		case it.end:
			err = s.pass(cur, "")
			s.rootSeen[it.root] = s.c.seen.Load() - seen0
		default:
			if err = s.pass(cur, it.e.Path); err == nil {
				err = s.decide(cur, it.e)
			}
		}
		if err != nil {
			if s.ctx.Err() != nil {
				err = nil // interrupted, not failed
				continue
			}
			s.cancel()
		}
	}
	return err
}

// pass moves cur to path, or to the end if path is "", handling each row
// it passes: files the walk did not meet where the index has them.
func (s *scanner) pass(cur *index.Cursor, path string) error {
	for {
		f, ok := cur.Peek()
		if !ok {
			return cur.Err()
		}
		if path != "" && f.Path >= path {
			return nil
		}
		if top, check, next, ok := s.sv.leftAt(f.Path, f.Vol); ok {
			// In a subvolume left unwalked: its rows are as the index has
			// them, counted, not read, but for those to look at again and
			// those of other volumes, up to the next part of it walked, if
			// any. The walk goes on after it, so path lies beyond (and the
			// skip stops there if not).
			before := path
			if next != "" && (before == "" || next < before) {
				before = next
			}
			check, err := s.checkWithin(f.Vol, check, f.Path, top, before)
			if err != nil {
				return err
			}
			n, rest, err := cur.SkipUnder(top, f.Vol, check, before)
			if err != nil {
				return err
			}
			s.c.seen.Add(n)
			if s.adopted[f.Vol] {
				s.c.fromOriginWhole(n) // recorded in this run from its origin's rows
			} else {
				s.c.unchanged.Add(n)
			}
			for _, o := range rest {
				s.passed(o)
			}
			continue
		}
		cur.Next()
		s.passed(f)
	}
}

// checkWithin returns those of check, the files of volume v to look at
// again in a subvolume left unwalked at top, that the index has from
// path on, below top and before before (if not ""): where a subvolume is
// walked in part, it is skipped a stretch at a time between the parts
// walked, and each skip then asks the index of a few files, not of all.
// Where the index has them is read once; a file the run gave another
// path since is one it met elsewhere, as a walk meets it.
func (s *scanner) checkWithin(v fsys.Volume, check []uint64, path, top, before string) ([]uint64, error) {
	const few = 64
	if len(check) <= few {
		return check, nil
	}
	at, ok := s.checkAt[v]
	if !ok {
		var err error
		if at, err = s.ix.InodePaths(s.ctx, v, check); err != nil {
			return nil, err
		}
		s.checkAt[v] = at
	}
	hi := index.SkipEnd(top, before)
	i, _ := slices.BinarySearchFunc(at, path, func(p index.InodePath, path string) int { return strings.Compare(p.Path, path) })
	var out []uint64
	for ; i < len(at) && at[i].Path < hi; i++ {
		out = append(out, at[i].Ino)
	}
	return out, nil
}

// passed handles f, a row the walk did not meet where the index has it.
func (s *scanner) passed(f index.Listed) {
	left, check := s.sv.under(f.Path, f.Vol, f.Ino)
	switch {
	case check && s.asRecorded(f):
		// Its extent items lie in a leaf written since, as recorded.
		s.c.seen.Add(1)
		s.c.listed.Add(1)
		if s.adopted[f.Vol] && f.Changed > s.seq {
			s.c.fromOrigin(f.Size) // recorded in this run from its origin's row
		} else {
			s.c.unchanged.Add(1)
		}
	case check:
		s.recheck(f)
	case left:
		// In a subvolume left unwalked: as the index has it.
		s.c.seen.Add(1)
		s.c.unchanged.Add(1)
		if f.Gone != 0 {
			s.send(op{unmark: f.ID}) // marked by a run that did not complete
		}
	case s.unread.under(f.Path):
		// Where the walk could not read: kept.
	default:
		if path, ok := s.sv.nameLeft(f); ok {
			s.elsewhere(f, path)
			return
		}
		s.markGone(f)
	}
}

// elsewhere handles f, a row the walk did not meet at its path, whose
// inode has another name at path, where the walk does not go (see
// subvols.nameLeft): as if the walk had met it there.
func (s *scanner) elsewhere(f index.Listed, path string) {
	h, err := safeopen.Lookup(path) // no symlink followed, as the walk
	if err != nil {
		s.fail(path, &os.PathError{Op: "lstat", Path: path, Err: err}, true)
		return
	}
	st := h.Stat
	h.Close()
	e := walk.Entry{Path: path, Stat: fsys.FromStat(&st), Nlink: uint64(st.Nlink)}
	k := key{f.Vol, f.Ino}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != f.Ino || s.devs.of(e.Dev) != f.Vol || st.Size == 0 || !s.willMeet(path):
		s.markGone(f) // replaced since, empty, or where the walk would not go
	case s.inflight.has(k):
		s.c.seen.Add(1)
		s.c.links.Add(1) // met before in this run
	default:
		s.c.seen.Add(1)
		s.movedTo(f, e, f.Vol, k)
	}
}

// asRecorded reports whether f, a row in a subvolume left unwalked, is
// the file as it is, as the tree search shows (see subvols.asRecorded),
// without a look at it: what asListed asks of a file met as listed. In a
// snapshot whose rows were recorded from its origin's, that holds as
// well: the origin's walk was over before the snapshot was made, and
// its row of a file whose inode item lies in no leaf written since the
// walk began holds the file as it was all along (see subvols.origin).
func (s *scanner) asRecorded(f index.Listed) bool {
	return f.Gone == 0 && f.UID != index.UIDUnknown && f.NoCOW != index.NoCOWUnknown &&
		s.sv.asRecorded(f.Vol, f.Ino, f.Items)
}

// recheck looks again at f, a file whose items changed in a subvolume
// left unwalked because none of its directories changed (see
// subvols.decide): the path the index has still leads to it, and it is
// handled as if the walk had met it there.
func (s *scanner) recheck(f index.Listed) {
	if s.inflight.has(key{f.Vol, f.Ino}) {
		return // met in this run under another name (see elsewhere)
	}
	var st unix.Stat_t
	if err := unix.Lstat(f.Path, &st); err != nil {
		s.fail(f.Path, &os.PathError{Op: "lstat", Path: f.Path, Err: err}, true)
		return
	}
	e := walk.Entry{Path: f.Path, Stat: fsys.FromStat(&st), Nlink: uint64(st.Nlink)}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != f.Ino || s.devs.of(e.Dev) != f.Vol:
		s.fail(f.Path, fmt.Errorf("%s: %w", f.Path, walk.ErrReplaced), true)
	case st.Size == 0:
		s.c.skipped.Add(1) // as the walk skips empty files
		s.markGone(f)
	default:
		s.c.seen.Add(1)
		s.met(f, e, f.Vol, key{f.Vol, f.Ino}, false)
	}
}

func (s *scanner) markGone(f index.Listed) {
	s.send(op{gone: &gone{id: f.ID, path: f.Path}})
}

// send hands o to the writer, unless the run is interrupted.
func (s *scanner) send(o op) {
	select {
	case s.ops <- o:
	case <-s.ctx.Done():
	}
}

// decide handles the file e, met at the position of cur.
func (s *scanner) decide(cur *index.Cursor, e walk.Entry) error {
	if e.Listed {
		if s.asListed(cur, e) {
			return nil
		}
		var ok bool
		if e, ok = s.stat(e); !ok {
			return nil
		}
		// Listed with its directory's device, it may be on another: a
		// file mounted over the one listed, from a filesystem the walk
		// has not entered yet.
		s.noteDevice(e.Path, e.Dev)
	}
	s.c.seen.Add(1)
	vol := s.devs.of(e.Dev)
	k := key{vol, e.Ino}
	at, here := cur.Peek()
	if here = here && at.Path == e.Path; here {
		cur.Next()
		if !sameInode(at.File, vol, e) {
			s.markGone(at) // another file took its path
			here = false
		}
	}
	switch {
	case s.inflight.has(k):
		s.c.links.Add(1) // met before in this run
		return nil
	case here:
		s.met(at, e, vol, k, false)
		return nil
	}
	// Not recorded at this path: a new file, another name of a file
	// recorded under its first, or a file renamed. In an index that held
	// no file when the run started, only a hard link can be recorded
	// already (by this run); nor, in one that held no file of its volume
	// (a new snapshot, whose files are then not each looked up in vain),
	// where a snapshot's file may still take an older snapshot's row
	// (queueNew).
	// A file met again under another mount of that volume, once the
	// first is committed, is recorded again under the later name (the
	// next run finds the other name a link).
	if e.Nlink <= 1 {
		if s.empty {
			return s.queueNew(e, vol, k)
		}
		fresh, err := s.newVolume(vol)
		if err != nil {
			return err
		}
		if fresh {
			return s.queueNew(e, vol, k)
		}
	}
	f, ok, err := s.lookup(vol, e)
	switch {
	case err != nil:
		return err
	case !ok:
		return s.queueNew(e, vol, k)
	case f.Path == e.Path:
		s.met(f, e, vol, k, true) // recorded here after the page was read
	case f.Path != "" && s.willMeet(f.Path) && sameFile(f.Path, e):
		// Its recorded name is still its own, and the walk meets it
		// there (or met it), where it is compared.
		s.c.links.Add(1)
	default:
		s.movedTo(f, e, vol, k)
	}
	return nil
}

// movedTo handles e, the file of volume vol the index records as f under
// another path that no longer leads to it (or lies out of this walk):
// renamed, which changes ctime, not the data, or another name of a file
// whose recorded name is gone; read again where its size or mtime
// changed.
func (s *scanner) movedTo(f index.Listed, e walk.Entry, vol fsys.Volume, k key) {
	s.moved.add(vol, f.Path, e.Path)
	if f.Size != e.Size || f.Mtime != e.Mtime {
		s.queue(e, vol, k) // recorded again under this path
		return
	}
	s.c.unchanged.Add(1)
	s.c.renamed.Add(1)
	s.inflight.add(k)
	s.send(op{rename: &index.File{Path: e.Path, Identity: e.Identity(vol), UID: int64(e.UID)}})
	s.queueAttr(e, vol, f)
}

// asListed takes e, a file met as listed (see subvols.listed), for
// unchanged when cur is at its row, which has its volume and inode
// number, is not marked gone (by a run that did not complete), has its
// owner and NOCOW attribute, and describes an inode whose items are as
// the row records them (subvols.asRecorded); and nothing is mounted on
// it, which the listing would not show. Such an inode cannot have been
// met before in this run under another name: that name would have been
// found a link to the row's path.
func (s *scanner) asListed(cur *index.Cursor, e walk.Entry) bool {
	f, ok := cur.Peek()
	if !ok || f.Path != e.Path || s.sv.mountedOn(e.Path) {
		return false
	}
	vol := s.devs.of(e.Dev)
	if f.Vol != vol || f.Ino != e.Ino || f.Gone != 0 || f.UID == index.UIDUnknown || f.NoCOW == index.NoCOWUnknown ||
		!s.sv.asRecorded(vol, e.Ino, f.Items) {
		return false
	}
	cur.Next()
	s.c.seen.Add(1)
	s.c.listed.Add(1)
	if s.adopted[vol] && f.Changed > s.seq {
		s.c.fromOrigin(f.Size) // recorded in this run from its origin's row
	} else {
		s.c.unchanged.Add(1)
	}
	return true
}

// stat returns e, a file met as listed that asListed did not take, as
// the walk would have met it: lstat'ed, the path looked up with no
// symlink followed. It reports false, having counted it, for one that
// the walk would have skipped or could not stat, and one gone since.
func (s *scanner) stat(e walk.Entry) (walk.Entry, bool) {
	h, err := safeopen.Lookup(e.Path)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) { // gone since the listing: nothing to do
			s.fail(e.Path, &os.PathError{Op: "lstat", Path: e.Path, Err: err}, true)
		}
		return e, false
	}
	st := h.Stat
	h.Close()
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		s.c.skipped.Add(1) // replaced since the listing, or empty
		return e, false
	}
	return walk.Entry{Path: e.Path, Stat: fsys.FromStat(&st), Nlink: uint64(st.Nlink)}, true
}

// met handles e, a file the index records at its path as f: unchanged,
// or to be read again. unmark clears a gone mark that f may have in the
// index but not in what was read of it.
func (s *scanner) met(f index.Listed, e walk.Entry, vol fsys.Volume, k key, unmark bool) {
	if f.Size != e.Size || f.Mtime != e.Mtime || f.Ctime != e.Ctime {
		s.queue(e, vol, k)
		return
	}
	if s.adopted[vol] && f.Changed > s.seq {
		s.c.fromOrigin(f.Size) // recorded in this run from its origin's row
	} else {
		s.c.unchanged.Add(1)
	}
	if f.Gone != 0 || unmark {
		s.send(op{unmark: f.ID}) // marked by a run that did not complete
	}
	if f.UID == index.UIDUnknown {
		s.send(op{uid: &attr{id: f.ID, uid: e.UID}})
	}
	s.queueAttr(e, vol, f)
}

// queue hands e to the readers to be read and recorded.
func (s *scanner) queue(e walk.Entry, vol fsys.Volume, k key) {
	s.inflight.add(k)
	s.c.toRead.Add(e.Size)
	select {
	case s.jobs <- job{path: e.Path, vol: vol, id: e.Stat}:
	case <-s.ctx.Done():
	}
}

// queueNew queues e, met under a path and an inode that the index does
// not have, to be read. In a snapshot made since the last complete walk
// of the subvolume it was taken from (see subvols.origin), where that
// subvolume's row of the inode has e's identity, the data is the one that
// row's sums describe: where the extents are the row's too, the writer
// copies the row; otherwise a reader reads the file's extent items and
// takes the row's sums (see fromOrigin). Ops reach the writer in the
// order sent, and none of that subvolume's files queued in this run is
// used, so the row copied is the one compared here.
func (s *scanner) queueNew(e walk.Entry, vol fsys.Volume, k key) error {
	o, ok, extentsChanged := s.sv.originOf(vol, e.Ino)
	if !ok || s.inflight.has(key{o.vol, e.Ino}) {
		s.queue(e, vol, k)
		return nil
	}
	f, found, err := s.ix.FileByInode(s.ctx, o.vol, e.Ino)
	if err != nil {
		return err
	}
	if !found || f.Size != e.Size || f.Mtime != e.Mtime || f.Ctime != e.Ctime || f.NoCOW != index.NoCOWUnset {
		s.queue(e, vol, k)
		return nil
	}
	s.inflight.add(k)
	if extentsChanged {
		s.c.toRead.Add(e.Size)
		select {
		case s.jobs <- job{path: e.Path, vol: vol, id: e.Stat, sumsOf: f.ID, sumsSeq: f.Changed, items: f.Items, origin: o.vol, top: o.top}:
		case <-s.ctx.Done():
		}
		return nil
	}
	s.send(op{copy: &copied{from: f.ID, changed: f.Changed, file: index.File{Path: e.Path, Identity: e.Identity(vol), NoCOW: index.NoCOWUnset, UID: int64(e.UID)}}})
	return nil
}

// queueAttr hands e, an unchanged file recorded as f, to the readers
// where there is something to record of it: its NOCOW attribute, when
// not known, and its extents, where they may have changed since they
// were recorded (see subvols.changes); where only the extent items the
// tree search found can differ (see subvols.movedOnly) and the NOCOW
// attribute is known, those are compared with the record first.
func (s *scanner) queueAttr(e walk.Entry, vol fsys.Volume, f index.Listed) {
	j := job{path: e.Path, vol: vol, id: e.Stat, attrOf: f.ID, remap: s.sv.extentsChanged(vol, e.Ino), items: f.Items}
	if !j.remap && f.NoCOW != index.NoCOWUnknown {
		return
	}
	if j.remap && f.NoCOW != index.NoCOWUnknown {
		j.moved, j.verify = s.sv.movedOnly(vol, e.Ino)
		if j.verify && f.Items != 0 && index.ItemsDigest(j.moved) == f.Items {
			return // all its items are in moved, as recorded
		}
	}
	select {
	case s.jobs <- j:
	case <-s.ctx.Done():
	}
}

// lookup returns what the index holds of the inode of e, on volume vol
// or, recorded by an older index, under its st_dev (which the writer
// renames to vol once it has recorded the volume).
func (s *scanner) lookup(vol fsys.Volume, e walk.Entry) (index.Listed, bool, error) {
	f, ok, err := s.ix.FileByInode(s.ctx, vol, e.Ino)
	if err != nil || ok || index.Legacy(vol) || !s.legacy {
		return f, ok, err
	}
	return s.ix.FileByInode(s.ctx, index.LegacyVolume(e.Dev), e.Ino)
}

// sameInode reports whether f, recorded by the index, is the inode of e,
// met on volume vol.
func sameInode(f index.File, vol fsys.Volume, e walk.Entry) bool {
	return f.Ino == e.Ino && (f.Vol == vol || f.Vol == index.LegacyVolume(e.Dev))
}

// newVolume reports whether the index held no file of volume v when the
// run started. It asks the index the first time, before compare sends
// anything about a file of v (the first file of v that is neither at the
// cursor's row nor in flight asks), and remembers the answer.
func (s *scanner) newVolume(v fsys.Volume) (bool, error) {
	if s.legacy {
		return false, nil // its files may be recorded by st_dev
	}
	fresh, ok := s.newVols[v]
	if !ok {
		has, err := s.ix.HasFilesOn(s.ctx, v)
		if err != nil {
			return false, err
		}
		fresh = !has
		s.newVols[v] = fresh
	}
	return fresh, nil
}

// willMeet reports whether this run's walk goes through path.
func (s *scanner) willMeet(path string) bool {
	return underAny(path, s.roots) && !walk.Matches(s.o.Exclude, path)
}

// sameFile reports whether path still leads to the file of e.
func sameFile(path string, e walk.Entry) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && uint64(st.Dev) == e.Dev && st.Ino == e.Ino
}

// inflight holds the files met in this run whose rows the writer has not
// committed yet: compare adds each file it queues or renames, and the
// writer drops it once committed (or once a reader gave up on it). What
// compare does not find here, the index has. It holds at most what the
// channels and one batch of the writer hold, not the whole run.
type inflight struct {
	mu sync.Mutex
	m  map[key]int // a count: a file may be queued again once dropped
}

func (f *inflight) add(k key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[key]int)
	}
	f.m[k]++
}

func (f *inflight) has(k key) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[k] > 0
}

func (f *inflight) drop(keys []key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if f.m[k]--; f.m[k] <= 0 {
			delete(f.m, k)
		}
	}
}
