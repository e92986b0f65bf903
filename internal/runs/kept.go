package runs

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/sumtab"
)

// A run after a small change regroups only what changed, with the table
// of sums the run before kept (package sumtab): every non-zero sum of the
// files in scope, sorted, as of the index's write sequence number (seq)
// read before the files were.
//
// Files changed since (index.File.Changed after the table's seq, or not
// in the table) and files the run before left unsettled are regrouped:
// the sums of the files whose sums changed (index.File.SumsChanged after
// the table's seq, or not in the table) are read from the index, those
// of the others (left unsettled, or with their extents alone recorded
// again, deduplicated or defragmented) are their entries in the table,
// and every group holding one of
// them, or one that lost a member (a file changed or gone), is made
// again with all its members, the others' taken from the table. The
// other groups are as they were, with the same members in the same
// order, and none of their mappings could be deduplicated then: both of
// the files of such a mapping would have been left unsettled. With the
// same recorded extents, none can now, so a full run would plan nothing
// of them either; the plan is the one a full run prints. Unsettled
// means, with Options.Live, every file the run mapped again (its recorded
// extents showed a mapping not shared yet, or they are not kept current:
// see settle) or found stale; with recorded extents, every file with a
// mapping chain found shareable.
//
// A group made again adds only the mappings that name a member it did not
// have at the last run, unless it lost one that may have been its source:
// the others are the last run's (see finish in regroup). The table keeps
// the rank of every file that was the source of a group, so that a group
// that lost only members ranked below one it kept is not mapped again
// whole.
//
// The index's instance and the options that shape groups make the
// table's key: a table of another key (of another index made at the same
// path since, or of other options) is not used, and the run groups every
// sum. The files of a volume whose attributes changed (it became
// read-only or writable) are regrouped as if changed. A file of a new
// read-only snapshot recorded from its origin's row joins its origin's
// groups without regrouping (see clones).
//
// A file that holds another's sums block for block (one that shares them
// in the index, or a clone) is an alias in the table: the other's entries
// stand for its own, which are not stored, so that the table grows with
// the data, not with the snapshots that hold it. Its entries are void
// when the other's are (that file changed or is gone), and it is then
// regrouped.

// errGroupAll ends an attempt to regroup only what changed: too much did
// to pay, or the table could not be read whole.
var errGroupAll = errors.New("group every sum")

// table is the table of sums a run reads and the one it writes.
type table struct {
	path  string // the base table; its delta is path + ".delta"
	key   string
	seq   int64 // the index's write_seq before the files were read
	base  *sumtab.Table
	delta *sumtab.Table // nil without one that extends base
	// w writes the table this run leaves, committed once the plan's
	// units are planned, before its first line is printed (see lines);
	// nil if it cannot be written.
	w *sumtab.Writer
	// superseded is what the delta w writes supersedes in the base.
	superseded sumtab.Set
	// need marks, with recorded extents, the files with a mapping that
	// chain found shareable.
	need []bool
	// named marks the files the plan names (see lines): the table w
	// writes keeps them, as those whose extents applying the plan may
	// change.
	named []bool
	// regrouped counts the files regrouped; -1 when every sum was.
	// cloned counts the clones that joined their origin's groups.
	regrouped, cloned int
	// aliases are those of the table w writes; aliased marks, by file
	// index, the files among them (whose entries w leaves out).
	aliases []sumtab.Alias
	aliased []bool
	// ids holds, by file index, the files' ids as the entries of w give
	// them: keep looks one up for every entry, in the order of their
	// sums, from all over, and the records of the files, many times
	// larger, missed the CPU's caches.
	ids []uint32
	// sources marks, by file index, the files this run found the source
	// of a group, and was those the last table ranked as sources (when
	// only what changed was regrouped, the groups not made again keep
	// theirs): the table w writes keeps their ranks.
	sources, was []bool
}

// alias records, for the table being written, that file fi holds the
// sums of file of, block for block: its entries are of's.
func (f *finder) alias(fi, of int) {
	t := f.tab
	if t == nil || t.w == nil || t.aliased[fi] {
		return
	}
	t.aliased[fi] = true
	t.aliases = append(t.aliases, sumtab.Alias{File: uint32(f.files[fi].id), Of: uint32(f.files[of].id)})
}

