package runs

import (
	"cmp"
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
// taken that a completed unit would have freed. Units are numbered in
// the order of their first run or rewrite, and refer to each other by
// number: they hold no pointers, so that the collector need not look
// at the millions of a plan of many small files.
type unit struct {
	freed int64 // findsame's estimate of the bytes it frees, net
	cost  int64 // the bytes its runs deduplicate (the kernel compares them) and its rewrites write, and destinationCost for each
	// pfreed and pcost are its own freed and cost with those of the
	// units counted in it: those waiting for it alone, and so on down.
	pfreed, pcost int64
	waits         int32 // units it waits for, not placed yet
	// sole is, while it waits for one unit only, that unit (-1: none):
	// what this one and the units counted in it free counts in sole's
	// place too.
	sole   int32
	at     int32 // its place in the heap of units ready to go
	placed bool
	left   bool // left out: it costs more metadata than it frees
}

// units are the units of work of a plan, in the order they are to be
// done (see planUnits).
type units struct {
	// members holds each unit's runs (indexes in runs, in order), then
	// its rewrites (ranks in ws, in order): those of unit u are
	// members[at[u]:mid[u]] and members[mid[u]:at[u+1]].
	members []int32
	at, mid []int32
	order   []int32 // the units, in the order they are to be done
	costly  int     // units left out: they cost more metadata than they free
	// metadata is what the units kept cost btrfs's metadata: a leaf
	// copied for each leaf they touch (see leaveCostly).
	metadata int64
}

func (us *units) len() int { return len(us.order) }

// get returns the runs and the rewrites of the n-th unit to be done.
func (us *units) get(n int) (runs, rewrites []int32) {
	u := us.order[n]
	return us.members[us.at[u]:us.mid[u]], us.members[us.mid[u]:us.at[u+1]]
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
//
// With weigh, units are left out when what they free is less than what
// they cost btrfs's metadata, or on btrfs is nothing (see leaveCostly),
// and counted in costly: a
// unit that neither waits for another nor is waited for on its own, and
// units linked by waiting (a rewrite and the units that share its copy,
// say) together, a chain weighed as one: left out, one of them would
// leave the others waiting or sharing an extent not rewritten.
//
// Runs and rewrites are numbered in 32 bits: there are fewer than 2^31 of
// them together (lines checks).
func planUnits(runs []run, ws []rewriteAt, files []file, bs int64, weigh bool) *units {
	rw := newRewritten(ws)
	// Union-find over the runs (0..len(runs)-1) and the rewrites
	// (len(runs)+rank); the root of each set is its first node.
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
	// The nodes holding each disk extent (by filesystem and disk offset
	// where known, else by file and group of its extents, see groups): a
	// rewrite of it, or a run with its destination in it. They are
	// listed, then sorted by extent and joined: a list of 24 bytes a
	// node where a map from each extent to its first holder took 80.
	// Filesystems are numbered, the extents of a file without disk
	// offsets keyed by -1-file and group.
	type extentKey struct{ a, b int64 }
	type holding struct {
		key  extentKey
		node int32
	}
	holds := make([]holding, 0, len(runs)+len(ws)) // most often one each
	fsNum := make(map[string]int64)
	diskKeyOf := func(f *file, at int64) extentKey {
		n, ok := fsNum[f.vol.FS]
		if !ok {
			n = int64(len(fsNum))
			fsNum[f.vol.FS] = n
		}
		return extentKey{n, at}
	}
	hold := func(key extentKey, node int) { holds = append(holds, holding{key, int32(node)}) }
	// Each extent's group, of the files without DiskStart, worked out
	// once a file: file fi's from groupOf[groupAt[fi]-1].
	var groupAt []int32
	var groupOf []int32
	var deps []struct{ run, rewrite int } // a run whose source lies in a rewritten extent
	// A rewrite frees its disk extent only when every reference to it has
	// moved: in its file, and (plan.Rewrite.Shared) in the files whose
	// runs move theirs onto its copy.
	for k, w := range ws {
		f := &files[w.fi]
		for _, e := range f.extents {
			if e.DiskStart != 0 && e.Logical < w.w.File.Off+w.w.Len && w.w.File.Off < e.End() {
				hold(diskKeyOf(f, e.DiskStart), len(runs)+k)
			}
		}
	}
	for k, r := range runs {
		rw.each(r.src.file(), r.src.block()*bs, r.len, func(rank int) { deps = append(deps, struct{ run, rewrite int }{k, len(runs) + rank}) })
		fi := r.dst.file()
		lo := r.dst.block() * bs
		rw.each(fi, lo, r.len, func(rank int) { join(k, len(runs)+rank) })
		f := &files[fi]
		first := firstEndingAfter(f.extents, lo)
		for i, e := range f.extents[first:] {
			if e.Logical >= lo+r.len {
				break
			}
			if !f.vol.btrfs {
				// Blocks that reflinked copies share are freed when every
				// copy's range moves (see sharedBlocks): the runs moving
				// the ranges at one disk offset go together.
				if e.Flags&fiemap.FlagShared != 0 {
					hold(diskKeyOf(f, e.Physical), k)
				}
				continue
			}
			if e.DiskStart != 0 {
				hold(diskKeyOf(f, e.DiskStart), k)
				continue
			}
			if groupAt == nil {
				groupAt = make([]int32, len(files))
			}
			if groupAt[fi] == 0 {
				of, _ := extentGroups(f)
				groupAt[fi] = int32(len(groupOf) + 1)
				groupOf = append(groupOf, of...)
			}
			hold(extentKey{-1 - int64(fi), int64(groupOf[int(groupAt[fi])-1+first+i])}, k)
		}
	}
	groupAt, groupOf = nil, nil
	slices.SortFunc(holds, func(x, y holding) int {
		return cmp.Or(cmp.Compare(x.key.a, y.key.a), cmp.Compare(x.key.b, y.key.b))
	})
	for i := 1; i < len(holds); i++ {
		if holds[i].key == holds[i-1].key {
			join(int(holds[i].node), int(holds[i-1].node))
		}
	}
	holds = nil
	// Sets that must each come before the other are joined.
	for joinCycles(deps, find, join) {
	}
	// Each node's unit, numbered in the order of their first nodes, in
	// place of its parent: a parent comes before its children, and a
	// root is its own parent.
	n := 0
	for k := range parent {
		if int(parent[k]) == k {
			n++
		}
	}
	us := make([]unit, 0, n)
	unitOf := parent
	for k := range unitOf {
		if r := int(unitOf[k]); r == k {
			unitOf[k] = int32(len(us))
			us = append(us, unit{sole: -1})
		} else {
			unitOf[k] = unitOf[r]
		}
	}
	// Each unit's members: its runs, then its rewrites.
	at, members := lists(len(us), len(unitOf), func(k int) (int32, int32) {
		if k < len(runs) {
			return unitOf[k], int32(k)
		}
		return unitOf[k], int32(k - len(runs))
	})
	mid := slices.Clone(at[:len(us)])
	for k, r := range runs {
		u := unitOf[k]
		mid[u]++
		us[u].freed += r.freed
		us[u].cost += r.len + destinationCost
	}
	for k, w := range ws {
		u := unitOf[len(runs)+k]
		us[u].freed += w.w.Freed
		us[u].cost += w.w.Bytes + destinationCost
	}
	// And each file a unit opens: the files of its runs' sources and
	// destinations and of its rewrites.
	var fis []int
	for u := range us {
		fis = fis[:0]
		for _, k := range members[at[u]:mid[u]] {
			fis = append(fis, runs[k].src.file(), runs[k].dst.file())
		}
		for _, k := range members[mid[u]:at[u+1]] {
			fis = append(fis, ws[k].fi)
		}
		slices.Sort(fis)
		us[u].cost += int64(len(slices.Compact(fis))) * fileCost
	}
	// The units each waits for (prev) and those waiting for each (next),
	// in lists by unit: those of u are prevs[prevAt[u]:prevAt[u+1]].
	type edge struct{ from, to int32 } // from must be done before to
	var edges []edge
	for _, d := range deps {
		if u, v := unitOf[d.run], unitOf[d.rewrite]; u != v {
			edges = append(edges, edge{v, u})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to)) })
	edges = slices.Compact(edges)
	nextAt, nexts := lists(len(us), len(edges), func(i int) (int32, int32) { return edges[i].from, edges[i].to })
	prevAt, prevs := lists(len(us), len(edges), func(i int) (int32, int32) { return edges[i].to, edges[i].from })
	for u := range us {
		us[u].waits = prevAt[u+1] - prevAt[u]
	}
	var costly int
	var metadata int64
	if weigh {
		// Each unit's chain, numbered by its first unit: the units
		// linked to it by waiting, whichever way.
		chain := make([]int32, len(us))
		for u := range chain {
			chain[u] = int32(u)
		}
		first := func(u int32) int32 {
			for chain[u] != u {
				chain[u] = chain[chain[u]]
				u = chain[u]
			}
			return u
		}
		for _, e := range edges {
			if a, b := first(e.from), first(e.to); a != b {
				chain[max(a, b)] = min(a, b)
			}
		}
		for u := range chain {
			chain[u] = first(int32(u))
		}
		costly, metadata = leaveCostly(us, chain, runs, ws, files, members, at, mid)
	}
	// Kahn's order, the best unit first among those free to go.
	//
	// A unit that others wait for goes by what it and they free together
	// (those waiting for it alone, and those waiting for them alone),
	// where that is better than its own. As units are placed, a unit left
	// waiting for one other comes to count in that one's place: the units
	// that free most wait for several rewrites, and the last of those then
	// goes by what it lets them free.
	for u := range us {
		us[u].pfreed, us[u].pcost = us[u].freed, us[u].cost
	}
	ready := &unitHeap{us: us}
	for u := range us {
		if us[u].waits == 1 && !us[u].left {
			us[u].sole = prevs[prevAt[u]]
			ready.count(int32(u), us[u].freed, us[u].cost)
		}
	}
	for u := range us {
		if us[u].waits == 0 && !us[u].left {
			us[u].at = int32(len(ready.h))
			ready.h = append(ready.h, int32(u))
		}
	}
	heap.Init(ready)
	order := make([]int32, 0, len(us))
	for ready.Len() > 0 {
		v := heap.Pop(ready).(int32)
		us[v].placed = true
		order = append(order, v)
		for _, u := range nexts[nextAt[v]:nextAt[v+1]] {
			switch us[u].waits--; us[u].waits {
			case 0:
				heap.Push(ready, u)
			case 1:
				for _, p := range prevs[prevAt[u]:prevAt[u+1]] {
					if !us[p].placed {
						us[u].sole = p
					}
				}
				ready.count(u, us[u].pfreed, us[u].pcost)
			}
		}
	}
	return &units{members: members, at: at, mid: mid, order: order, costly: costly, metadata: metadata}
}

