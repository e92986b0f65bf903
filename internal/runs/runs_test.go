package runs

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const bs = 4096

// tfile describes a file of an index built by hand. Each byte of blocks is
// one block: a letter names its content, '.' is a zero block. tail, if
// set, adds a partial last block of that many bytes with content 't'.
// extents, if nil, is one extent over the whole file at a physical offset
// of its own.
type tfile struct {
	path    string
	blocks  string
	tail    int64
	extents []fiemap.Extent
	dev     uint64 // one of devices; 0 means 7
	nocow   bool
	uid     int64
}

// reflinked is the one extent of files that share it, whole.
var reflinked = []fiemap.Extent{{Logical: 0, Physical: 3 << 30, Length: 3 * bs, Flags: fiemap.FlagLast | fiemap.FlagShared}}

// devices are the volumes a built index knows, by the number tfile.dev
// gives: 7 and 8 are subvolumes of one btrfs, 9 another filesystem, 10 one
// recorded by an older index under its st_dev.
var devices = map[uint64]fsys.Volume{
	7:  {FS: "f5", Subvol: 5},
	8:  {FS: "f5", Subvol: 256},
	9:  {FS: "f6"},
	10: index.LegacyVolume(10),
}

func (f tfile) size() int64 { return int64(len(f.blocks))*bs + f.tail }

func sumOf(c byte) uint64 {
	if c == '.' {
		return 0
	}
	return uint64(c)*0x9E3779B97F4A7C15 | 1
}