// tableKey names the index and the options a table depends on.
func (f *finder) tableKey(instance string) string {
	o := f.o
	h := sha256.New()
	fmt.Fprintf(h, "index %s bs %d live %v rewrite %v owner %v noreadonly %v\ninclude %q\nexclude %q\n",
		instance, f.bs, o.Live, o.Rewrite, o.SameOwner, o.NoReadOnly, o.Include, o.Exclude)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// volumeKey names a file's volume in a table's Volumes.
func volumeKey(fl *file) string { return fmt.Sprintf("%s/%d", fl.vol.FS, fl.vol.Subvol) }

// volumeValue is what the entries of a file depend on beyond its row:
// whether its volume is read-only (with Options.NoReadOnly), on btrfs,
// and its block size.
func volumeValue(fl *file) string {
	return fmt.Sprintf("readonly %v btrfs %v block %d", fl.keepSource, fl.vol.btrfs, fl.vol.fsBlock)
}

// volumes returns the Volumes of the files in scope.
func (f *finder) volumes() map[string]string {
	m := make(map[string]string)
	seen := make(map[fsys.Volume]bool)
	for i := range f.files {
		if fl := &f.files[i]; !seen[fl.vol.Volume] {
			seen[fl.vol.Volume] = true
			m[volumeKey(fl)] = volumeValue(fl)
		}
	}
	return m
}

// openTable opens the tables a run may regroup from, unless o.Full, and
// prepares the table it writes. It returns nil when no table is kept.
func (f *finder) openTable(seq int64) *table {
	if f.o.Table == "" || f.o.WholeFiles {
		return nil
	}
	for i := range f.files {
		if f.files[i].id >= 1<<32 {
			return nil // an entry holds a file id in 32 bits
		}
	}
	instance, err := f.ix.Instance(f.ctx)
	if err != nil {
		f.o.warn(f.o.Table, fmt.Errorf("%w: no table of sums kept", err))
		return nil
	}
	t := &table{path: f.o.Table, key: f.tableKey(instance), seq: seq, regrouped: -1}
	if n, size := sumtab.RemoveLeftovers(t.path); n > 0 {
		f.o.warn(t.path, fmt.Errorf("removed %d temporary table(s) of sums beside %s (%s), left by runs killed while they wrote them", n, t.path, cli.Bytes(size)))
	}
	if f.o.Full {
		return t
	}
	base, err := sumtab.Open(t.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.o.warn(t.path, fmt.Errorf("%w: every sum grouped again", err))
		}
		return t
	}
	if base.Key != t.key || base.Base != 0 {
		base.Close()
		return t
	}
	t.base = base
	delta, err := sumtab.Open(t.path + ".delta")
	if err == nil && (delta.Key != t.key || delta.Base != base.Nonce || delta.Seq < base.Seq) {
		delta.Close()
		err = errors.New("another base")
	}
	if err == nil {
		t.delta = delta
	}
	return t
}

// untouched marks, by file index, the files whose recorded extents are
// as the last run that wrote a table found them, and which its plan did
// not name: unchanged in the index since and not among the table's
// Named. Applying that plan, or any part of it (the table is committed
// before its first line), did not change their extents, and nothing
// else that deduplicates did unseen: hashfile records the extent items
// of btrfs files that changed (see trusted). So is a file of a snapshot
// taken since whose row hashfile copied from such a file's, unchanged
// since (a clone: see index.Tx.Adopt), and which the plan did not name:
// the snapshot holds the extents its origin had, and the plan did not
// change those. None is on a
// filesystem one of whose volumes in the table is gone (a snapshot
// deleted): the extents it shared may be shared no more, which their
// recorded flags would hide from the rewrites (see trusted). It returns
// nil when no table was read.
func (f *finder) untouched() []bool {
	t := f.tab
	if t == nil || t.base == nil {
		return nil
	}
	last := t.latest()
	now := f.volumes()
	lost := make(map[string]bool) // by filesystem
	for k := range last.Volumes {
		if _, ok := now[k]; !ok {
			fs, _, _ := strings.Cut(k, "/")
			lost[fs] = true
		}
	}
	out := make([]bool, len(f.files))
	for i := range f.files {
		fl := &f.files[i]
		out[i] = f.seqs[fl.id].changed <= last.Seq && last.Files.Has(fl.id) && !last.Named.Has(fl.id) && !lost[fl.vol.FS]
	}
	for i := range f.files {
		fl := &f.files[i]
		sq := f.seqs[fl.id]
		if out[i] || sq.cloneOf == 0 || last.Named.Has(fl.id) {
			continue
		}
		if o, ok := f.byID.of(sq.cloneOf); ok && out[o] && f.seqs[f.files[o].id].changed == sq.cloneSeq {
			out[i] = true
		}
	}
	return out
}

// doubtShared takes out of untouched the files whose recorded extents
// show shared a disk extent that no other file of the index refers to
// (index.SharedAlone): the flag may be stale, the other references gone
// since the file was recorded, and a run that maps every involved file
// would see the extent as the file's alone, and rewrite what no one else
// refers to of it.
func (f *finder) doubtShared(untouched []bool) error {
	return f.ix.SharedAlone(f.ctx, func(id int64) error {
		if i, ok := f.byID.of(id); ok {
			untouched[i] = false
		}
		return nil
	})
}

