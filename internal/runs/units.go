package runs

import (
	"container/heap"
	"slices"

	"same/internal/fiemap"
)

// rewritten holds the extents of the rewrites of each file, with their
// rank in ws.
type rewritten map[int][]rewrittenExtent

type rewrittenExtent struct {
	lo, hi int64
	rank   int
}

func newRewritten(ws []rewriteAt) rewritten {
	rw := make(rewritten)
	for k, w := range ws {
		rw[w.fi] = append(rw[w.fi], rewrittenExtent{w.w.File.Off, w.w.File.Off + w.w.Len, k})
	}
	return rw
}

// each calls fn with the rank of every rewrite whose extent overlaps n
// bytes at off of file fi.
func (rw rewritten) each(fi int, off, n int64, fn func(rank int)) {
	for _, e := range rw[fi] {
		if e.lo < off+n && off < e.hi {
			fn(e.rank)
		}
	}
}

// destinationCost is what each destination of a line, and each rewrite,
// costs applysame beyond the bytes it compares or writes, in bytes: the
// time to open and check the files and make the calls is that of reading
// about this much.
const destinationCost = 256 << 10

// fileCost is what each file a unit opens costs applysame beyond that,
// in bytes: opening a file not opened before and reading its first
// blocks cold take as long as reading about this much in sequence.
// Measured on a loop-mounted btrfs, cold: units of small files, a file
// each, ran at 2.5 ms a destination; those of hundreds of destinations
// in a few large files, at 0.3 ms.
const fileCost = 2 << 20

// unit is a unit of work (plan.Dedupe.Unit): what applysame completes
// before it starts the next, so that an interruption leaves no space
// taken that a completed unit would have freed.
type unit struct {
	rewrites []int // ranks in ws, in order
	runs     []int // indexes in runs, in order
	first    int   // the first run or rewrite, for a stable order
	freed    int64 // findsame's estimate of the bytes it frees, net
	cost     int64 // the bytes its runs deduplicate (the kernel compares them) and its rewrites write, and destinationCost for each
	waits    int   // units it waits for, not placed yet
	// prev are the units it waits for; next, those waiting for it.
	prev, next []*unit
	placed     bool
	// sole is, while it waits for one unit only, that unit: what this
	// one and the units counted in it free counts in sole's place too.
	sole *unit
	// pfreed and pcost are its own freed and cost with those of the
	// units counted in it: those waiting for it alone, and so on down.
	pfreed, pcost int64
	at            int // its place in the heap of units ready to go
}