// build writes files into a new index on a filesystem of type fstype.
func build(t *testing.T, fstype int64, files []tfile) *index.Index {
	t.Helper()
	ix := newIndex(t)
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range devices {
		if err := tx.PutVolume(fsys.Info{Volume: v, Magic: fstype, BlockSize: bs}, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		var sums []byte
		for _, c := range []byte(f.blocks) {
			sums = binary.LittleEndian.AppendUint64(sums, sumOf(c))
		}
		if f.tail > 0 {
			sums = binary.LittleEndian.AppendUint64(sums, sumOf('t')+uint64(f.tail))
		}
		ext := f.extents
		if ext == nil {
			ext = []fiemap.Extent{{Logical: 0, Physical: int64(i+1) << 30, Length: (f.size() + bs - 1) / bs * bs, Flags: fiemap.FlagLast}}
		}
		id := index.File{Path: f.path, UID: f.uid, Identity: fsys.Identity{Vol: devices[cmp.Or(f.dev, 7)], Ino: uint64(100 + i),
			Size: f.size(), Mtime: int64(1e18) + int64(i), Ctime: int64(1e18)}}
		if f.nocow {
			id.NoCOW = index.NoCOWSet
		}
		if _, err := tx.Put(id, sums, ext); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return ix
}

// newIndex opens a new index of blocks of bs bytes, closed at the test's
// end.
func newIndex(t *testing.T) *index.Index {
	t.Helper()
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if err := ix.UseBlockSize(bs); err != nil {
		t.Fatal(err)
	}
	return ix
}

func copies(n int, blocks string) []tfile {
	var fs []tfile
	for i := range n {
		fs = append(fs, tfile{path: fmt.Sprintf("/m/copy%03d", i), blocks: blocks})
	}
	return fs
}

var classFiles = []tfile{
	{path: "/m/a", blocks: "ABCD"},
	{path: "/m/nocow", blocks: "ABCD", nocow: true},
	{path: "/m/sub/b", blocks: "ABCD", dev: 8},
	{path: "/n/c", blocks: "ABCD", dev: 9},
	{path: "/n/d", blocks: "ABCD", dev: 9},
	{path: "/n/nocow1", blocks: "ABCD", dev: 9, nocow: true},
	{path: "/n/nocow2", blocks: "ABCD", dev: 9, nocow: true},
	{path: "/o/f", blocks: "ABCD", dev: 10},
}

func TestFindGolden(t *testing.T) {
	tests := []struct {
		name   string
		fstype int64
		files  []tfile
		opts   Options
	}{
		{"whole-file-copies", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCD"}, {path: "/m/b", blocks: "ABCD"}, {path: "/m/c", blocks: "ABCD"}}, Options{}},
		{"offsets", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "XABCY"}, {path: "/m/b", blocks: "QQABCZ"}}, Options{}},
		{"within-one-file", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCXABC"}}, Options{}},
		{"repeated-block", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "AAAA"}}, Options{}},
		{"more-than-127-copies", fstype.Btrfs, copies(130, "AB"), Options{}},
		{"tail-blocks", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "AB", tail: 100}, {path: "/m/b", blocks: "AB", tail: 100}, {path: "/m/c", blocks: "AB", tail: 99}}, Options{}},
		{"already-shared", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCD"},
			{path: "/m/b", blocks: "ABCD", extents: []fiemap.Extent{
				{Logical: 0, Physical: 1 << 30, Length: 2 * bs, Flags: fiemap.FlagShared},
				{Logical: 2 * bs, Physical: 5 << 30, Length: 2 * bs, Flags: fiemap.FlagLast}}},
		}, Options{}},
		// Zero blocks are never grouped, but a run goes on across the
		// zero blocks both its sides hold at the same place (b's extent
		// is covered whole, and freed); c's zero blocks are not at the
		// same place as a's: its runs stay apart, the first carried
		// across the zero block after it, which a's holds too, so that
		// the rewrite of c's extent copies the last block alone.
		{"zero-blocks", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "A..B"}, {path: "/m/b", blocks: "A..B"}, {path: "/m/c", blocks: "A.B."}, {path: "/m/z", blocks: "...."}}, Options{}},
		// A block that repeats comes from its first place: b's run after
		// its zero block comes from a's first Q, so its first run is
		// carried across the zero block (which a holds there too), and
		// b's extent is covered whole without a rewrite (in a read-only
		// snapshot with no writable subvolume beside it, none can be
		// made).
		{"zero-before-repeat", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "PQ.QR"}, {path: "/m/b", blocks: "PQ.QR"}}, Options{}},
		// A whole copy that ends in zero blocks: its run is carried to
		// its end, where the source's ends too, and its extent is freed
		// without a rewrite; c ends so too, but its run comes from
		// another place of a, and is not carried.
		{"zeros-at-end", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABC.."}, {path: "/m/b", blocks: "ABC.."}, {path: "/m/c", blocks: "BC.."}}, Options{}},
		{"inline", fstype.Btrfs, []tfile{
			{path: "/m/a", tail: 100, extents: []fiemap.Extent{{Length: bs, Flags: fiemap.FlagDataInline | fiemap.FlagLast}}},
			{path: "/m/b", tail: 100, extents: []fiemap.Extent{{Length: bs, Flags: fiemap.FlagDataInline | fiemap.FlagLast}}},
		}, Options{}},
		// The loose file is inside the image: the image is the source, so
		// the loose file's extent is wholly covered and freed.
		{"image-holds-loose-file", fstype.Btrfs, []tfile{{path: "/m/disk.img", blocks: "XXABCDXX"}, {path: "/m/loose", blocks: "ABCD"}}, Options{}},
		// b's one extent is only half covered: on btrfs nothing is freed,
		// on XFS the covered half is.
		{"partial-extent-btrfs", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCDEFGH"}, {path: "/m/b", blocks: "ABCDWXYZ"}}, Options{}},
		// b's disk extent at 2 GiB shows as two pieces with another extent
		// between them (a rewrite interrupted between chunks leaves that):
		// both pieces belong to one extent, so its uncovered piece is the
		// one to rewrite, and the piece between is left alone.
		{"extent-in-pieces", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCDEFGH"},
			{path: "/m/b", blocks: "ABCDQRST", extents: []fiemap.Extent{
				{Logical: 0, Physical: 2 << 30, Length: 4 * bs},
				{Logical: 4 * bs, Physical: 3 << 30, Length: bs},
				{Logical: 5 * bs, Physical: 2<<30 + 5*bs, Length: 3 * bs, Flags: fiemap.FlagLast}}},
		}, Options{}},
		// FIEMAP would show b as one extent half covered; the tree search
		// shows two disk extents, contiguous on disk: the first is covered
		// whole and freed, the second untouched, and nothing is rewritten.
		// c holds two pieces of one 16-block disk extent whose middle is
		// no longer referred to: covering both frees all 16 blocks.
		{"disk-extents", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCDEFGHIJKLMNOP"},
			{path: "/m/b", blocks: "ABCDWXYZ", extents: []fiemap.Extent{
				{Logical: 0, Physical: 2 << 30, Length: 4 * bs, DiskStart: 2 << 30, DiskLen: 4 * bs},
				{Logical: 4 * bs, Physical: 2<<30 + 4*bs, Length: 4 * bs, Flags: fiemap.FlagLast, DiskStart: 2<<30 + 4*bs, DiskLen: 4 * bs}}},
			{path: "/m/c", blocks: "EFGHIJKL", extents: []fiemap.Extent{
				{Logical: 0, Physical: 3 << 30, Length: 4 * bs, DiskStart: 3 << 30, DiskLen: 16 * bs},
				{Logical: 4 * bs, Physical: 3<<30 + 12*bs, Length: 4 * bs, Flags: fiemap.FlagLast, DiskStart: 3 << 30, DiskLen: 16 * bs}}},
		}, Options{}},
		// Leftovers: d refers to 8 blocks of a 32-block disk extent and
		// nothing else refers to the rest (an interrupted run left it), so
		// copying the 8 frees 32; e refers to 8 of 9, which does not pay.
		// (Leftovers are found from file extent items, which have a
		// generation.)
		{"leftover", fstype.Btrfs, []tfile{
			{path: "/m/d", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 4<<30 + 8*bs, Length: 8 * bs, Flags: fiemap.FlagLast, DiskStart: 4 << 30, DiskLen: 32 * bs, Offset: 8 * bs, Gen: 7}}},
			{path: "/m/e", blocks: "IJKLMNOP", extents: []fiemap.Extent{
				{Logical: 0, Physical: 5 << 30, Length: 8 * bs, Flags: fiemap.FlagLast, DiskStart: 5 << 30, DiskLen: 9 * bs, Gen: 7}}},
		}, Options{}},
		// Pinned: r refers to half of a 16-block disk extent, and d to the
		// first 4 blocks of that half (a line shared them while the
		// extent's rewrite waited): rewriting r's half and sharing d's
		// range with the copy frees all 16 blocks.
		{"pinned", fstype.Btrfs, []tfile{
			{path: "/m/r", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 6 << 30, Length: 8 * bs, Flags: fiemap.FlagLast | fiemap.FlagShared, DiskStart: 6 << 30, DiskLen: 16 * bs}}},
			{path: "/m/d", blocks: "ABCD", extents: []fiemap.Extent{
				{Logical: 0, Physical: 6 << 30, Length: 4 * bs, Flags: fiemap.FlagLast | fiemap.FlagShared, DiskStart: 6 << 30, DiskLen: 16 * bs}}},
		}, Options{}},
		{"partial-extent-xfs", 0x58465342, []tfile{{path: "/m/a", blocks: "ABCDEFGH"}, {path: "/m/b", blocks: "ABCDWXYZ"}}, Options{}},
		{"min-len", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABxCDEF"}, {path: "/m/b", blocks: "ABzCDEF"}}, Options{MinLen: 3 * bs}},
		{"whole-files-only", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABC"}, {path: "/m/b", blocks: "ABC"}, {path: "/m/c", blocks: "ABCD"}}, Options{WholeFiles: true}},
		// On XFS, b has two reflinked copies and a is a copy of its own:
		// a moves onto b's storage, one destination where b's three
		// would free the same.
		{"whole-files-reflinked", 0x58465342, []tfile{
			{path: "/m/a", blocks: "ABC"},
			{path: "/m/b", blocks: "ABC", extents: reflinked},
			{path: "/m/b2", blocks: "ABC", extents: reflinked},
			{path: "/m/b3", blocks: "ABC", extents: reflinked},
		}, Options{WholeFiles: true}},
		{"include-exclude", fstype.Btrfs, []tfile{{path: "/m/keep/a", blocks: "AB"}, {path: "/m/keep/b", blocks: "AB"}, {path: "/m/keep/skip.tmp", blocks: "AB"}, {path: "/m/other/c", blocks: "AB"}},
			Options{Include: []string{"/m/keep"}, Exclude: []string{"*.tmp"}}},
		// Only files that can share storage are planned together: b is in
		// a subvolume of a's btrfs; c and d are on another filesystem,
		// with the NOCOW files there among themselves; the NOCOW file on
		// fs1 is alone in its class, and f, recorded by an older index
		// under its st_dev, is left out until hashfile names its volume.
		{"filesystems", fstype.Btrfs, classFiles, Options{}},
		// a and c are stored plain, b compressed: b is kept, a and c share
		// its storage.
		{"compressed-source", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCD"},
			{path: "/m/b", blocks: "ABCD", extents: []fiemap.Extent{
				{Logical: 0, Physical: 2 << 30, Length: 4 * bs, Flags: fiemap.FlagEncoded | fiemap.FlagLast, DiskStart: 2 << 30, DiskLen: bs}}},
			{path: "/m/c", blocks: "ABCD"},
		}, Options{}},
		// a's blocks repeat within its one disk extent, and b's extent
		// holds the same two blocks twice too: b is planned against a,
		// its extent freed, and a's repeats with a rewrite of a's extent,
		// which moves their source out of it first (without rewrites,
		// sharing within one extent frees nothing: TestSameExtent).
		{"same-extent", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABAB", extents: []fiemap.Extent{
				{Logical: 0, Physical: 2 << 30, Length: 4 * bs, Flags: fiemap.FlagLast, DiskStart: 2 << 30, DiskLen: 4 * bs}}},
			{path: "/m/b", blocks: "ABAB", extents: []fiemap.Extent{
				{Logical: 0, Physical: 3 << 30, Length: 4 * bs, Flags: fiemap.FlagLast, DiskStart: 3 << 30, DiskLen: 4 * bs}}},
		}, Options{}},
		// With SameOwner, files of different owners are never paired, and
		// files whose owner is not recorded are left out.
		{"same-owner", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCD", uid: 1000}, {path: "/m/b", blocks: "ABCD", uid: 1000},
			{path: "/m/c", blocks: "ABCD", uid: 1001}, {path: "/m/d", blocks: "ABCD", uid: 1002},
			{path: "/m/e", blocks: "ABCD", uid: 1002}, {path: "/m/old", blocks: "ABCD", uid: index.UIDUnknown},
		}, Options{SameOwner: true}},
		// b has space preallocated beyond EOF (fallocate -k), in a disk
		// extent of its own: no run can cover it, and planning must not
		// look for a run there. c's preallocated rest shares the disk
		// extent of its data, which covering the data cannot free.
		{"prealloc-beyond-eof", fstype.Btrfs, []tfile{
			{path: "/m/a", blocks: "ABCDEFGH"},
			{path: "/m/b", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 2 << 30, Length: 8 * bs, DiskStart: 2 << 30, DiskLen: 8 * bs},
				{Logical: 8 * bs, Physical: 4 << 30, Length: bs, Flags: fiemap.FlagUnwritten | fiemap.FlagLast, DiskStart: 4 << 30, DiskLen: bs}}},
			{path: "/m/c", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 5 << 30, Length: 8 * bs, DiskStart: 5 << 30, DiskLen: 16 * bs},
				{Logical: 8 * bs, Physical: 5<<30 + 8*bs, Length: 8 * bs, Flags: fiemap.FlagUnwritten | fiemap.FlagLast, DiskStart: 5 << 30, DiskLen: 16 * bs}}},
		}, Options{}},
		{"filesystems-whole-files", fstype.Btrfs, classFiles, Options{WholeFiles: true}},
		// With a budget this small each of several passes holds a slice of
		// the sums; the plan is the same as with one pass.
		{"many-passes", fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCDEFGHIJ"}, {path: "/m/b", blocks: "ABCDEFGHIJ"}, {path: "/m/c", blocks: "JIHGFEDCBA"}}, Options{Budget: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := build(t, tt.fstype, tt.files)
			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			o := tt.opts
			o.Rewrite, o.RewriteMin = true, bs
			sum, err := Find(context.Background(), ix, o, func(r plan.Record) error { return enc.Encode(r) })
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "# lines %d, runs %d, bytes %d, rewrites %d, written %d, freed %d\n",
				sum.Lines, sum.Runs, sum.Bytes, sum.Rewrites, sum.Written, sum.Freed)
			golden := filepath.Join("testdata", tt.name+".jsonl")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("plan differs from %s (run with -update to accept):\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
			checkPlan(t, tt.files, out.String())
		})
	}
}