// latest is the table as of the last run that wrote one.
func (t *table) latest() *sumtab.Table {
	if t.delta != nil {
		return t.delta
	}
	return t.base
}

// close abandons what was not committed and closes the tables read.
func (t *table) close() {
	if t == nil {
		return
	}
	if t.w != nil {
		t.w.Abort()
		t.w = nil
	}
	if t.base != nil {
		t.base.Close()
	}
	if t.delta != nil {
		t.delta.Close()
	}
}

// createTable starts the table this run writes: a base, or a delta extending
// t.base.
func (f *finder) createTable(asDelta bool) {
	t := f.tab
	h := sumtab.Header{Key: t.key, Seq: t.seq, Nonce: sumtab.NewNonce(), Volumes: f.volumes()}
	path := t.path
	if asDelta {
		h.Nonce, h.Base = t.base.Nonce, t.base.Nonce
		path += ".delta"
	}
	w, err := sumtab.Create(path, h)
	if err != nil {
		f.o.warn(t.path, fmt.Errorf("%w: the next run groups every sum again", err))
		return
	}
	t.w = w
	t.aliases, t.aliased = nil, make([]bool, len(f.files))
	t.sources = make([]bool, len(f.files))
	t.ids = make([]uint32, len(f.files))
	for i := range f.files {
		t.ids[i] = uint32(f.files[i].id)
	}
}

// sourced records, for the table being written, that file fi is, or may
// be, the source of a group.
func (f *finder) sourced(fi int) {
	if t := f.tab; t != nil && t.w != nil {
		t.sources[fi] = true
	}
}

// keep adds pairs, sorted, to the base table a full run writes.
func (f *finder) keep(pairs []pair) {
	t := f.tab
	if t == nil || t.w == nil {
		return
	}
	es := make([]sumtab.Entry, 0, min(len(pairs), 1<<16))
	for len(pairs) > 0 {
		n := min(len(pairs), 1<<16)
		es = es[:0]
		for _, p := range pairs[:n] {
			if fi := p.at.file(); !t.aliased[fi] {
				es = append(es, sumtab.Entry{Sum: p.sum, File: t.ids[fi], Block: uint32(p.at.block())})
			}
		}
		t.w.Add(es...)
		pairs = pairs[n:]
	}
}