// metadataLeaf is what sharing into a file costs, at most, in btrfs's
// metadata where the tree leaf holding its extent items is shared with
// another subvolume (a snapshot): the leaf is copied for the file's
// subvolume (copy on write), a node of btrfs's default size, 16 KiB, and
// stored twice (metadata is DUP on one device and RAID1 on several,
// by default). A leaf holds the items of a few dozen small files. Where
// the filesystem says how it stores metadata, a leaf costs what it says
// (volume.leaf); this where it cannot.
const metadataLeaf = 2 * 16 << 10

// leafFiles is how many consecutive inode numbers leaveCostly takes
// to share a leaf: fewer than a leaf of small files holds.
const leafFiles = 32

// leaveCostly marks left the units whose chains (chain: each unit's,
// numbered by its first unit) cost btrfs's metadata more than they free,
// a chain weighed as one unit, and those whose chains on btrfs free
// nothing (their extents kept by references the plan does not move:
// sharing ranges of them would cut them in pieces, each an item more),
// and returns how many units it left and
// what the units kept cost: a leaf copied for each leaf they touch. Their
// destinations cost a leaf (volume.leaf) for each tree leaf their extent
// items lie in, taken as a run of leafFiles inode numbers of a
// subvolume; a destination in a subvolume no snapshot shares leaves with
// (volume.snapshotted), or whose own leaves no snapshot shares
// (file.ownLeaves), which are rewritten in place, or elsewhere than on
// btrfs, costs nothing here.
//
// A snapshot shares its tree's leaves with the subvolume it was taken
// from, and with the snapshots taken before and after while they did not
// change. Sharing a range into a file rewrites the leaf of its extent
// items, and where that is shared, gives the file's subvolume a copy of
// its own: deduplicating one small file in a live subvolume and 50 hourly
// snapshots of it copies 51 leaves to free a few KiB. Files near each
// other in inode order have their items in one leaf, copied once for all
// of them. So the units kept are the largest set of them each of which
// frees at least its share of the leaves it touches (each leaf's cost
// shared evenly among the units kept that touch it); a unit left out
// whose every leaf a unit kept copies anyway is then kept if it frees
// something.
//
// A leaf's share only grows as units touching it are left out, so the
// units that pay in some such set pay in the union of all of them: that
// largest set is found by leaving out, one at a time, a unit that does
// not pay, and looking again only at the units sharing its leaves: the
// same set as rounds that each leave out every unit not paying, run to
// the end.
func leaveCostly(us []unit, chain []int32, runs []run, ws []rewriteAt, files []file, members, at, mid []int32) (int, int64) {
	// Below, a "unit" is a chain: c, numbered by its first unit, frees
	// freed[c] and touches the leaves of all its units.
	freed := make([]int64, len(us))
	for u := range us {
		freed[chain[u]] += us[u].freed
	}
	left := make([]bool, len(us))
	onBtrfs := make([]bool, len(us))
	nvol := make(map[*volume]uint64)
	var leafOf []int64 // by volume number
	type touch struct {
		leaf uint64
		unit int32
	}
	var ts []touch
	add := func(fi int, u int32) {
		f := &files[fi]
		onBtrfs[u] = onBtrfs[u] || f.vol.btrfs
		if !f.vol.btrfs || !f.vol.snapshotted || f.ownLeaves {
			return
		}
		n, ok := nvol[f.vol]
		if !ok {
			n = uint64(len(nvol))
			nvol[f.vol] = n
			leafOf = append(leafOf, cmp.Or(f.vol.leaf, metadataLeaf))
		}
		ts = append(ts, touch{leaf: n<<40 | f.Ino/leafFiles&(1<<40-1), unit: u})
	}
	for u := range us {
		for _, k := range members[at[u]:mid[u]] {
			add(runs[k].dst.file(), chain[u])
		}
		for _, k := range members[mid[u]:at[u+1]] {
			add(ws[k].fi, chain[u])
		}
	}
	slices.SortFunc(ts, func(a, b touch) int { return cmp.Or(cmp.Compare(a.leaf, b.leaf), cmp.Compare(a.unit, b.unit)) })
	ts = slices.Compact(ts)
	// The leaves, numbered in order: leaf l is touched by the units of
	// ts[start[l]:start[l+1]], and costs leafCost[l]; ts[i] touches leaf
	// leafNum[i].
	var start []int
	var leafCost []int64
	leafNum := make([]int32, len(ts))
	for i := range ts {
		if i == 0 || ts[i].leaf != ts[i-1].leaf {
			start = append(start, i)
			leafCost = append(leafCost, leafOf[ts[i].leaf>>40])
		}
		leafNum[i] = int32(len(start) - 1)
	}
	start = append(start, len(ts))
	nleaves := len(leafCost)
	// The leaves each unit touches: those of u are leaves[lat[u]:lat[u+1]].
	lat, leaves := lists(len(us), len(ts), func(i int) (int32, int32) { return ts[i].unit, leafNum[i] })
	// Each unit's share, with every unit kept; then the units that do
	// not pay are left out one at a time, the shares of the others on
	// their leaves growing.
	kept := make([]int64, nleaves)
	cost := make([]int64, len(us))
	for l := range nleaves {
		kept[l] = int64(start[l+1] - start[l])
		for _, x := range ts[start[l]:start[l+1]] {
			cost[x.unit] += leafCost[l] / kept[l]
		}
	}
	var todo []int32
	for u := range us {
		if chain[u] == int32(u) && (freed[u] < cost[u] || freed[u] <= 0 && onBtrfs[u]) {
			todo = append(todo, int32(u))
		}
	}
	for len(todo) > 0 {
		u := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if left[u] {
			continue
		}
		left[u] = true
		for _, l := range leaves[lat[u]:lat[u+1]] {
			was := leafCost[l] / kept[l]
			if kept[l]--; kept[l] == 0 {
				continue
			}
			now := leafCost[l] / kept[l]
			for _, x := range ts[start[l]:start[l+1]] {
				if v := x.unit; !left[v] {
					cost[v] += now - was
					if freed[v] < cost[v] {
						todo = append(todo, v)
					}
				}
			}
		}
	}
	// The leaves no unit kept touches, counted for each unit left, and
	// those the units kept copy.
	unpaid := make([]int32, len(us))
	var copied int64
	for l := range nleaves {
		if kept[l] > 0 {
			copied += leafCost[l]
			continue
		}
		for _, x := range ts[start[l]:start[l+1]] {
			unpaid[x.unit]++
		}
	}
	n := 0
	for u := range us {
		c := chain[u]
		if c == int32(u) && left[u] && unpaid[u] == 0 && freed[u] > 0 {
			left[u] = false
		}
		if us[u].left = left[c]; us[u].left {
			n++
		}
	}
	return n, copied
}