// checkPlan checks the properties every plan has whatever the index:
// planned ranges hold the same blocks, no destination range overlaps
// another or any source range, at most MaxDests destinations per line, and
// a rewrite's copy ranges and the destination ranges in its extent cover
// the extent's pieces (up to EOF), and nothing twice.
func checkPlan(t *testing.T, files []tfile, out string) {
	t.Helper()
	content := make(map[string]string)
	size := make(map[string]int64)
	for _, f := range files {
		size[f.path] = f.size()
		c := f.blocks
		if f.tail > 0 {
			c += fmt.Sprintf("t%d", f.tail)
		}
		content[f.path] = c
	}
	type span struct {
		path   string
		lo, hi int64
	}
	var dsts, srcs, zeroEnds []span
	blockOf := func(path string, off, n int64) string {
		c := content[path]
		i := off / bs
		if i+n > int64(len(c)) {
			return c[i:] // includes the tail marker
		}
		return c[i : i+n]
	}
	var rewrites []plan.Rewrite
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, `{"type":"rewrite"`) {
			var w plan.Rewrite
			if err := json.Unmarshal([]byte(line), &w); err != nil {
				t.Fatal(err)
			}
			rewrites = append(rewrites, w)
			continue
		}
		var d plan.Dedupe
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Dst) > plan.MaxDests {
			t.Errorf("line has %d destinations; want at most %d", len(d.Dst), plan.MaxDests)
		}
		n := (d.Len + bs - 1) / bs
		want := blockOf(d.Src.Path, d.Src.Off, n)
		srcs = append(srcs, span{d.Src.Path, d.Src.Off, d.Src.Off + d.Len})
		for _, r := range d.Dst {
			// Zero blocks only inside a run, between others, or at its
			// end where another range of the destination goes on (see
			// bridge).
			got := blockOf(r.Path, r.Off, n)
			if got != want || strings.HasPrefix(got, ".") {
				t.Errorf("%s@%d holds %q; source %s@%d holds %q", r.Path, r.Off, got, d.Src.Path, d.Src.Off, want)
			}
			dsts = append(dsts, span{r.Path, r.Off, r.Off + d.Len})
			if strings.HasSuffix(got, ".") {
				zeroEnds = append(zeroEnds, dsts[len(dsts)-1])
			}
		}
	}
	for _, z := range zeroEnds {
		if z.hi < size[z.path] && !slices.ContainsFunc(dsts, func(a span) bool { return a.path == z.path && a.lo == z.hi }) {
			t.Errorf("destination %s [%d,%d) ends in zero blocks before its end, and no other range of it goes on from there", z.path, z.lo, z.hi)
		}
	}
	for i, a := range dsts {
		for _, b := range append(dsts[i+1:], srcs...) {
			if a.path == b.path && a.lo < b.hi && b.lo < a.hi {
				t.Errorf("destination %s [%d,%d) overlaps [%d,%d)", a.path, a.lo, a.hi, b.lo, b.hi)
			}
		}
	}
	for _, w := range rewrites {
		lo, hi := w.File.Off, min(w.File.Off+w.Len, w.File.Size)
		var covered int64
		spans := dsts
		for _, c := range w.Copy {
			spans = append(spans, span{w.File.Path, c.Off, c.Off + c.Len})
		}
		for i, a := range spans {
			if a.path != w.File.Path {
				continue
			}
			covered += max(0, min(a.hi, hi)-max(a.lo, lo))
			for _, b := range spans[i+1:] {
				if b.path == a.path && a.lo < b.hi && b.lo < a.hi {
					t.Errorf("rewrite of %s: ranges [%d,%d) and [%d,%d) overlap", a.path, a.lo, a.hi, b.lo, b.hi)
				}
			}
		}
		// The extent's pieces (Freed+Bytes of them) lie in [lo, hi); other
		// extents may lie between them.
		if n := w.Freed + w.Bytes; covered < min(n, hi-lo) || covered > hi-lo {
			t.Errorf("rewrite of %s [%d,%d): copy and destination ranges cover %d bytes; want from %d to %d", w.File.Path, lo, hi, covered, min(n, hi-lo), hi-lo)
		}
	}
}