// regroup groups the sums of the files changed since the table or left
// unsettled by the run that wrote it, as group does every sum (see the
// comment at the top of this file), and starts the table this run
// leaves. It returns errGroupAll, having changed nothing, when the files
// changed hold more than a quarter of the blocks or their sums do not fit
// in memory, or the table cannot be read whole.
func (f *finder) regroup() (err error) {
	t := f.tab
	last := t.latest()
	n := len(f.files)
	changed := make([]bool, n) // their entries in the tables are void
	redo := make([]bool, n)    // regrouped: changed or unsettled
	var all int64
	// The entries of the table are looked up by their file's id.
	pos := f.byID
	maxID := int64(len(pos)) - 1
	volChanged := make(map[fsys.Volume]bool)
	for i := range f.files {
		fl := &f.files[i]
		all += fl.blocks(f.bs)
		vc, known := volChanged[fl.vol.Volume]
		if !known {
			was, ok := last.Volumes[volumeKey(fl)]
			vc = ok && was != volumeValue(fl)
			volChanged[fl.vol.Volume] = vc
		}
		// A file whose extents alone were recorded again since (the
		// plan shared into it, or it was defragmented) holds the entries
		// it had, and rejoins its groups from them as one left unsettled.
		sq := f.seqs[fl.id]
		changed[i] = sq.sums > last.Seq || !last.Files.Has(fl.id) || vc
		redo[i] = changed[i] || sq.changed > last.Seq || last.Unsettled.Has(fl.id)
	}
	// The aliases of the last table, by the id whose entries are theirs:
	// an alias's entries are void when that file's are (it changed or is
	// gone), and it is regrouped.
	aliasesOf := make(map[uint32][]int)
	holder := holderOf(last.Aliases)
	for _, a := range last.Aliases {
		c, ok := pos.of(int64(a.File))
		if !ok {
			continue // gone
		}
		of := holder(a.Of)
		if o, ok := pos.of(int64(of)); !ok || changed[o] {
			changed[c], redo[c] = true, true
		}
		aliasesOf[of] = append(aliasesOf[of], c)
	}
	// Whether a file id may have aliases, looked at for each entry
	// before the map (ids past maxID, of files gone, go to the map).
	aliased := make([]bool, maxID+1)
	for of := range aliasesOf {
		if int64(of) <= maxID {
			aliased[of] = true
		}
	}
	// Clones join their origin's groups (see clones).
	clones := f.clones(changed, redo, pos)
	// The files changed are read from the index; those left unsettled
	// and unchanged since rejoin their groups from the table, which
	// holds their sums as the index does (see rejoin).
	var redoBlocks, rejoinPairs int64
	var ids []int
	rejoined := 0
	for i := range f.files {
		switch {
		case !redo[i]: // a clone among them joins its origin's groups
		case changed[i]:
			redoBlocks += f.files[i].blocks(f.bs)
			ids = append(ids, i)
		default:
			rejoinPairs += f.files[i].blocks(f.bs) * int64(1+len(clones[i]))
			rejoined++
		}
	}
	if redoBlocks > all/4 {
		return errGroupAll
	}
	room := f.capacity() / 2
	slices.SortFunc(ids, func(a, b int) int { return int(f.files[a].id - f.files[b].id) })
	q := make([]pair, 0, min(room, redoBlocks))
	f.held = make(heldSums)
	heldBytes := 0
	sr, err := f.ix.SumsReader(f.ctx)
	if err != nil {
		return err
	}
	defer func() {
		if sr != nil {
			sr.Close()
		}
	}()
	for k, i := range ids {
		if k%256 == 0 {
			f.o.progress("reading changed sums", int64(k), int64(len(ids)), "files")
			if err := f.ctx.Err(); err != nil {
				return err
			}
		}
		// A clone whose origin, unchanged since the copy, was read
		// before it (its row is older) holds the origin's sums (a clone
		// that does not join its origin's groups: see clones).
		sums, shared := f.originSums(i, pos)
		if !shared {
			var err error
			if sums, err = sr.Sums(f.files[i].id); err != nil {
				return err
			}
		}
		if shared {
			f.held[f.files[i].id] = sums // no more memory
		} else if heldBytes+len(sums) <= f.heldBudget() {
			f.held[f.files[i].id] = sums
			heldBytes += len(sums)
		}
		for b := range len(sums) / blockhash.SumSize {
			if s := blockhash.At(sums, b); s != blockhash.Zero {
				q = append(q, pair{s, mkloc(i, int64(b))})
			}
		}
		if int64(len(q)) > room {
			return errGroupAll
		}
	}
	f.o.progress("reading changed sums", int64(len(ids)), int64(len(ids)), "files")
	sr.Close()
	sr = nil
	sortPairs(q)
	var deltaEntries int64
	if t.delta != nil {
		deltaEntries = t.delta.Entries
	}
	f.createTable(deltaEntries+int64(len(q)) <= t.base.Entries/8) // q: the entries of changed files, which the table written takes
	w := t.w
	if w != nil && w.Delta() {
		if t.delta != nil {
			t.superseded = slices.Clone(t.delta.Superseded)
		}
		for i := range f.files {
			if changed[i] {
				t.superseded.Add(f.files[i].id)
			}
		}
	}
	var g []pair          // the group of the sum at hand
	var es []sumtab.Entry // entries for w of the sum at hand
	// newer holds the members of g that were not members at the last run
	// (regrouped, or clones joining), and lostRank is the highest rank of
	// the members it lost that were the source of a group (0: none).
	var newer []loc
	var lostRank uint64
	put := func(e sumtab.Entry) {
		if w != nil {
			es = append(es, e)
		}
	}
	// What each file id's entries are now.
	const (
		member     = iota // of their groups
		lost              // void: the file changed or is gone
		rejoining         // regrouped, left unsettled: a newer member of its groups, from its entries
		withClones        // of their groups, looked at one by one: with the clones of the file, or aliases not plain members
	)
	state := make([]uint8, maxID+1)
	for i := range state {
		state[i] = lost
	}
	for i := range f.files {
		switch id := f.files[i].id; {
		case changed[i]:
		case redo[i]:
			state[id] = rejoining
		case len(clones[i]) > 0:
			state[id] = withClones
		default:
			state[id] = member
		}
	}
	// The entries of a file with aliases that are not plain members
	// (changed, regrouped, or with clones) are looked at one by one.
	for of, cs := range aliasesOf {
		for _, c := range cs {
			if state[f.files[c].id] != member && state[of] == member {
				state[of] = withClones
			}
		}
	}
	// The aliases of each file by what they are now, looked at for every
	// entry of the file: those that join its groups (members, or with
	// clones) and the ids of those lost. Read from the file records for
	// each entry, the aliases of a file of many snapshots missed the
	// processor's cache: 0.4 s of a night of hourly snapshots.
	type aliasSet struct {
		join   []int
		lost   []uint32
		rejoin []int
	}
	aliasSets := make(map[uint32]aliasSet, len(aliasesOf))
	for of, cs := range aliasesOf {
		var as aliasSet
		for _, c := range cs {
			switch id := f.files[c].id; state[id] {
			case member, withClones:
				as.join = append(as.join, c)
			case lost:
				as.lost = append(as.lost, uint32(id))
			case rejoining:
				as.rejoin = append(as.rejoin, c)
			}
		}
		aliasSets[of] = as
	}
	// join adds the pair of sum s at block b of file i, a member of its
	// group now, to g, with the clones of the file, which take root's
	// entries as theirs. A clone may lead a group it joins without the
	// group being made again (it ranks as its origin does, and may come
	// first by path): the table written counts it among the sources.
	join := func(s uint64, i int, b uint32, root int) {
		g = append(g, pair{s, mkloc(i, int64(b))})
		for _, c := range clones[i] {
			g = append(g, pair{s, mkloc(c, int64(b))})
			newer = append(newer, mkloc(c, int64(b)))
			f.alias(c, root)
			f.sourced(c)
		}
	}
	// rejoin adds the pair of sum s at block b of file i, left unsettled
	// and regrouped, to g as a newer member, with the clones of the file,
	// as a file's pairs read from the index are (see finish): the file is
	// unchanged since the table, whose entries are its sums. Reading
	// them from the index again and sorting them cost a night on a host
	// of many snapshots more than grouping every sum (a few large files
	// left unsettled in each snapshot), and so it did.
	var touchedByAdd bool
	rejoin := func(s uint64, i int, b uint32, root int) {
		touchedByAdd = true
		g = append(g, pair{s, mkloc(i, int64(b))})
		newer = append(newer, mkloc(i, int64(b)))
		for _, c := range clones[i] {
			g = append(g, pair{s, mkloc(c, int64(b))})
			newer = append(newer, mkloc(c, int64(b)))
			f.alias(c, root)
		}
	}
	// The ranks of the lost files that were the source of a group, as
	// the last run ranked them; and the files kept that were.
	lostRanks := make(map[uint32]uint64)
	t.was = make([]bool, n)
	if err := last.Ranks(func(r sumtab.Rank) {
		switch {
		case int64(r.File) > maxID || state[r.File] == lost:
			lostRanks[r.File] = r.Rank
		case pos[r.File] >= 0:
			t.was[pos[r.File]] = true
		}
	}); err != nil {
		f.o.warn(t.path, fmt.Errorf("%w: every sum grouped again", err))
		return errGroupAll
	}
	// gone notes that the group at hand lost a member, file id.
	gone := func(id uint32) {
		lostRank = max(lostRank, lostRanks[id])
	}
	// add adds e to g if it is a member of its group now, with the
	// aliases and clones of its file, and reports whether e is void and
	// whether its group lost a member (e's file, or an alias of it).
	add := func(e sumtab.Entry) (void, lostM bool) {
		st := uint8(lost)
		if int64(e.File) <= maxID {
			st = state[e.File]
		}
		switch st {
		case member, withClones:
			join(e.Sum, int(pos[e.File]), e.Block, int(pos[e.File]))
		case rejoining:
			rejoin(e.Sum, int(pos[e.File]), e.Block, int(pos[e.File]))
		}
		void = st == lost
		lostM = void
		if void {
			gone(e.File)
		}
		if int64(e.File) <= maxID && !aliased[e.File] {
			return void, lostM
		}
		as := aliasSets[e.File]
		for _, c := range as.join {
			join(e.Sum, c, e.Block, int(pos[e.File]))
		}
		for _, c := range as.rejoin {
			rejoin(e.Sum, c, e.Block, int(pos[e.File]))
		}
		for _, id := range as.lost {
			lostM = true
			gone(id)
		}
		return void, lostM
	}
	// The mappings go to lists by destination range, as group's do: in
	// memory when those of about four members a sum read fit, else in
	// temporary files, each list the destinations of at most a
	// partition's worth of blocks.
	f.mapped = make([]bool, n)
	if 4*(int64(len(q))+rejoinPairs) <= room {
		f.maps = memBuckets(4 * (int64(len(q)) + rejoinPairs))
	} else {
		f.bounds = boundaries(f.fileChunks(), f.capacity())
		var err error
		if f.maps, err = newBuckets(f.tmpdir, len(f.bounds)+1, &f.temp); err != nil {
			return err
		}
		f.buf = make([]words, 0, f.capacity())
	}
	defer func() {
		if errors.Is(err, errGroupAll) {
			f.maps.close()
			f.maps, f.bounds, f.buf, f.mapped = nil, nil, nil, nil
		}
	}()

	// What a base entry of each file id is now: as state says, or void
	// (skip) when the delta supersedes the file's entries in the base.
	const skip = withClones + 1
	bstate := state
	if t.delta != nil {
		bstate = slices.Clone(state)
		for id := range bstate {
			if t.delta.Superseded.Has(int64(id)) {
				bstate[id] = skip
			}
		}
	}
	// A new base takes the entries still valid of the base; a delta
	// takes none of them.
	baseKept := w != nil && !w.Delta()
	var di *sumtab.Iter
	if t.delta != nil {
		di = t.delta.Iter()
		defer di.Close()
	}
	next := func(it *sumtab.Iter) (sumtab.Entry, bool) {
		if it == nil {
			return sumtab.Entry{}, false
		}
		return it.Next()
	}
	de, dok := next(di)
	qi := 0
	// other is the least sum of the delta and q still to come, if any.
	var other uint64
	var otherOK bool
	peek := func() {
		switch {
		case dok && qi < len(q):
			other, otherOK = min(de.Sum, q[qi].sum), true
		case dok:
			other, otherOK = de.Sum, true
		case qi < len(q):
			other, otherOK = q[qi].sum, true
		default:
			other, otherOK = 0, false
		}
	}
	peek()
	var seen, shown int64
	total := t.base.Entries + deltaEntries
	// finish makes the group of sum s from base, the base's entries of
	// that sum that are not void, and those of the delta and of q; makes
	// its mappings again if it is touched (it lost a member, or holds a
	// regrouped one); and writes its entries.
	//
	// A touched group that lost no member that may have been its source
	// holds its source of the last run and every other member it held
	// then but those it lost, with the same files, sizes and order: if
	// its source is one of those, it was the source then too, and the
	// mappings between two such members are the last run's, none of
	// which could be deduplicated (both files would have been left
	// unsettled, and so be regrouped). Only the mappings naming a newer
	// member are added; the files of the others are marked all the same,
	// so that their extents are looked at, as a full run would.
	finish := func(s uint64, base []sumtab.Entry) error {
		touched, lostMember := false, false
		touchedByAdd = false
		for _, e := range base {
			void, lost := add(e)
			touched = touched || lost
			lostMember = lostMember || lost
			if !void && baseKept {
				put(e)
			}
		}
		for ; dok && de.Sum == s; de, dok = next(di) {
			seen++
			void, lost := add(de)
			touched = touched || lost
			lostMember = lostMember || lost
			if !void {
				put(de)
			}
		}
		touched = touched || touchedByAdd // a member rejoining
		// q holds the files changed, which no clone joins (see clones).
		for ; qi < len(q) && q[qi].sum == s; qi++ {
			touched = true
			g = append(g, q[qi])
			newer = append(newer, q[qi].at)
			put(sumtab.Entry{Sum: s, File: uint32(f.files[q[qi].at.file()].id), Block: uint32(q[qi].at.block())})
		}
		peek()
		if touched && len(g) > 1 {
			// g is one sum's group, in no order: appendGroup needs none.
			slices.Sort(newer)
			lostSource := lostRank > 0 && f.mayHaveLed(lostRank, g, newer)
			if lostMember && !lostSource {
				f.sum.Partial++
			}
			if err := f.someGroups(g, !lostSource, newer); err != nil {
				return err
			}
		}
		if len(es) > 0 {
			w.Add(es...)
		}
		g, es, newer, lostRank = g[:0], es[:0], newer[:0], 0
		return nil
	}
	// The base streams by in batches. Most of its groups are left as
	// they are: an entry costs a look at its file's state, and a group
	// whose entries are all of members, with no entry of the delta or of
	// q, costs no more.
	var raw []sumtab.Entry // the base's entries of sum cur not void
	var cur uint64
	slow := false // raw holds an entry that is not a plain member's
	end := func() error {
		if slow || (otherOK && other == cur) {
			if err := finish(cur, raw); err != nil {
				return err
			}
		} else if baseKept && len(raw) > 0 {
			w.Add(raw...)
		}
		raw, slow = raw[:0], false
		return nil
	}
	bi := t.base.Iter()
	defer bi.Close()
	started := false
	var rest []sumtab.Entry
	for {
		if len(rest) == 0 {
			if rest = bi.Batch(); rest == nil {
				break
			}
		}
		batch := rest[:min(len(rest), baseBatch)]
		rest = rest[len(batch):]
		for i := 0; i < len(batch); {
			// The entries from i up to j are of members, with sums
			// below any of the delta or q: of groups left as they are,
			// but for the one at hand (cur) and the last, which the
			// entries after j may touch.
			lim := other
			if !otherOK {
				lim = math.MaxUint64
			}
			j := i
			for j < len(batch) && batch[j].Sum < lim && int64(batch[j].File) < int64(len(bstate)) && bstate[batch[j].File] == member {
				j++
			}
			if j > i {
				a := i
				for started && a < j && batch[a].Sum == cur {
					a++
				}
				raw = append(raw, batch[i:a]...)
				if a < j {
					if started {
						if err := end(); err != nil {
							return err
						}
					}
					b := j - 1
					for b > a && batch[b-1].Sum == batch[j-1].Sum {
						b--
					}
					if baseKept && b > a {
						w.Add(batch[a:b]...)
					}
					raw = append(raw, batch[b:j]...)
					cur, started = batch[b].Sum, true
				}
			}
			if j == len(batch) {
				break
			}
			e := batch[j]
			i = j + 1
			if e.Sum != cur || !started {
				if started {
					if err := end(); err != nil {
						return err
					}
				}
				for otherOK && other < e.Sum {
					if err := finish(other, nil); err != nil {
						return err
					}
				}
				cur, started = e.Sum, true
			}
			st := uint8(lost)
			if int64(e.File) < int64(len(bstate)) {
				st = bstate[e.File]
			}
			switch st {
			case member:
				raw = append(raw, e)
			case skip:
			default: // lost (the void entry only marks its group), regrouped or with clones
				raw = append(raw, e)
				slow = true
			}
		}
		if seen += int64(len(batch)); seen-shown >= 1<<20 {
			shown = seen
			f.o.progress("looking up sums", seen, total, "blocks")
			if err := f.ctx.Err(); err != nil {
				return err
			}
		}
	}
	if started {
		if err := end(); err != nil {
			return err
		}
	}
	for otherOK {
		if err := finish(other, nil); err != nil {
			return err
		}
	}
	f.o.progress("looking up sums", seen, total, "blocks")
	for _, it := range []*sumtab.Iter{bi, di} {
		if it != nil && it.Err() != nil {
			f.o.warn(t.path, fmt.Errorf("%w: every sum grouped again", it.Err()))
			return errGroupAll
		}
	}
	// The aliases still valid stay aliases.
	for of, cs := range aliasesOf {
		for _, c := range cs {
			if !changed[c] {
				f.alias(c, int(pos[of]))
			}
		}
	}
	t.regrouped = len(ids) + rejoined
	f.redo = redo
	for _, cs := range clones {
		t.cloned += len(cs)
	}
	f.sum.Partitions = f.maps.len() // the lists of mappings
	return f.maps.done()
}

