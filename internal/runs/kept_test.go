package runs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/plan"
	"same/internal/sumtab"
)

// keptHost is an index of files made of pieces of shared blobs, most of
// them stored once (their extents at the blob's place), some copies not
// shared yet, changed a little at a time.
type keptHost struct {
	t     *testing.T
	rng   *rand.Rand
	ix    *index.Index
	files map[uint64]*keptFile // by key
	ino   uint64
	phys  int64 // the next free physical place
	mtime int64
}

type keptPiece struct {
	blob, off, n int
	fresh        bool  // a copy of its own, not shared yet
	at           int64 // where a fresh copy is stored
}

type keptFile struct {
	path   string
	key    uint64 // in keptHost.files
	vol    uint64 // in devices: 7, or 8 for a snapshot's copy
	ino    uint64
	pieces []keptPiece
	mtime  int64
}

const keptBlobs, keptBlobBlocks = 30, 48

// blobSum is the sum of block k of blob b: zero for every eighth block of
// every third blob, so that runs are joined across zero blocks (bridge),
// in re-runs too.
func blobSum(b, k int) uint64 {
	if b%3 == 0 && k%8 == 5 {
		return 0
	}
	return uint64(b*1000+k+1)*0x9E3779B97F4A7C15 | 1
}

func newKeptHost(t *testing.T) *keptHost { return newKeptHostSeeded(t, 3, 4) }

func newKeptHostSeeded(t *testing.T, seed1, seed2 uint64) *keptHost {
	h := emptyKeptHost(t, seed1, seed2)
	h.tx(func(tx *index.Tx) {
		for range 60 {
			h.put(tx, h.newFile(), 0.1)
		}
	})
	return h
}