// A file's sums may stop at its last non-zero block (hashfile leaves out
// the zero blocks at the end of a file); an index may also hold them in
// full, as it did before. Both are the same content, and the run is
// carried to the end of both (see bridge).
func TestTrimmedSums(t *testing.T) {
	ix := build(t, fstype.Btrfs, []tfile{{path: "/m/a", blocks: "AB.."}})
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sums []byte
	for _, c := range []byte("AB") {
		sums = binary.LittleEndian.AppendUint64(sums, sumOf(c))
	}
	b := index.File{Path: "/m/b", Identity: fsys.Identity{Vol: devices[7], Ino: 500, Size: 4 * bs, Mtime: 1, Ctime: 1}}
	ext := []fiemap.Extent{{Logical: 0, Physical: 9 << 30, Length: 4 * bs, Flags: fiemap.FlagLast}}
	if _, err := tx.Put(b, sums, ext); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, whole := range []bool{false, true} {
		var got []string
		_, err := Find(context.Background(), ix, Options{WholeFiles: whole}, func(r plan.Record) error {
			d := r.(*plan.Dedupe)
			got = append(got, fmt.Sprintf("%s@%d>%s@%d:%d", d.Src.Path, d.Src.Off, d.Dst[0].Path, d.Dst[0].Off, d.Len))
			return nil
		})
		want := "/m/a@0>/m/b@0:16384"
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("Find(whole files %v) = %q, %v; want [%s]", whole, got, err, want)
		}
	}
}