// holderOf returns a function giving, for the id an alias names, the id
// of the file that holds the entries: that id, or, where the table names
// an alias of an alias (tools before 2026-12-07 wrote such an alias for
// the clone of a file regrouped as left unsettled, and the next run
// found no entry of the clone), the file the chain ends at.
func holderOf(aliases []sumtab.Alias) func(uint32) uint32 {
	var isAlias sumtab.Set // most ids named are no alias: one look
	for _, a := range aliases {
		isAlias.Add(int64(a.File))
	}
	var m map[uint32]uint32 // aliases not sorted by file
	if !slices.IsSortedFunc(aliases, func(a, b sumtab.Alias) int { return cmp.Compare(a.File, b.File) }) {
		m = make(map[uint32]uint32, len(aliases))
		for _, a := range aliases {
			m[a.File] = a.Of
		}
	}
	return func(id uint32) uint32 {
		for range len(aliases) { // a chain is no longer than the aliases
			if !isAlias.Has(int64(id)) {
				return id
			}
			if m != nil {
				id = m[id]
				continue
			}
			k, _ := slices.BinarySearchFunc(aliases, id, func(a sumtab.Alias, id uint32) int { return cmp.Compare(a.File, id) })
			id = aliases[k].Of
		}
		return id
	}
}

// mayHaveLed reports whether a member lost by group g (sorted), ranked
// rank as a source at the last run, may have been its source: whether it
// ranked as high as the best member of some class of g's members then
// (those not in newer, sorted), which keep their ranks. A tie may have
// gone either way (the first by path led).
func (f *finder) mayHaveLed(rank uint64, g []pair, newer []loc) bool {
	type best struct {
		class int64
		rank  uint64
	}
	var bs []best
	for _, p := range g {
		if _, ok := slices.BinarySearch(newer, p.at); ok {
			continue
		}
		fi := p.at.file()
		c, r := f.sources.of(p.at), f.sources.rank[fi]
		k := slices.IndexFunc(bs, func(b best) bool { return b.class == c })
		if k < 0 {
			bs = append(bs, best{c, r})
		} else {
			bs[k].rank = max(bs[k].rank, r)
		}
	}
	for _, b := range bs {
		if rank >= b.rank {
			return true
		}
	}
	return false
}

