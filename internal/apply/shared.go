package apply

import (
	"os"
	"sync/atomic"

	"same/internal/fiemap"
)

// notProven are the extents whose FIEMAP physical offset does not say
// where each byte lies (compressed: the extent's start for all of it) or
// that hold no shareable data yet.
const notProven = fiemap.FlagEncoded | fiemap.FlagDataInline | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// sharesStorage reports whether the n bytes at doff of the file with
// extents dext already lie, byte for byte, where the n bytes at soff of
// the file with extents sext lie: they share storage, and the kernel's
// compare, which would read both ranges, can be spared (a plan applied
// again, say). It says false when FIEMAP cannot prove it.
func sharesStorage(sext []fiemap.Extent, soff int64, dext []fiemap.Extent, doff, n int64) bool {
	for pos := int64(0); pos < n; {
		se, ok := fiemap.At(sext, soff+pos)
		if !ok || se.Flags&notProven != 0 {
			return false
		}
		de, ok := fiemap.At(dext, doff+pos)
		if !ok || de.Flags&notProven != 0 {
			return false
		}
		if se.Physical+(soff+pos-se.Logical) != de.Physical+(doff+pos-de.Logical) {
			return false
		}
		pos += min(se.End()-(soff+pos), de.End()-(doff+pos))
	}
	return n > 0
}

// extentsIn returns f's FIEMAP extents holding the n bytes at off, or nil
// when they cannot be read.
func extentsIn(f *os.File, off, n int64) []fiemap.Extent {
	ext, err := fiemap.ExtentsIn(f, off, n)
	if err != nil {
		return nil
	}
	return ext
}

// Looking at a destination for storage it shares with its source already
// (FIEMAP of both ranges: see sharesStorage) spares the kernel's compare,
// which reads both, where a plan is applied again. Where it is applied
// for the first time, nothing is found, and the looks cost FIEMAP's walk
// of the references to each extent (12 to 14% of applysame's CPU on a
// tree of mixed files, a fifth of its time on 100,000 small files). So
// after lookMisses looks in a row found nothing shared, one destination in
// lookEvery is looked at, until one is found shared. A destination not
// looked at is compared and shared by the kernel, shared already or not:
// the outcome is the same.
const (
	lookMisses = 64
	lookEvery  = 16
)

// looks counts the looks of a run; the lines in flight share it.
type looks struct {
	misses atomic.Int64 // looks in a row that found nothing shared
	skips  atomic.Int64 // destinations not looked at since the last look
}

// want reports whether the next destination is looked at.
func (l *looks) want() bool {
	if l.misses.Load() < lookMisses {
		return true
	}
	if l.skips.Add(1) < lookEvery {
		return false
	}
	l.skips.Store(0)
	return true
}

// saw counts a look's outcome.
func (l *looks) saw(shared bool) {
	if shared {
		l.misses.Store(0)
		return
	}
	l.misses.Add(1)
}