// lists lists the values of n pairs (key, value), pair(i) giving the
// i-th, by key, in the order given: those of key k are
// list[start[k]:start[k+1]], for keys below keys.
func lists(keys, n int, pair func(i int) (key, val int32)) (start, list []int32) {
	start = make([]int32, keys+1)
	for i := range n {
		k, _ := pair(i)
		start[k+1]++
	}
	for k := range keys {
		start[k+1] += start[k]
	}
	fill := slices.Clone(start[:keys])
	list = make([]int32, n)
	for i := range n {
		k, v := pair(i)
		list[fill[k]] = v
		fill[k]++
	}
	return start, list
}

// count adds freed and cost, those of u and the units counted in it, to
// the place of the unit u waits for alone (sole), and on up through the
// units that one waits for alone, to the one ready to go, whose place in h
// it fixes.
func (h *unitHeap) count(u int32, freed, cost int64) {
	us := h.us
	for p := us[u].sole; p >= 0; p = us[p].sole {
		us[p].pfreed += freed
		us[p].pcost += cost
		if us[p].waits == 0 {
			if int(us[p].at) < len(h.h) && h.h[us[p].at] == p {
				heap.Fix(h, int(us[p].at))
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

// unitHeap is a heap of units (by number in us), the best on top: the
// most bytes freed per byte compared or written, by its own or counting
// the units counted in it (see unit.pfreed), then the first in source
// order, which is the first by number.
type unitHeap struct {
	us []unit
	h  []int32
}

// rate is what places u: its own bytes freed and cost, or those with the
// units counted in it where they free more per byte.
func (u *unit) rate() (freed, cost float64) {
	if float64(u.pfreed)*float64(u.cost) > float64(u.freed)*float64(u.pcost) {
		return float64(u.pfreed), float64(u.pcost)
	}
	return float64(u.freed), float64(u.cost)
}

func (h *unitHeap) Len() int { return len(h.h) }
func (h *unitHeap) Less(i, j int) bool {
	a, b := h.h[i], h.h[j]
	af, ac := h.us[a].rate()
	bf, bc := h.us[b].rate()
	if x, y := af*bc, bf*ac; x != y {
		return x > y
	}
	return a < b
}
func (h *unitHeap) Swap(i, j int) {
	h.h[i], h.h[j] = h.h[j], h.h[i]
	h.us[h.h[i]].at, h.us[h.h[j]].at = int32(i), int32(j)
}
func (h *unitHeap) Push(x any) {
	u := x.(int32)
	h.us[u].at = int32(len(h.h))
	h.h = append(h.h, u)
}
func (h *unitHeap) Pop() any {
	x := h.h[len(h.h)-1]
	h.h = h.h[:len(h.h)-1]
	return x
}