// baseBatch is the most entries of the base regroup looks at in one batch
// (tests make it small, to cut groups across batches).
var baseBatch = math.MaxInt

// fileChunks counts the blocks of each chunk of each file (see
// chunkCount): at most the mappings whose destination it holds.
func (f *finder) fileChunks() []chunkCount {
	var out []chunkCount
	for i := range f.files {
		n := f.files[i].blocks(f.bs)
		for b := int64(0); b < n; b += index.ChunkBlocks {
			out = append(out, chunkCount{mkloc(i, b), min(index.ChunkBlocks, n-b)})
		}
	}
	return out
}

// originSums returns the sums of file i from those regroup holds of its
// origin, if i is a clone (index.File.CloneOf) of a file of the same size
// unchanged since the copy, whose sums are held: the clone shares them
// (files.blocks_of), whatever row holds them now.
func (f *finder) originSums(i int, pos fileIndex) ([]byte, bool) {
	c := &f.files[i]
	sq := f.seqs[c.id]
	if sq.cloneOf <= 0 {
		return nil, false
	}
	o, ok := pos.of(sq.cloneOf)
	if !ok || f.seqs[f.files[o].id].changed != sq.cloneSeq || f.files[o].Size != c.Size {
		return nil, false
	}
	sums, ok := f.held[f.files[o].id]
	return sums, ok
}