// planUnits puts the runs (sorted by source) and the rewrites ws into
// units of work and returns them in the order they are to be done.
//
// On btrfs a disk extent is freed only when every run with a destination
// in it is done, and a rewrite's extent only when the runs with
// destinations in it are too. So the runs with destinations in one disk
// extent, the rewrites of those extents, and transitively all that these
// share, make one unit; the runs of a unit with the same source range and
// length make one line. Copies of one file in files of their own are
// units of their own, a line each, so that a time limit can stop between
// them. (Elsewhere space is freed block by block, and a run is a unit of
// its own unless a rewrite joins it to others, or it moves a range of an
// extent that reflinked copies share: the runs moving the copies' ranges
// at that disk offset make one unit.)
//
// A run whose source lies in a rewritten extent must come after the
// rewrite (sharing the old extent would keep it), so its unit comes after
// the rewrite's; units that would each have to come after the other are
// one. Within that, the best unit goes first: the most bytes freed per
// byte compared or written (findsame's estimate, with what opening files
// and making calls costs), counting for a unit that others wait for what
// it frees with those left waiting for it alone (and those waiting for
// them alone), where that is better; then in source order. So a run cut
// short by a time limit has freed what it could.
func planUnits(runs []run, ws []rewriteAt, files []file, bs int64) []*unit {
	rw := newRewritten(ws)
	// Union-find over the runs (0..len(runs)-1) and the rewrites
	// (len(runs)+rank).
	parent := make([]int32, len(runs)+len(ws))
	for k := range parent {
		parent[k] = int32(k)
	}
	find := func(k int) int {
		for int(parent[k]) != k {
			parent[k] = parent[parent[k]]
			k = int(parent[k])
		}
		return k
	}
	join := func(a, b int) bool {
		if a, b = find(a), find(b); a != b {
			parent[max(a, b)] = int32(min(a, b))
			return true
		}
		return false
	}
	// The disk extents (by filesystem and disk offset where known, else
	// by file and group of its extents, see groups) and the first node
	// holding each: a rewrite of it, or a run with its destination in it.
	type extentKey struct {
		disk  diskKey
		fi, g int
	}
	holder := make(map[extentKey]int)
	hold := func(key extentKey, node int) {
		if other, ok := holder[key]; ok {
			join(node, other)
		} else {
			holder[key] = node
		}
	}
	groupOf := make(map[int]map[int64]int)
	var deps []struct{ run, rewrite int } // a run whose source lies in a rewritten extent
	// A rewrite frees its disk extent only when every reference to it has
	// moved: in its file, and (plan.Rewrite.Shared) in the files whose
	// runs move theirs onto its copy.
	for k, w := range ws {
		f := &files[w.fi]
		for _, e := range f.extents {
			if e.DiskStart != 0 && e.Logical < w.w.File.Off+w.w.Len && w.w.File.Off < e.End() {
				hold(extentKey{disk: diskOf(f, e)}, len(runs)+k)
			}
		}
	}
	for k, r := range runs {
		rw.each(r.src.file(), r.src.block()*bs, r.len, func(rank int) { deps = append(deps, struct{ run, rewrite int }{k, len(runs) + rank}) })
		fi := r.dst.file()
		lo := r.dst.block() * bs
		rw.each(fi, lo, r.len, func(rank int) { join(k, len(runs)+rank) })
		f := &files[fi]
		for _, e := range f.extents[firstEndingAfter(f.extents, lo):] {
			if e.Logical >= lo+r.len {
				break
			}
			if !f.btrfs {
				// Blocks that reflinked copies share are freed when every
				// copy's range moves (see sharedBlocks): the runs moving
				// the ranges at one disk offset go together.
				if e.Flags&fiemap.FlagShared != 0 {
					hold(extentKey{disk: diskKey{f.Vol.FS, e.Physical}}, k)
				}
				continue
			}
			if e.DiskStart != 0 {
				hold(extentKey{disk: diskOf(f, e)}, k)
				continue
			}
			gs, ok := groupOf[fi]
			if !ok {
				gs = make(map[int64]int)
				for g, pieces := range groups(f) {
					for _, p := range pieces {
						gs[p.Logical] = g
					}
				}
				groupOf[fi] = gs
			}
			hold(extentKey{fi: fi, g: gs[e.Logical]}, k)
		}
	}
	// Sets that must each come before the other are joined.
	for joinCycles(deps, find, join) {
	}
	var units []*unit
	byRoot := make(map[int]*unit)
	unitOf := func(node int) *unit {
		root := find(node)
		u := byRoot[root]
		if u == nil {
			u = &unit{first: node}
			byRoot[root] = u
			units = append(units, u)
		}
		return u
	}
	for k, r := range runs {
		u := unitOf(k)
		u.runs = append(u.runs, k)
		u.freed += r.freed
		u.cost += r.len + destinationCost
	}
	for k, w := range ws {
		u := unitOf(len(runs) + k)
		u.rewrites = append(u.rewrites, k)
		u.freed += w.w.Freed
		u.cost += w.w.Bytes + destinationCost
	}
	// And each file a unit opens: the files of its runs' sources and
	// destinations and of its rewrites.
	var fis []int
	for _, u := range units {
		fis = fis[:0]
		for _, k := range u.runs {
			fis = append(fis, runs[k].src.file(), runs[k].dst.file())
		}
		for _, k := range u.rewrites {
			fis = append(fis, ws[k].fi)
		}
		slices.Sort(fis)
		u.cost += int64(len(slices.Compact(fis))) * fileCost
	}
	// Kahn's order, the best unit first among those free to go.
	seen := make(map[[2]*unit]bool)
	for _, d := range deps {
		u, v := unitOf(d.run), unitOf(d.rewrite)
		if u != v && !seen[[2]*unit{v, u}] {
			seen[[2]*unit{v, u}] = true
			v.next = append(v.next, u)
			u.prev = append(u.prev, v)
			u.waits++
		}
	}
	// A unit that others wait for goes by what it and they free together
	// (those waiting for it alone, and those waiting for them alone),
	// where that is better than its own. As units are placed, a unit left
	// waiting for one other comes to count in that one's place: the units
	// that free most wait for several rewrites, and the last of those then
	// goes by what it lets them free.
	for _, u := range units {
		u.pfreed, u.pcost = u.freed, u.cost
	}
	ready := &unitHeap{}
	for _, u := range units {
		if u.waits == 1 {
			u.sole = u.prev[0]
			ready.count(u, u.freed, u.cost)
		}
	}
	for _, u := range units {
		if u.waits == 0 {
			u.at = len(*ready)
			*ready = append(*ready, u)
		}
	}
	heap.Init(ready)
	order := make([]*unit, 0, len(units))
	for ready.Len() > 0 {
		v := heap.Pop(ready).(*unit)
		v.placed = true
		order = append(order, v)
		for _, u := range v.next {
			switch u.waits--; u.waits {
			case 0:
				heap.Push(ready, u)
			case 1:
				for _, p := range u.prev {
					if !p.placed {
						u.sole = p
					}
				}
				ready.count(u, u.pfreed, u.pcost)
			}
		}
	}
	return order
}

