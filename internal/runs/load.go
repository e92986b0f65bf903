package runs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/walk"
)

// load reads the files in scope, sorted by path, without their extents:
// those of the files a mapping names are read once grouping has found
// them, as they are now (remap) or as recorded (Find), and the others'
// are never looked at.
func load(ctx context.Context, ix *index.Index, o Options, bs int64, sum *Summary) ([]file, fileIndex, []rowSeq, error) {
	vols, err := ix.Volumes(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	// Room for every file at once: growing the slice as it fills took
	// a third of a re-run's loading (copies, and the page faults of each
	// new array). Ids are given in order; the room the gaps of deleted
	// files leave is never touched, and so never takes memory.
	maxID := ix.MaxFileID(ctx)
	files := make([]file, 0, maxID)
	seqs := make([]rowSeq, maxID+1)
	classOf := classes()
	volOf := make(map[fsys.Volume]*volume)
	can := canDedupe(vols, o.Live, o.Warn)
	var total, n int64
	if o.Progress != nil {
		total = count(ctx, ix, "files")
	}
	// The files with compressed or inline extents, read meanwhile, by id
	// (ids are dense: a byte an id costs less than a map's entry).
	flagged := make([]uint8, maxID+1)
	var flaggedErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		flaggedErr = ix.FlaggedFiles(ctx, func(id int64, flags uint32) error {
			if id >= int64(len(flagged)) { // written since MaxFileID
				flagged = append(flagged, make([]uint8, id+1-int64(len(flagged)))...)
			}
			if flags&fiemap.FlagEncoded != 0 {
				flagged[id] |= flagEncoded
			}
			if flags&fiemap.FlagDataInline != 0 {
				flagged[id] |= flagInline
			}
			return nil
		})
	})
	defer wg.Wait()
	err = ix.Files(ctx, func(f index.File) error {
		if n++; n%4096 == 0 {
			o.progress("loading files", n, total, "files")
		}
		if f.Path == "" || (len(o.Include) > 0 && !walk.Matches(o.Include, f.Path)) || walk.Matches(o.Exclude, f.Path) {
			return nil
		}
		if index.Legacy(f.Vol) {
			sum.Unnamed++
			return nil
		}
		if !can(f) {
			return nil
		}
		uid := int64(-1)
		if o.SameOwner {
			if f.UID == index.UIDUnknown {
				sum.Unnamed++
				return nil
			}
			uid = f.UID
		}
		if (f.Size+bs-1)/bs >= 1<<32 {
			// A location holds the block number in 32 bits.
			o.warn(f.Path, fmt.Errorf("%s: %d blocks, more than findsame plans in one file (2^32): left out", f.Path, (f.Size+bs-1)/bs))
			return nil
		}
		vol := volOf[f.Vol]
		if vol == nil {
			v := vols[f.Vol]
			vol = &volume{Volume: f.Vol, btrfs: v.Magic == fstype.Btrfs, fsBlock: cmp.Or(v.BlockSize, bs)}
			volOf[f.Vol] = vol
		}
		files = append(files, file{
			id: f.ID, path: f.Path,
			vol: vol, Ino: f.Ino, Size: f.Size, Mtime: f.Mtime,
			class: classOf(f.Vol.FS, f.NoCOW == index.NoCOWSet, uid),
		})
		if f.ID >= int64(len(seqs)) { // written since MaxFileID
			seqs = append(seqs, make([]rowSeq, f.ID+1-int64(len(seqs)))...)
		}
		seqs[f.ID] = rowSeq{changed: f.Changed, sums: f.SumsChanged, cloneOf: f.CloneOf, cloneSeq: f.CloneSeq}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if sum.Unnamed > 0 {
		o.warn("", fmt.Errorf("%d files left out: recorded by an older hashfile or without their owner; run hashfile again", sum.Unnamed))
	}
	if len(files) >= 1<<31 {
		return nil, nil, nil, fmt.Errorf("too many files (%d)", len(files))
	}
	if o.Live {
		markReadOnly(files, o.NoReadOnly)
	}
	if wg.Wait(); flaggedErr != nil {
		return nil, nil, nil, flaggedErr
	}
	for i := range files {
		if id := files[i].id; id < int64(len(flagged)) {
			files[i].encoded = flagged[id]&flagEncoded != 0
			files[i].inline = flagged[id]&flagInline != 0
		}
	}
	sortByPath(files)
	o.progress("loading files", n, total, "files")
	return files, newFileIndex(files), seqs, nil
}

// sortByPath sorts files by path. The index gives them in the order of
// their ids, which is mostly that of their paths (a walk records a
// directory's files in order, and a night's new files come in runs of
// their own), so it merges the ascending runs it finds, in passes over
// their positions, and then moves each file once: sorting the records
// themselves moved them about many times, and compared their paths in
// as many rounds as if they came in no order (0.75 s at 1.9 million
// files that came in three runs).
func sortByPath(files []file) {
	less := func(a, b int32) bool { return files[a].path < files[b].path }
	bounds := []int{0} // where each ascending run starts, then len(files)
	for i := 1; i < len(files); i++ {
		if files[i].path < files[i-1].path {
			bounds = append(bounds, i)
		}
	}
	if len(bounds) == 1 {
		return
	}
	bounds = append(bounds, len(files))
	at := make([]int32, len(files)) // the files, by their positions before
	for i := range at {
		at[i] = int32(i)
	}
	buf := make([]int32, len(files))
	for len(bounds) > 2 {
		next := bounds[:0:0]
		for r := 0; r+1 < len(bounds); r += 2 {
			lo, mid := bounds[r], bounds[r+1]
			next = append(next, lo)
			if r+2 == len(bounds) { // a run left over
				copy(buf[lo:mid], at[lo:mid])
				continue
			}
			hi := bounds[r+2]
			i, j, k := lo, mid, lo
			for ; i < mid && j < hi; k++ {
				if less(at[j], at[i]) {
					buf[k], j = at[j], j+1
				} else {
					buf[k], i = at[i], i+1
				}
			}
			k += copy(buf[k:], at[i:mid])
			copy(buf[k:], at[j:hi])
		}
		bounds = append(next, len(files))
		at, buf = buf, at
	}
	// Each file to its place, following each cycle of the permutation.
	for i := range at {
		if int(at[i]) == i {
			continue
		}
		f := files[i]
		j := i
		for {
			k := int(at[j])
			at[j] = int32(j)
			if k == i {
				files[j] = f
				break
			}
			files[j] = files[k]
			j = k
		}
	}
}

// What load's reading of the files with flagged extents notes of a file.
const (
	flagEncoded = 1 << iota // a compressed extent
	flagInline              // an inline extent
)

// fileIndex finds the files by their ids in the index: the position in
// files of the file with each id, -1 for ids of no file in scope. The
// index gives ids in order, so they are dense: 4 bytes an id took less
// memory than a map (about 36 bytes a file), and is looked up faster,
// for every chunk of sums and every extent read.
type fileIndex []int32

func newFileIndex(files []file) fileIndex {
	var maxID int64 = -1
	for i := range files {
		maxID = max(maxID, files[i].id)
	}
	pos := make(fileIndex, maxID+1)
	for i := range pos {
		pos[i] = -1
	}
	for i := range files {
		pos[files[i].id] = int32(i)
	}
	return pos
}

// of returns the position in files of the file with the given id, and
// whether there is one in scope.
func (p fileIndex) of(id int64) (int, bool) {
	if id < 0 || id >= int64(len(p)) || p[id] < 0 {
		return 0, false
	}
	return int(p[id]), true
}

// loadExtents reads the recorded extents of the files that want marks (by
// index in files; nil: all) into them: those kept (kx, if not nil) of
// the files unchanged since, and the others from the index, file by file
// when they are few (a re-run regrouping what changed), else in one scan
// of the index by two readers, after which kx keeps what was read.
func loadExtents(ctx context.Context, ix *index.Index, files []file, byID fileIndex, want []bool, o *Options, kx *keptExtents) error {
	if want != nil && !slices.Contains(want, true) {
		return nil // none wanted: the kept extents are not read either
	}
	wanted := want
	var kept []extentRef // files whose extents are another's, as kept
	var own []bool       // files holding extents of their own, as kept or scanned
	if kx != nil && kx.x != nil {
		have, ko, refs, err := kx.take(files, byID, want)
		if err != nil {
			o.warn(kx.path, fmt.Errorf("%w: every extent read from the index", err))
		} else {
			own, kept = ko, refs
			rest := make([]bool, len(files))
			for i := range files {
				rest[i] = (want == nil || want[i]) && !have[i]
			}
			want = rest
		}
	}
	var scanCost int64 // of the index, in extent rows; 0: not known
	if own == nil {
		own = make([]bool, len(files))
	} else {
		// The index holds at least what was kept. Its references cost
		// a scan about a fifth of what its extent rows cost (one column
		// where those have nine).
		scanCost = kx.rows + kx.refs/5
	}
	refs, scanned, err := readExtents(ctx, ix, files, byID, want, own, scanCost, o)
	if err != nil {
		return err
	}
	takeRefs(files, kept)
	if scanned && kx != nil {
		kx.write(files, own, append(kept, refs...))
	}
	// Those read only for the files that refer to them go.
	if wanted != nil {
		for i := range files {
			if own[i] && !wanted[i] {
				files[i].extents = nil
			}
		}
	}
	return nil
}

// readExtents reads from the index the recorded extents of the files
// that want marks (nil: all), file by file or by a scan of the index,
// whichever costs less by scanCost (what a scan costs, in extent rows; 0
// if not known), marking in own those that hold extents of their own when
// it scans (scanned): the files that refer to another's extents, found
// in scope, are refs.
func readExtents(ctx context.Context, ix *index.Index, files []file, byID fileIndex, want, own []bool, scanCost int64, o *Options) (refs []extentRef, scanned bool, err error) {
	var wanted int64
	for i := range files {
		if want == nil || want[i] {
			wanted++
		}
	}
	if wanted == 0 {
		return nil, false, nil
	}
	// A file read by a query of its own cost about 13 us, an extent row
	// scanned 1.3 us (the driver's work for each column: a night of
	// hourly snapshots read 115,453 files one by one in 1.5 s, where a
	// scan of its 185,372 rows and 925,000 references took 0.5 s): they
	// are read one by one where they are fewer than a tenth of the rows
	// (scanCost), and than an eighth of the files.
	if wanted*8 < int64(len(files)) && (scanCost == 0 || wanted*10 < scanCost) {
		// A query a file, on two connections at once: the driver's work
		// for each column is most of it. Progress is told by the first.
		var done atomic.Int64
		var wg sync.WaitGroup
		const readers = 2
		errs := make([]error, readers)
		for r := range readers {
			wg.Go(func() {
				k := 0
				for i := range files {
					if !want[i] {
						continue
					}
					if k++; k%readers != r {
						continue
					}
					if n := done.Add(1); r == 0 && n%256 < readers {
						o.progress("loading extents", n, wanted, "files")
					}
					ext, err := ix.Extents(ctx, files[i].id)
					if err != nil {
						errs[r] = err
						return
					}
					files[i].extents = ext
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, false, err
		}
		o.progress("loading extents", wanted, wanted, "files")
		return nil, false, nil
	}
	// A file that refers to another's extents (files.extents_of: a file
	// of a snapshot) has no rows of its own: the scan reads the other's,
	// and it takes them as read through the reference (index.Shared); one
	// whose other is out of scope reads them by itself. The references
	// and the scan are read apart: where a write came between (hashfile
	// running meanwhile), each file that referred reads its own, as a
	// file read alone is read as it was before or after a write.
	w, err := ix.Watch(ctx)
	if err != nil {
		return nil, false, err
	}
	defer w.Close()
	var alone []int
	wantOf, cloned := want, false
	err = ix.ExtentRefs(ctx, func(id, of int64) error {
		i, ok := byID.of(id)
		if !ok || (want != nil && !want[i]) {
			return nil
		}
		j, ok := byID.of(of)
		if !ok {
			alone = append(alone, i)
			return nil
		}
		refs = append(refs, extentRef{i, j})
		if wantOf != nil && !wantOf[j] && !own[j] { // not kept already
			if !cloned {
				wantOf, cloned = slices.Clone(want), true
			}
			wantOf[j] = true
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if fault != nil {
		fault("references read")
	}
	var total int64
	if o.Progress != nil {
		total = count(ctx, ix, "extents")
	}
	// The extents come file by file, in id order within each reader's
	// share. Each file's are cut from slabs of many files' (a slice a
	// file, grown extent by extent, cost more than reading them; one
	// slice for all, grown, more still): a file's extents that outgrow
	// their slab move to the next.
	const slabSize = 1 << 16
	const readers = 2
	type cut struct {
		slab   []fiemap.Extent
		start  int
		lastID int64
		_      [64]byte // apart from the other reader's, in the cache
	}
	var cuts [readers]cut
	for r := range cuts {
		cuts[r].lastID = -1
	}
	var n atomic.Int64
	err = ix.ScanExtents(ctx, readers, func(r int, id int64, e fiemap.Extent) error {
		if k := n.Add(1); r == 0 && k%4096 < readers {
			o.progress("loading extents", k, total, "extents")
		}
		i, ok := byID.of(id)
		if !ok || (wantOf != nil && !wantOf[i]) {
			return nil
		}
		c := &cuts[r]
		if id != c.lastID {
			if id < c.lastID {
				return fmt.Errorf("read extents: file %d after file %d", id, c.lastID)
			}
			c.start, c.lastID = len(c.slab), id
		}
		if len(c.slab) == cap(c.slab) {
			next := make([]fiemap.Extent, 0, max(slabSize, 2*(len(c.slab)-c.start)))
			c.slab, c.start = append(next, c.slab[c.start:]...), 0
		}
		c.slab = append(c.slab, e)
		files[i].extents = c.slab[c.start:len(c.slab):len(c.slab)]
		return nil
	})
	o.progress("loading extents", n.Load(), total, "extents")
	if err != nil {
		return nil, false, err
	}
	// The files scanned hold what the scan gave them: all of their own
	// extents, or none.
	isRef := make([]bool, len(files))
	for _, r := range refs {
		isRef[r.i] = true
	}
	for _, i := range alone {
		isRef[i] = true
	}
	for i := range files {
		if (wantOf == nil || wantOf[i]) && !isRef[i] {
			own[i] = true
		}
	}
	changed, err := w.Changed(ctx)
	if err != nil {
		return nil, false, err
	}
	if changed {
		for _, r := range refs {
			alone = append(alone, r.i)
		}
		refs = nil
	} else {
		takeRefs(files, refs)
	}
	for _, i := range alone {
		if files[i].extents, err = ix.Extents(ctx, files[i].id); err != nil {
			return nil, false, err
		}
	}
	return refs, !changed, nil
}

// fault, when set (by tests), is called at points of the loading.
var fault func(point string)

// extentRef says that file i (a position in files) refers to the
// extents of file of (files.extents_of).
type extentRef struct{ i, of int }

// takeRefs gives each file i of refs the extents of file of, as read
// through the reference (index.Shared): the same slice where that
// changes none, else a copy.
func takeRefs(files []file, refs []extentRef) {
	var slab []fiemap.Extent
	for _, r := range refs {
		i, of := r.i, r.of
		ext := files[of].extents
		same := true
		for _, e := range ext {
			if index.Shared(e) != e {
				same = false
				break
			}
		}
		if same {
			files[i].extents = ext
			continue
		}
		if cap(slab)-len(slab) < len(ext) {
			slab = make([]fiemap.Extent, 0, max(1<<12, len(ext)))
		}
		start := len(slab)
		for _, e := range ext {
			slab = append(slab, index.Shared(e))
		}
		files[i].extents = slab[start:len(slab):len(slab)]
	}
}

// count returns the number of rows of table, or 0 if that cannot be read:
// it is for progress only.
func count(ctx context.Context, ix *index.Index, table string) int64 {
	var n int64
	ix.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n
}

// storedSums returns the number of block sums the index holds, or a
// number larger than any index's if that cannot be read.
func storedSums(ctx context.Context, ix *index.Index) int64 {
	n, err := ix.StoredSums(ctx)
	if err != nil {
		return math.MaxInt64
	}
	return n
}

// classes returns a function numbering the classes of files that can
// share storage: those of one filesystem (btrfs subvolumes included) with
// the same NOCOW attribute, and the same owner where uid is not -1.
func classes() func(fs string, nocow bool, uid int64) int32 {
	type class struct {
		fs    string
		nocow bool
		uid   int64
	}
	m := make(map[class]int32)
	return func(fs string, nocow bool, uid int64) int32 {
		k := class{fs, nocow, uid}
		c, ok := m[k]
		if !ok {
			c = int32(len(m))
			m[k] = c
		}
		return c
	}
}

// loadReferrers returns rewrites' more: for a disk extent that file fi
// refers to by e, it gives the files of the index in scope that refer to
// it too, on btrfs and not found changed since hashed, but have no
// extents at hand (grouping mapped none of their blocks, or a night
// did not regroup them) their recorded extents, which hashfile keeps
// current (see settle), and reports whether it gave any. They are taken
// as settled: nothing of theirs is mapped again. Each extent is looked up
// once.
func loadReferrers(ctx context.Context, ix *index.Index, files []file, byID fileIndex) func(fi int, e fiemap.Extent) (bool, error) {
	type key struct {
		fs                 string
		start, length, gen int64
	}
	asked := make(map[key]bool)
	return func(fi int, e fiemap.Extent) (bool, error) {
		if e.DiskStart == 0 || e.Gen == 0 {
			return false, nil // no key that proves the extent the same
		}
		k := key{files[fi].vol.FS, e.DiskStart, e.DiskLen, e.Gen}
		if asked[k] {
			return false, nil
		}
		asked[k] = true
		ids, err := ix.Referrers(ctx, k.fs, k.start, k.length, k.gen)
		if err != nil {
			return false, err
		}
		gave := false
		for _, id := range ids {
			j, ok := byID.of(id)
			if !ok || files[j].extents != nil || files[j].stale || !files[j].vol.btrfs {
				continue
			}
			ext, err := ix.Extents(ctx, id)
			if err != nil {
				return false, err
			}
			if len(ext) > 0 {
				files[j].extents, files[j].settled, gave = ext, true, true
			}
		}
		return gave, nil
	}
}