// clones finds the files changed since the table that are clones of a
// file in it (index.File.CloneOf: hashfile recorded a file of a read-only
// snapshot with the row of its origin's, sums and extents) and joins them
// to their origin's groups: each takes its origin's entries as they are
// read, and is not regrouped. A clone holds its origin's sums at the same
// physical places; so where its origin was settled, every mapping a group
// gains from it is as shared as one of its origin's: the clone as a
// destination, mapped to a source its origin shares storage with, or as
// the source in the place of one its origin shares storage with. Data
// inline is shared with nothing: a clone could take the place of a source
// whose data is inline, had its origin that source's size (the source is
// the largest file, then the first by path); so the origin is a block or
// larger, or inline itself (the clone's mappings are then shared with
// nothing too), or no file of its size is inline. A group it joins needs
// no look. It is so for an origin unchanged since the table and since
// the clone copied it (CloneSeq), in the clone's class; and not with
// Options.NoReadOnly, which makes a file of a read-only snapshot a source
// before any other. An origin that the last run left unsettled is
// regrouped: its clones then join its groups as they are made again,
// with their mappings made as if they were regrouped too, without their
// sums sorted with the others (on a host of hourly snapshots, a copy in
// each of the day's snapshots of every file left unsettled). It returns
// the clones by origin. The table written names each clone an alias of
// the file whose entries it takes (see finder.alias), without entries of
// its own.
func (f *finder) clones(changed, redo []bool, pos fileIndex) map[int][]int {
	clones := make(map[int][]int)
	if f.o.NoReadOnly {
		return clones
	}
	inlineSizes := make(map[int64]bool)
	for i := range f.files {
		if f.files[i].inline {
			inlineSizes[f.files[i].Size] = true
		}
	}
	for i := range f.files {
		c := &f.files[i]
		sq := f.seqs[c.id]
		o, ok := pos.of(sq.cloneOf)
		if !changed[i] || sq.cloneOf <= 0 || !ok {
			continue
		}
		of := &f.files[o]
		if changed[o] || f.seqs[of.id].changed != sq.cloneSeq || of.Size != c.Size || of.class != c.class ||
			(of.Size < f.bs && !of.inline && inlineSizes[of.Size]) {
			continue
		}
		clones[o] = append(clones[o], i)
		redo[i] = false
	}
	return clones
}