// emptyKeptHost is a keptHost with its two volumes and no files.
func emptyKeptHost(t *testing.T, seed1, seed2 uint64) *keptHost {
	ix := newIndex(t)
	h := &keptHost{t: t, rng: rand.New(rand.NewPCG(seed1, seed2)), ix: ix, files: make(map[uint64]*keptFile), phys: 1 << 40}
	h.tx(func(tx *index.Tx) {
		for _, v := range []uint64{7, 8} {
			if err := tx.PutVolume(fsys.Info{Volume: devices[v], Magic: fstype.Btrfs, BlockSize: bs}, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
	return h
}

func (h *keptHost) tx(fn func(*index.Tx)) {
	tx, err := h.ix.Begin(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	fn(tx)
	if err := tx.Commit(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *keptHost) newFile() *keptFile {
	h.ino++
	f := &keptFile{path: fmt.Sprintf("/m/%03d", h.rng.IntN(1000)), key: h.ino, vol: 7, ino: h.ino}
	for h.pathTaken(f) {
		f.path += "x"
	}
	h.files[f.key] = f
	return f
}

func (h *keptHost) pathTaken(f *keptFile) bool {
	for _, g := range h.files {
		if g != f && g.path == f.path {
			return true
		}
	}
	return false
}

// put gives f new content, each piece a fresh copy with probability
// fresh, and records it.
func (h *keptHost) put(tx *index.Tx, f *keptFile, fresh float64) {
	f.pieces = nil
	for range 1 + h.rng.IntN(4) {
		b := h.rng.IntN(keptBlobs + 10) // blobs past keptBlobs are unique to the file
		off := h.rng.IntN(keptBlobBlocks - 1)
		p := keptPiece{blob: b, off: off, n: 1 + h.rng.IntN(keptBlobBlocks-off)}
		if b >= keptBlobs {
			p.blob = 1000 + int(f.ino)*10 + len(f.pieces)
			p.fresh = true
		} else if h.rng.Float64() < fresh {
			p.fresh = true
		}
		if p.fresh {
			p.at = h.phys
			h.phys += int64(p.n)*bs + 1<<20
		}
		f.pieces = append(f.pieces, p)
	}
	h.mtime++
	f.mtime = h.mtime
	h.record(tx, f, true)
}

// record writes f's row: its sums and extents with all, else its extents.
func (h *keptHost) record(tx *index.Tx, f *keptFile, all bool) {
	var sums []byte
	var ext []fiemap.Extent
	for _, p := range f.pieces {
		at := p.at
		if !p.fresh {
			at = int64(p.blob+1)<<32 + int64(p.off)*bs
		}
		ext = append(ext, fiemap.Extent{Logical: int64(len(sums) / 8 * bs), Physical: at, Length: int64(p.n) * bs})
		for k := range p.n {
			sums = binary.LittleEndian.AppendUint64(sums, blobSum(p.blob, p.off+k))
		}
	}
	id := f.file()
	if all {
		if _, err := tx.Put(id, sums, ext); err != nil {
			h.t.Fatal(err)
		}
		return
	}
	fid, _, err := h.rowID(f)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := tx.SetExtents(fid, ext); err != nil {
		h.t.Fatal(err)
	}
}

func (f *keptFile) file() index.File {
	var n int64
	for _, p := range f.pieces {
		n += int64(p.n)
	}
	return index.File{Path: f.path, UID: 0, NoCOW: index.NoCOWUnset, Identity: fsys.Identity{Vol: devices[f.vol], Ino: f.ino,
		Size: n * bs, Mtime: f.mtime, Ctime: f.mtime}}
}

func (h *keptHost) rowID(f *keptFile) (id, changed int64, err error) {
	err = h.ix.DB().QueryRow("SELECT f.id, f.changed FROM files f JOIN volumes v ON v.id = f.vol WHERE f.ino = ? AND v.subvol = ?",
		int64(f.ino), int64(devices[f.vol].Subvol)).Scan(&id, &changed)
	return id, changed, err
}

// snapshot copies some files of volume 7 into volume 8, as hashfile
// records the files of a new read-only snapshot (index.Tx.Copy).
func (h *keptHost) snapshot(tx *index.Tx, inos []uint64) {
	for _, ino := range inos {
		o := h.files[ino]
		if o == nil || o.vol != 7 || h.rng.IntN(3) > 0 {
			continue
		}
		from, changed, err := h.rowID(o)
		if err != nil {
			h.t.Fatal(err)
		}
		h.ino++
		c := &keptFile{path: "/s" + o.path + fmt.Sprintf(".%d", h.ino), key: h.ino, vol: 8, ino: o.ino, pieces: slices.Clone(o.pieces), mtime: o.mtime}
		for _, g := range h.files {
			if g.vol == 8 && g.ino == o.ino {
				c = nil // one copy of an inode in the snapshot volume
			}
		}
		if c == nil {
			continue
		}
		if ok, err := tx.Copy(from, changed, c.file(), nil); err != nil || !ok {
			h.t.Fatalf("copy %s: %v, %v", o.path, ok, err)
		}
		h.files[c.key] = c
	}
}

// change changes a few files: new content, deduplicated copies (their
// extents recorded again), new files, a file deleted, a file renamed.
func (h *keptHost) change() {
	var inos []uint64
	snapshot := false
	h.tx(func(tx *index.Tx) {
		for ino := range h.files {
			inos = append(inos, ino)
		}
		slices.Sort(inos)
		for range 1 + h.rng.IntN(3) {
			h.put(tx, h.files[inos[h.rng.IntN(len(inos))]], 0.3)
		}
		for _, ino := range inos {
			f := h.files[ino]
			settled := false
			for i := range f.pieces {
				if p := &f.pieces[i]; p.fresh && p.blob < keptBlobs && h.rng.IntN(2) == 0 {
					p.fresh, settled = false, true
				}
			}
			if settled {
				h.record(tx, f, false)
			}
		}
		if h.rng.IntN(2) == 0 {
			f := h.files[inos[h.rng.IntN(len(inos))]]
			id, _, err := h.rowID(f)
			if err != nil {
				h.t.Fatal(err)
			}
			if err := tx.Delete(id); err != nil {
				h.t.Fatal(err)
			}
			delete(h.files, f.key)
		}
		for range h.rng.IntN(3) {
			h.put(tx, h.newFile(), 0.3)
		}
		// As hashfile does, in a transaction of its own: Copy takes a
		// row as committed, with its change number then.
		snapshot = h.rng.IntN(3) == 0
		if h.rng.IntN(2) == 0 {
			f := h.files[inos[h.rng.IntN(len(inos))]]
			if f != nil {
				f.path = fmt.Sprintf("/m/%03d", h.rng.IntN(1000))
				for h.pathTaken(f) {
					f.path += "y"
				}
				if err := tx.Rename(f.file()); err != nil {
					h.t.Fatal(err)
				}
				h.record(tx, f, true) // the size back
			}
		}
	})
	if snapshot {
		h.tx(func(tx *index.Tx) { h.snapshot(tx, inos) })
	}
}

func (h *keptHost) find(o Options) (string, Summary) {
	var out bytes.Buffer
	enc := plan.NewEncoder(&out)
	o.Rewrite = true
	o.Warn = func(path string, err error) { h.t.Errorf("warning: %v", err) }
	sum, err := Find(context.Background(), h.ix, o, enc.Write)
	if err != nil {
		h.t.Fatal(err)
	}
	return out.String(), sum
}

// A run with the table of sums kept prints what a full run prints, after
// each of many small changes, while it regroups only what changed.
func TestKeptTable(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testKeptTable(t, 0) })
	// The mappings of the groups made again in temporary files, and the
	// full runs in partitions.
	t.Run("spilled", func(t *testing.T) { testKeptTable(t, 32000) })
	// The table's entries looked at a few at a time: groups cut across
	// batches.
	t.Run("batches", func(t *testing.T) {
		defer func(n int) { baseBatch = n }(baseBatch)
		baseBatch = 3
		testKeptTable(t, 0)
	})
}

func testKeptTable(t *testing.T, budget int64) {
	h := newKeptHost(t)
	table := filepath.Join(filepath.Dir(h.ix.Path()), "index.db-sums")
	first, sum := h.find(Options{Table: table, Budget: budget})
	if sum.Regrouped != -1 || sum.Lines == 0 {
		t.Fatalf("first run: %+v; want every sum grouped, and lines", sum)
	}
	if full, _ := h.find(Options{Budget: budget}); full != first {
		t.Fatalf("first run with a table:\n%s\nwithout:\n%s", first, full)
	}
	regrouped, spilled, deltas, bases, cloned, partial := 0, 0, 0, 0, 0, 0
	for round := range 40 {
		h.change()
		before, _ := os.Stat(table)
		got, sum := h.find(Options{Table: table, Budget: budget})
		want, _ := h.find(Options{Budget: budget})
		if got != want {
			t.Fatalf("round %d (%+v): with the table:\n%s\nfull:\n%s", round, sum, got, want)
		}
		cloned += sum.Cloned
		partial += sum.Partial
		if sum.Regrouped >= 0 {
			regrouped++
			if sum.Partitions > 1 {
				spilled++
			}
			if sum.Regrouped >= len(h.files)/2 {
				t.Errorf("round %d: %d of %d files regrouped", round, sum.Regrouped, len(h.files))
			}
		}
		after, _ := os.Stat(table)
		if _, err := os.Stat(table + ".delta"); err == nil && os.SameFile(before, after) {
			deltas++
		} else if !os.SameFile(before, after) {
			bases++
		}
	}
	t.Logf("%d regrouped (%d with mappings in temporary files), %d deltas, %d bases, %d clones, %d groups that lost members but not their source", regrouped, spilled, deltas, bases, cloned, partial)
	if budget == 0 && (regrouped < 30 || deltas == 0 || bases < 2 || cloned < 20 || partial < 20) {
		t.Errorf("%d of 40 runs regrouped what changed, %d wrote a delta, %d a base, %d clones joined their origin's groups, %d groups lost members but not their source; want most, some, several, 20, 20", regrouped, deltas, bases, cloned, partial)
	}
	if budget > 0 && spilled < 5 {
		t.Errorf("%d of 40 runs regrouped what changed with the mappings in temporary files; want 5", spilled)
	}
	// The files of the snapshot that share their origin's sums in the
	// index are aliases in the table, their entries not stored: all of
	// them after a full run, most after runs that regrouped what changed
	// (a file whose origin changed since keeps entries of its own).
	latest := table
	if _, err := os.Stat(table + ".delta"); err == nil {
		latest = table + ".delta"
	}
	tb, err := sumtab.Open(latest)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	var sharing int
	if err := h.ix.DB().QueryRow("SELECT count(*) FROM files WHERE blocks_of IS NOT NULL").Scan(&sharing); err != nil || sharing < 10 || len(tb.Aliases) < sharing*3/4 {
		t.Errorf("%d files share another's sums, %v; the table has %d aliases; want 10, and most", sharing, err, len(tb.Aliases))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(table), ".*")); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}

// A table of sums kept for another index, made at the same path since
// (the old one deleted, its table left behind), is not used.
func TestKeptTableOtherIndex(t *testing.T) {
	table := filepath.Join(t.TempDir(), "index.db-sums")
	old := newKeptHost(t)
	if _, sum := old.find(Options{Table: table}); sum.Regrouped != -1 {
		t.Fatalf("first run: %+v; want every sum grouped", sum)
	}
	// Another index, of other files, made in as many transactions: the
	// same ids and write sequence numbers.
	h := newKeptHostSeeded(t, 5, 6)
	got, sum := h.find(Options{Table: table})
	if want, _ := h.find(Options{}); sum.Regrouped != -1 || got != want {
		t.Errorf("run with the table of another index: %+v; want every sum grouped, and the full run's plan", sum)
	}
}

// A group whose source is gone is mapped again whole: the members left
// were mapped to that source, not to each other, and may share nothing
// yet. Here the source holds its data inline (shared with nothing, so its
// mappings are not shareable and leave their files settled); once it is
// gone, the two copies left make a line. A run in between that does not
// touch the group keeps the source among the table's.
func TestKeptTableLostSource(t *testing.T) {
	h := emptyKeptHost(t, 3, 4)
	put := func(name string, sum uint64, ext fiemap.Extent) (id int64) {
		h.tx(func(tx *index.Tx) {
			h.ino++
			f := index.File{Path: name, NoCOW: index.NoCOWUnset, Identity: fsys.Identity{Vol: devices[7], Ino: h.ino, Size: 1000, Mtime: 1, Ctime: 1}}
			ext.Length = bs
			var err error
			if id, err = tx.Put(f, binary.LittleEndian.AppendUint64(nil, sum), []fiemap.Extent{ext}); err != nil {
				t.Fatal(err)
			}
		})
		return id
	}
	a := put("/m/a", blobSum(1, 1), fiemap.Extent{Flags: fiemap.FlagDataInline | fiemap.FlagNotAligned | fiemap.FlagLast})
	put("/m/b", blobSum(1, 1), fiemap.Extent{Physical: 1 << 30})
	put("/m/c", blobSum(1, 1), fiemap.Extent{Physical: 2 << 30})
	table := filepath.Join(filepath.Dir(h.ix.Path()), "index.db-sums")
	check := func(when string, lines int64) {
		t.Helper()
		got, sum := h.find(Options{Table: table})
		want, _ := h.find(Options{})
		if got != want || sum.Lines != lines || sum.Regrouped < 0 {
			t.Errorf("%s, with the table (%+v):\n%s\nfull:\n%s", when, sum, got, want)
		}
	}
	if first, sum := h.find(Options{Table: table}); first != "" {
		t.Fatalf("first run (%+v):\n%s", sum, first)
	}
	put("/m/d", blobSum(2, 1), fiemap.Extent{Physical: 3 << 30})
	check("after a file of its own was added", 0)
	h.tx(func(tx *index.Tx) {
		if err := tx.Delete(a); err != nil {
			t.Fatal(err)
		}
	})
	check("after the source was deleted", 1)
}

// A run cut short while it prints its plan (here its first line fails)
// has committed its table of sums already, with every file the plan
// names: the lines printed may have been applied, and the files they
// name must be mapped again next time, not taken as the table's previous
// plan left them.
func TestKeptTableBeforeLines(t *testing.T) {
	h := newKeptHost(t)
	table := filepath.Join(filepath.Dir(h.ix.Path()), "index.db-sums")
	full, sum := h.find(Options{})
	if sum.Lines < 2 {
		t.Fatalf("plan of %d lines; want some", sum.Lines)
	}
	want := map[int64]bool{}
	for _, line := range strings.Split(strings.TrimSpace(full), "\n") {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		var rs []plan.Range
		switch r := rec.(type) {
		case *plan.Dedupe:
			rs = append(rs, r.Src)
			rs = append(rs, r.Dst...)
		case *plan.Rewrite:
			rs = append(rs, r.File)
		}
		for _, r := range rs {
			var id int64
			if err := h.ix.DB().QueryRow("SELECT id FROM files WHERE path = ?", r.Path).Scan(&id); err != nil {
				t.Fatalf("%s: %v", r.Path, err)
			}
			want[id] = true
		}
	}
	stop := errors.New("the reader went away")
	printed := 0
	_, err := Find(context.Background(), h.ix, Options{Table: table, Rewrite: true}, func(plan.Record) error {
		printed++
		return stop
	})
	if !errors.Is(err, stop) || printed != 1 {
		t.Fatalf("Find: %v after %d lines; want %v after 1", err, printed, stop)
	}
	tb, err := sumtab.Open(table)
	if err != nil {
		t.Fatalf("no table committed: %v", err)
	}
	defer tb.Close()
	var missing, extra []int64
	for id := range want {
		if !tb.Named.Has(id) {
			missing = append(missing, id)
		}
	}
	var n int
	if err := h.ix.DB().QueryRow("SELECT max(id) FROM files").Scan(&n); err != nil {
		t.Fatal(err)
	}
	for id := range int64(n) + 1 {
		if tb.Named.Has(id) && !want[id] {
			extra = append(extra, id)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("the table names files %v it should not, and not %v, of the %d the plan names", extra, missing, len(want))
	}
	if got, sum := h.find(Options{Table: table}); got != full {
		t.Errorf("the next run (%+v) with the table:\n%s\nwant the full run's plan:\n%s", sum, got, full)
	}
}

// TestHolderOf checks that an alias of an alias, as tables written
// before could name, takes the entries of the file its chain ends at,
// whether or not the aliases are sorted by file.
func TestHolderOf(t *testing.T) {
	sorted := []sumtab.Alias{{File: 3, Of: 1}, {File: 5, Of: 3}, {File: 7, Of: 5}, {File: 8, Of: 2}}
	unsorted := []sumtab.Alias{sorted[2], sorted[0], sorted[3], sorted[1]}
	want := map[uint32]uint32{1: 1, 2: 2, 3: 1, 5: 1, 7: 1, 8: 2, 9: 9}
	for name, aliases := range map[string][]sumtab.Alias{"sorted": sorted, "unsorted": unsorted, "none": nil} {
		holder := holderOf(aliases)
		for id, w := range want {
			if aliases == nil {
				w = id
			}
			if got := holder(id); got != w {
				t.Errorf("%s: holder of %d: %d, want %d", name, id, got, w)
			}
		}
	}
}