// count adds freed and cost, those of u and the units counted in it, to
// the place of the unit u waits for alone (u.sole), and on up through the
// units that one waits for alone, to the one ready to go, whose place in h
// it fixes.
func (h *unitHeap) count(u *unit, freed, cost int64) {
	for p := u.sole; p != nil; p = p.sole {
		p.pfreed += freed
		p.pcost += cost
		if p.waits == 0 {
			if p.at < len(*h) && (*h)[p.at] == p {
				heap.Fix(h, p.at)
			}
			return
		}
	}
}

// joinCycles joins the sets of the union-find (find, join) that must each
// come before the other: the set of a dep's rewrite comes before the set
// of its run. It reports whether it joined any; the edges between joined
// sets must then be looked at again.
func joinCycles(deps []struct{ run, rewrite int }, find func(int) int, join func(a, b int) bool) bool {
	next := make(map[int][]int)
	var roots []int
	for _, d := range deps {
		u, v := find(d.run), find(d.rewrite)
		if u != v {
			if _, ok := next[v]; !ok {
				roots = append(roots, v)
			}
			next[v] = append(next[v], u)
		}
	}
	// Tarjan's strongly connected components.
	index := make(map[int]int)
	low := make(map[int]int)
	on := make(map[int]bool)
	var stack []int
	joined := false
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		on[v] = true
		for _, u := range next[v] {
			if _, seen := index[u]; !seen {
				visit(u)
				low[v] = min(low[v], low[u])
			} else if on[u] {
				low[v] = min(low[v], index[u])
			}
		}
		if low[v] == index[v] {
			for {
				u := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[u] = false
				if u == v {
					break
				}
				joined = join(u, v) || joined
			}
		}
	}
	for _, v := range roots {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return joined
}

// unitHeap is a heap of units, the best on top: the most bytes freed per
// byte compared or written, by its own or counting the units counted in it
// (see unit.pfreed), then the first in source order.
type unitHeap []*unit

// rate is what places u: its own bytes freed and cost, or those with the
// units counted in it where they free more per byte.
func (u *unit) rate() (freed, cost float64) {
	if float64(u.pfreed)*float64(u.cost) > float64(u.freed)*float64(u.pcost) {
		return float64(u.pfreed), float64(u.pcost)
	}
	return float64(u.freed), float64(u.cost)
}

func (h unitHeap) Len() int { return len(h) }
func (h unitHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	af, ac := a.rate()
	bf, bc := b.rate()
	if x, y := af*bc, bf*ac; x != y {
		return x > y
	}
	return a.first < b.first
}
func (h unitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *unitHeap) Push(x any) {
	u := x.(*unit)
	u.at = len(*h)
	*h = append(*h, u)
}
func (h *unitHeap) Pop() any {
	x := (*h)[len(*h)-1]
	*h = (*h)[:len(*h)-1]
	return x
}