// Files on filesystems that cannot deduplicate are never planned, and each
// such filesystem is named once.
func TestCannotDedupe(t *testing.T) {
	files := []tfile{{path: "/m/a", blocks: "ABCD"}, {path: "/m/b", blocks: "ABCD"}, {path: "/m/c", blocks: "ABCD", dev: 8}, {path: "/n/d", blocks: "ABCD", dev: 9}, {path: "/n/e", blocks: "ABCD", dev: 9}}
	const ext4, tmpfs = 0xEF53, 0x01021994
	for _, fstype := range []int64{ext4, tmpfs} {
		ix := build(t, fstype, files)
		for _, whole := range []bool{false, true} {
			var warnings []string
			o := Options{WholeFiles: whole, Warn: func(path string, err error) {
				warnings = append(warnings, path+": "+err.Error())
			}}
			lines := 0
			sum, err := Find(context.Background(), ix, o, func(plan.Record) error { lines++; return nil })
			if err != nil || lines != 0 || sum.Files != 0 {
				t.Errorf("Find on %#x = %d lines, %d files, %v; want none", fstype, lines, sum.Files, err)
			}
			// devices 7 and 8 are one filesystem, 9 another.
			name := map[int64]string{ext4: "ext4", tmpfs: "tmpfs"}[fstype]
			want := []string{"/m/a: " + name + " at /m/a cannot deduplicate: skipped", "/n/d: " + name + " at /n/d cannot deduplicate: skipped"}
			if fmt.Sprint(warnings) != fmt.Sprint(want) {
				t.Errorf("warnings = %q; want %q", warnings, want)
			}
		}
	}
}

