package apply

import (
	"container/list"
	"os"
	"sync"

	"same/internal/dedupe"
	"same/internal/fsys"
	"same/internal/plan"
)

// maxIdle is how many files handles keeps open that no line is using.
const maxIdle = 64

// handles keeps open the files that lines open, so that a line on a file
// that a line just before it opened does not look its path up and open
// it again: a plan names few files many times over (the mixed tree's
// plan, 14,455 sides of lines in 798 files), and each safe open costs a
// lookup of the path with no symlink followed and a reopen of what it
// found. A file is known by its path and the identity the plan gives it:
// the one dedupe.OpenStat checked when it was opened. Taken again, it is
// checked again by fstat, which sees a change of size or mtime since; a
// rename or an unlink of its path meanwhile goes unseen, as it would
// between an open and the ioctl: the file used is still the one the plan
// names. Safe for use by the lines in flight at once.
type handles struct {
	mu   sync.Mutex
	byID map[handleKey]*handle
	byF  map[*os.File]*handle
	idle *list.List // of *handle no line uses, least recently released first
}

type handleKey struct {
	path string
	id   fsys.Identity
}

type handle struct {
	key  handleKey
	f    *os.File
	refs int
	at   *list.Element // in idle, while refs is 0
}

func newHandles() *handles {
	return &handles{byID: make(map[handleKey]*handle), byF: make(map[*os.File]*handle), idle: list.New()}
}

// open returns r's file, opened read-only and checked against the
// identity r gives, and its stat; release gives it back.
func (hs *handles) open(r plan.Range) (*os.File, fsys.Stat, error) {
	key := handleKey{r.Path, r.Identity}
	hs.mu.Lock()
	if h := hs.byID[key]; h != nil {
		hs.take(h)
		hs.mu.Unlock()
		st, err := dedupe.Recheck(h.f, r.Identity)
		if err != nil {
			hs.release(h.f, true)
			return nil, st, err
		}
		return h.f, st, nil
	}
	hs.mu.Unlock()
	f, st, err := dedupe.OpenStat(r.Path, r.Identity)
	if err != nil {
		return nil, st, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h := hs.byID[key]; h != nil { // opened meanwhile by another line
		f.Close()
		hs.take(h)
		return h.f, st, nil
	}
	h := &handle{key: key, f: f, refs: 1}
	hs.byID[key], hs.byF[f] = h, h
	return f, st, nil
}

// take counts one more user of h. hs.mu is held.
func (hs *handles) take(h *handle) {
	if h.refs == 0 {
		hs.idle.Remove(h.at)
		h.at = nil
	}
	h.refs++
}

// release gives back a file open returned; drop closes it once no line
// uses it (it changed). The least recently used of those no line uses
// are closed beyond maxIdle.
func (hs *handles) release(f *os.File, drop bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.byF[f]
	if h == nil {
		return
	}
	if drop && hs.byID[h.key] == h {
		delete(hs.byID, h.key) // not found again; closed below when unused
	}
	if h.refs--; h.refs > 0 {
		return
	}
	if drop || hs.byID[h.key] != h {
		hs.close(h)
		return
	}
	h.at = hs.idle.PushBack(h)
	for hs.idle.Len() > maxIdle {
		old := hs.idle.Remove(hs.idle.Front()).(*handle)
		old.at = nil
		delete(hs.byID, old.key)
		hs.close(old)
	}
}

// close closes h, which no line uses. hs.mu is held.
func (hs *handles) close(h *handle) {
	delete(hs.byF, h.f)
	h.f.Close()
}

// closeAll closes every file no line uses: at the end of a run.
func (hs *handles) closeAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for hs.idle.Len() > 0 {
		h := hs.idle.Remove(hs.idle.Front()).(*handle)
		delete(hs.byID, h.key)
		hs.close(h)
	}
}