// commitTable commits the table this run wrote, with the files in scope
// and those left unsettled.
func (f *finder) commitTable() {
	t := f.tab
	if t == nil || t.w == nil {
		return
	}
	var sets sumtab.Sets
	var ranks []sumtab.Rank
	for i := range f.files {
		fl := &f.files[i]
		sets.Files.Add(fl.id)
		if (f.o.Live && f.mapped[i]) || (!f.o.Live && t.need[i]) {
			sets.Unsettled.Add(fl.id)
		}
		if t.named[i] || fl.stale {
			// Mapped again by the next run: what the plan changes, and a
			// file changed or gone since it was hashed, which a run that
			// took it as recorded would plan.
			sets.Named.Add(fl.id)
		}
		if t.sources[i] || (t.regrouped >= 0 && t.was[i]) {
			ranks = append(ranks, sumtab.Rank{File: uint32(fl.id), Rank: f.sources.rank[i]})
		}
	}
	slices.SortFunc(ranks, func(a, b sumtab.Rank) int { return cmp.Compare(a.File, b.File) })
	delta := t.w.Delta()
	if delta {
		sets.Superseded = t.superseded
	}
	slices.SortFunc(t.aliases, func(a, b sumtab.Alias) int { return cmp.Compare(a.File, b.File) })
	err := t.w.Commit(sets, ranks, t.aliases)
	t.w = nil
	if err != nil {
		f.o.warn(t.path, fmt.Errorf("%w: the next run groups every sum again", err))
		return
	}
	if !delta {
		os.Remove(t.path + ".delta")
	}
}