// Progress is told of each phase, the last one done in full.
func TestProgress(t *testing.T) {
	ix := build(t, fstype.Btrfs, copies(3, "ABCDEFGH"))
	for _, budget := range []int64{0, 64} { // in memory, in partitions
		var phases []string
		var last string
		o := Options{Budget: budget, Progress: func(phase string, done, total int64, unit string) {
			if len(phases) == 0 || phases[len(phases)-1] != phase {
				phases = append(phases, phase)
			}
			// A total, so that the time left can be told.
			if total <= 0 || done > total {
				t.Errorf("progress %s %d of %d; want a total, at least what is done", phase, done, total)
			}
			last = fmt.Sprintf("%s %d/%d %s", phase, done, total, unit)
		}}
		if _, err := Find(context.Background(), ix, o, func(plan.Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		want := []string{"loading files", "reading sums", "grouping", "loading extents", "chaining", "joining runs", "writing the plan"}
		if fmt.Sprint(phases) != fmt.Sprint(want) {
			t.Errorf("phases %q; want %q", phases, want)
		}
		if want := "writing the plan 2/2 runs"; last != want {
			t.Errorf("last progress %q; want %q", last, want)
		}
	}
}

// However little memory Find may hold, and so however many partitions it
// groups one by one (a block repeated more often than one may hold
// included), the plan is the same.
func TestPartitions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var files []tfile
	for i := range 40 {
		b := make([]byte, 1+rng.IntN(40))
		for k := range b {
			b[k] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.."[rng.IntN(64)]
			if k > 0 && rng.IntN(3) == 0 {
				b[k] = b[k-1] // repeated blocks
			}
		}
		files = append(files, tfile{path: fmt.Sprintf("/m/%02d", i), blocks: string(b), dev: uint64(7 + rng.IntN(2))})
	}
	files = append(files, copies(5, strings.Repeat("R", 30))...)
	ix := build(t, fstype.Btrfs, files)
	find := func(budget int64) (string, Summary) {
		var out bytes.Buffer
		enc := plan.NewEncoder(&out)
		sum, err := Find(context.Background(), ix, Options{Budget: budget, Rewrite: true}, enc.Write)
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), sum
	}
	want, sum := find(0)
	if sum.Partitions != 1 || sum.Lines == 0 {
		t.Fatalf("Find = %+v; want 1 partition and lines", sum)
	}
	for _, budget := range []int64{32, 64, 1000, 4000} {
		got, sum := find(budget)
		if sum.Partitions < 2 {
			t.Errorf("Find(budget %d) in %d partitions; want several", budget, sum.Partitions)
		}
		if got != want {
			t.Errorf("Find(budget %d) =\n%s\nwant\n%s", budget, got, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(ix.Path()), ".findsame-*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

// An interrupt while the partitions are grouped stops Find with the
// context's error and leaves no temporary file behind.
func TestPartitionsInterrupted(t *testing.T) {
	ix := build(t, fstype.Btrfs, copies(4, "ABCDEFGHIJKLMNOP"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	var seen []string
	o := Options{Budget: 64, TmpDir: dir, Progress: func(phase string, done, total int64, unit string) {
		if phase == "grouping" && done > 0 {
			if left, _ := os.ReadDir(dir); len(left) > 0 {
				seen = append(seen, left[0].Name())
			}
			cancel()
		}
	}}
	_, err := Find(ctx, ix, o, func(plan.Record) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Find = %v; want %v", err, context.Canceled)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 || len(seen) > 0 {
		t.Errorf("temporary files seen in %s: %v, left: %v; want none ever named", dir, seen, left)
	}
}

// The summary gives the most the temporary files held at once: nothing
// when the sums fit in memory; when they do not, at least every pair
// packed (9 bytes each at least), which the partitions hold at the end of
// the scan, and at most every pair (18 bytes at most) with every mapping
// (16 bytes).
func TestTemporaryPeak(t *testing.T) {
	ix := build(t, fstype.Btrfs, copies(4, "ABCDEFGHIJKLMNOP"))
	const pairs, maps = 4 * 16, 3 * 16
	for _, tc := range []struct {
		budget   int64
		min, max int64
	}{
		{1 << 20, 0, 0},
		{64, pairs * 9, pairs*maxPacked + maps*16},
	} {
		sum, err := Find(context.Background(), ix, Options{Budget: tc.budget, TmpDir: t.TempDir()}, func(plan.Record) error { return nil })
		if err != nil || sum.Temporary < tc.min || sum.Temporary > tc.max {
			t.Errorf("budget %d: Find = %v, %d bytes of temporary files at most; want %d to %d", tc.budget, err, sum.Temporary, tc.min, tc.max)
		}
	}
}

// A sparse file's size does not count towards the passes: the index holds
// the sums of its data, and grouping holds those alone.
func TestSparsePasses(t *testing.T) {
	ix := withHuge(t, 1<<40)
	sum, err := Find(context.Background(), ix, Options{Budget: 1 << 20}, func(plan.Record) error { return nil })
	if err != nil || sum.Partitions != 1 || sum.Lines != 2 || sum.Runs != 2 {
		t.Errorf("Find = %+v, %v; want 1 partition, 2 lines (a copy in each of two files), 2 runs", sum, err)
	}
}

// A file of 2^32 blocks or more (16 TiB at 4 KiB) does not fit a location:
// it is left out, with a warning naming it, and the others are planned.
func TestFileTooLarge(t *testing.T) {
	ix := withHuge(t, 1<<44)
	var warned []string
	o := Options{Warn: func(path string, err error) { warned = append(warned, err.Error()) }}
	var lines []string
	sum, err := Find(context.Background(), ix, o, func(r plan.Record) error {
		d := r.(*plan.Dedupe)
		lines = append(lines, fmt.Sprintf("%s>%s", d.Src.Path, d.Dst[0].Path))
		return nil
	})
	want := "/m/huge: 4294967296 blocks, more than findsame plans in one file (2^32): left out"
	if err != nil || len(warned) != 1 || warned[0] != want {
		t.Errorf("Find = %+v, %v, warned %q; want %q", sum, err, warned, want)
	}
	if len(lines) != 1 || lines[0] != "/m/a>/m/b" {
		t.Errorf("plan = %q; want [/m/a>/m/b]", lines)
	}
}

// Without rewrites, a range is never planned against another range of the
// same btrfs disk extent: the source would keep the extent alive.
func TestSameExtent(t *testing.T) {
	ix := build(t, fstype.Btrfs, []tfile{
		{path: "/m/a", blocks: "ABAB", extents: []fiemap.Extent{
			{Logical: 0, Physical: 2 << 30, Length: 4 * bs, Flags: fiemap.FlagLast, DiskStart: 2 << 30, DiskLen: 4 * bs}}},
	})
	sum, err := Find(context.Background(), ix, Options{}, func(r plan.Record) error {
		t.Errorf("planned %+v; want nothing", r)
		return nil
	})
	if err != nil || sum.Lines != 0 {
		t.Errorf("Find = %+v, %v; want no lines", sum, err)
	}
}

// TestTooManyRuns checks the error of a plan of more runs than findsame
// numbers: 2^31 - 1, here lowered.
func TestTooManyRuns(t *testing.T) {
	ix := build(t, fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCD"}, {path: "/m/b", blocks: "ABCD"}})
	defer func(n int) { maxPlanned = n }(maxPlanned)
	maxPlanned = 0
	_, err := Find(context.Background(), ix, Options{}, func(r plan.Record) error {
		t.Errorf("planned %+v; want nothing", r)
		return nil
	})
	want := "1 runs and 0 rewrites to plan, more than findsame plans at once (0): plan parts of the index in turn (-include)"
	if err == nil || err.Error() != want {
		t.Errorf("Find: %v; want %s", err, want)
	}
}

// withHuge builds an index of two files "ABCD" and /m/huge, of size bytes
// whose sums are "ABCD" and zeros.
func withHuge(t *testing.T, size int64) *index.Index {
	t.Helper()
	ix := build(t, fstype.Btrfs, []tfile{{path: "/m/a", blocks: "ABCD"}, {path: "/m/b", blocks: "ABCD"}})
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sums []byte
	for _, c := range []byte("ABCD") {
		sums = binary.LittleEndian.AppendUint64(sums, sumOf(c))
	}
	huge := index.File{Path: "/m/huge", Identity: fsys.Identity{Vol: devices[7], Ino: 500, Size: size, Mtime: 1, Ctime: 1}}
	if _, err := tx.Put(huge, sums, []fiemap.Extent{{Physical: 9 << 30, Length: 4 * bs}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return ix
}

// TestLimitMemory checks the memory limit grouping runs under: -mem, a
// quarter more, less SQLite's caches, plus what the files take, lifted
// once (and only once) by what limitMemory returns; and the files' size
// it is given.
func TestLimitMemory(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set: findsame leaves the limit alone")
	}
	before := debug.SetMemoryLimit(-1)
	unlimit := limitMemory(&Options{Budget: 256 << 20}, 100<<20)
	if got, want := debug.SetMemoryLimit(-1), int64(256<<20+64<<20-sqliteCache+100<<20); got != want {
		t.Errorf("limit %d, want %d", got, want)
	}
	unlimit()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit %d after lifting it, want %d as before", got, before)
	}
	debug.SetMemoryLimit(before - 1) // set by someone else meanwhile
	unlimit()
	if got := debug.SetMemoryLimit(before); got != before-1 {
		t.Errorf("lifting the limit twice set it to %d", got)
	}
	unlimit = limitMemory(&Options{Budget: sqliteCache}, 100<<20)
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("a budget below twice SQLite's caches set the limit to %d", got)
	}
	unlimit()

	files := make([]file, 2, 5)
	files[0].path, files[1].path = "/a", "/bcd"
	byID := fileIndex{-1, 0, -1, 1}
	if got, want := loadedSize(files, byID), 5*int64(unsafe.Sizeof(file{}))+4*4+2*12+2+4; got != want {
		t.Errorf("loadedSize %d, want %d", got, want)
	}
}

// The collector's percent: collectAt's for a stage holding held bytes,
// raised so that the heap may grow by least; collectPast's from the live
// heap; each put back as it was.
func TestCollectAt(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: findsame leaves the collector alone")
	}
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	for _, c := range []struct {
		percent     int
		held, least int64
		want        int
	}{
		{10, 512 << 20, 64 << 20, 12},
		{10, 100 << 20, 64 << 20, 64},
		{25, 64 << 20, 1 << 40, 1000},
		{25, 1 << 30, 0, 25},
		{10, largeIndex - 1, 64 << 20, 100}, // a small stage: as it was
	} {
		restore := collectAt(c.percent, c.held, c.least)
		if got := debug.SetGCPercent(-1); got != c.want {
			t.Errorf("collectAt(%d, %d, %d) set %d, want %d", c.percent, c.held, c.least, got, c.want)
		}
		debug.SetGCPercent(100)
		restore()
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("collectAt(%d, %d, %d) put back %d, want 100", c.percent, c.held, c.least, got)
		}
	}
	for _, c := range []struct {
		old   int
		least int64
		want  int
	}{
		{25, 1 << 40, 1000}, // at most ten times what is live
		{25, 0, 25},
		{2000, 1 << 40, 2000}, // never lower
	} {
		debug.SetGCPercent(c.old)
		restore := collectPast(c.least)
		if got := debug.SetGCPercent(-1); got != c.want {
			t.Errorf("collectPast(%d) at %d set %d, want %d", c.least, c.old, got, c.want)
		}
		debug.SetGCPercent(c.old)
		restore()
		if got := debug.SetGCPercent(100); got != c.old {
			t.Errorf("collectPast(%d) put back %d, want %d", c.least, got, c.old)
		}
	}
}
