package scan

import (
	"cmp"
	"hash/fnv"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
)

// Files are read in the order their data lies on the device, as far as a
// window of them allows, rather than in the order the walk meets them
// (by name): on the mixed tree of scripts/bench, whose files' data lies
// in another order than their names, a cold hashfile took 1.43 s where
// it took 2.00 s by name (medians of 10; docs/BENCHMARKS.md, "Files read
// in the order they lie on the disk"). Placers open each file to be
// read, as a reader would (openToHash), and look up where its data
// begins: its first extent item on btrfs where the tree search is
// allowed (read then anyway), else its first extent (FIEMAP). The
// elevator hands the readers the placed file at or after the one handed
// out last, and wraps around to the lowest at the end; jobs that read no
// data (attributes, a snapshot's file taking its origin's sums), large
// files (see largeFile), files it could not place and those that failed
// to open go first.

// place is where the data of a job's file begins: its filesystem (a
// hash of its ID: the subvolumes of a btrfs, each a device of its own,
// share the addresses of one), and the address there (now for a job to
// be handed out first).
type place struct {
	fs uint64
	at int64
}

// now is the place of jobs handed out first.
var now = place{at: -1}

func (p place) compare(q place) int {
	return cmp.Or(cmp.Compare(p.fs, q.fs), cmp.Compare(p.at, q.at))
}

type placed struct {
	p place
	j job
}

// elevator holds the jobs between the placers and the readers, at most
// window of them (each may hold an open file).
type elevator struct {
	mu          sync.Mutex
	ready, room sync.Cond
	first       []job    // handed out first, in the order put
	placed      []placed // by place, then in the order put
	last        place    // of the placed job handed out last
	window      int
	closed      bool
	// hold, for tests, hands nothing out until closed.
	hold bool
}

func newElevator(window int) *elevator {
	e := &elevator{window: max(1, window)}
	e.ready.L, e.room.L = &e.mu, &e.mu
	return e
}

// put adds j, whose file's data begins at p, waiting while the elevator
// is full. A job placed where one held already is goes first: its file
// shares its data (a snapshot's or a reflinked copy), which the reader
// of either hashes once (see reuser), and two readers taking them one
// after the other would have the second wait for the first.
func (e *elevator) put(j job, p place) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.first)+len(e.placed) >= e.window && !e.hold {
		e.room.Wait()
	}
	i, found := slices.BinarySearchFunc(e.placed, p, func(x placed, p place) int { return x.p.compare(p) })
	if p == now || found {
		e.first = append(e.first, j)
	} else {
		e.placed = slices.Insert(e.placed, i, placed{p, j})
	}
	e.ready.Signal()
}

// take returns the next job, waiting for one; false once the elevator is
// closed and empty.
func (e *elevator) take() (job, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for !e.closed && (e.hold || len(e.first)+len(e.placed) == 0) {
		e.ready.Wait()
	}
	e.room.Signal()
	if len(e.first) > 0 {
		j := e.first[0]
		e.first[0] = job{}
		e.first = e.first[1:]
		return j, true
	}
	if len(e.placed) == 0 {
		return job{}, false
	}
	i, _ := slices.BinarySearchFunc(e.placed, e.last, func(x placed, p place) int { return x.p.compare(p) })
	if i == len(e.placed) {
		i = 0
	}
	x := e.placed[i]
	e.placed = slices.Delete(e.placed, i, i+1)
	e.last = x.p
	return x.j, true
}

// close lets take return false once the elevator is empty.
func (e *elevator) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.ready.Broadcast()
}

// holdReads, set by tests, has the readers start once every job is
// placed: the order they read in is then the elevator's alone.
var holdReads bool

// windowSize is how many jobs the elevator holds: an eighth of the open
// files allowed (each job held may hold one), from 16 to 1,024.
func windowSize() int {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 16
	}
	return int(min(1024, max(16, l.Cur/8)))
}

// place is a placer: it takes the jobs compare queues until it closes
// them, opens the files to be read (see openToHash) and puts them in e
// with where their data begins. Once the run is interrupted it passes
// them on unopened, for the readers to drain.
func (s *scanner) place(e *elevator) {
	for j := range s.jobs {
		if s.ctx.Err() != nil || !toPlace(j) {
			e.put(j, now)
			continue
		}
		j.opened = openToHash(j, s.ru != nil)
		p := placeOf(j.opened, fsKey(j.vol.FS))
		if o := j.opened; len(o.items) > heldItems {
			o.items, o.itemsErr, o.itemsRead = nil, nil, false // read again by hash
		}
		e.put(j, p)
	}
}

// heldItems is how many extent items a job in the elevator keeps for its
// reader, at most: 32 KiB, so that a window of fragmented files holds
// 32 MiB at most. A file with more has them read again by its reader.
const heldItems = 512

// largeFile is the size from which a file goes first rather than placed:
// it takes so long to read that the way to its start hardly counts, and
// read last it would be read alone, the other readers idle. On the
// images tree of scripts/bench (two disk images of 950 MB among small
// files), a cold hashfile took a median 1.44 s with them first against
// 1.68 s with them placed (12 rounds in turn).
const largeFile = 256 << 20

// toPlace reports whether j is placed by where its file's data begins:
// a file to be read, neither empty nor large (see largeFile).
func toPlace(j job) bool {
	return j.attrOf == 0 && j.sumsOf == 0 && j.id.Size > 0 && j.id.Size < largeFile
}

// fsKey is the key of filesystem id in a place.
func fsKey(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// placeOf is where the data of the file o opened begins in filesystem fs:
// its first extent item with data on disk where its items were read,
// else its first extent as FIEMAP tells it, if that lies on the device
// (not inline, not yet allocated); else now.
func placeOf(o *opened, fs uint64) place {
	if o.err != nil {
		return now
	}
	if o.items != nil {
		for _, it := range o.items {
			if it.DiskStart != 0 {
				return place{fs, it.DiskStart}
			}
		}
		return now
	}
	e, ok, err := fiemap.First(o.f)
	const elsewhere = fiemap.FlagUnknown | fiemap.FlagDelalloc | fiemap.FlagDataInline | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted
	if err != nil || !ok || e.Flags&elsewhere != 0 {
		return now
	}
	return place{fs, e.Physical}
}
