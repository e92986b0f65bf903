package runs

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/fiemap"
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
}

// devices are the st_devs a built index knows: 7 and 8 are subvolumes of
// one btrfs, 9 another filesystem, 10 one recorded without its ID.
var devices = map[uint64]string{7: "fs1", 8: "fs1", 9: "fs2", 10: ""}

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
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if err := ix.UseBlockSize(bs); err != nil {
		t.Fatal(err)
	}
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for dev, fsid := range devices {
		if err := tx.PutDevice(index.Device{Dev: dev, FSType: fstype, BlockSize: bs, FSID: fsid}); err != nil {
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
		id := index.File{Path: f.path, Dev: cmp.Or(f.dev, 7), Ino: uint64(100 + i), Size: f.size(), Mtime: int64(1e18) + int64(i), Ctime: int64(1e18)}
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
		{"whole-file-copies", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABCD"}, {path: "/m/b", blocks: "ABCD"}, {path: "/m/c", blocks: "ABCD"}}, Options{}},
		{"offsets", btrfsMagic, []tfile{{path: "/m/a", blocks: "XABCY"}, {path: "/m/b", blocks: "QQABCZ"}}, Options{}},
		{"within-one-file", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABCXABC"}}, Options{}},
		{"repeated-block", btrfsMagic, []tfile{{path: "/m/a", blocks: "AAAA"}}, Options{}},
		{"more-than-127-copies", btrfsMagic, copies(130, "AB"), Options{}},
		{"tail-blocks", btrfsMagic, []tfile{{path: "/m/a", blocks: "AB", tail: 100}, {path: "/m/b", blocks: "AB", tail: 100}, {path: "/m/c", blocks: "AB", tail: 99}}, Options{}},
		{"already-shared", btrfsMagic, []tfile{
			{path: "/m/a", blocks: "ABCD"},
			{path: "/m/b", blocks: "ABCD", extents: []fiemap.Extent{
				{Logical: 0, Physical: 1 << 30, Length: 2 * bs, Flags: fiemap.FlagShared},
				{Logical: 2 * bs, Physical: 5 << 30, Length: 2 * bs, Flags: fiemap.FlagLast}}},
		}, Options{}},
		{"zero-blocks", btrfsMagic, []tfile{{path: "/m/a", blocks: "A..B"}, {path: "/m/b", blocks: "A..B"}, {path: "/m/z", blocks: "...."}}, Options{}},
		{"inline", btrfsMagic, []tfile{
			{path: "/m/a", tail: 100, extents: []fiemap.Extent{{Length: bs, Flags: fiemap.FlagDataInline | fiemap.FlagLast}}},
			{path: "/m/b", tail: 100, extents: []fiemap.Extent{{Length: bs, Flags: fiemap.FlagDataInline | fiemap.FlagLast}}},
		}, Options{}},
		// The loose file is inside the image: the image is the source, so
		// the loose file's extent is wholly covered and freed.
		{"image-holds-loose-file", btrfsMagic, []tfile{{path: "/m/disk.img", blocks: "XXABCDXX"}, {path: "/m/loose", blocks: "ABCD"}}, Options{}},
		// b's one extent is only half covered: on btrfs nothing is freed,
		// on XFS the covered half is.
		{"partial-extent-btrfs", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABCDEFGH"}, {path: "/m/b", blocks: "ABCDWXYZ"}}, Options{}},
		// b's disk extent at 2 GiB shows as two pieces with another extent
		// between them (a rewrite interrupted between chunks leaves that):
		// both pieces belong to one extent, so its uncovered piece is the
		// one to rewrite, and the piece between is left alone.
		{"extent-in-pieces", btrfsMagic, []tfile{
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
		{"disk-extents", btrfsMagic, []tfile{
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
		{"leftover", btrfsMagic, []tfile{
			{path: "/m/d", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 4<<30 + 8*bs, Length: 8 * bs, Flags: fiemap.FlagLast, DiskStart: 4 << 30, DiskLen: 32 * bs}}},
			{path: "/m/e", blocks: "IJKLMNOP", extents: []fiemap.Extent{
				{Logical: 0, Physical: 5 << 30, Length: 8 * bs, Flags: fiemap.FlagLast, DiskStart: 5 << 30, DiskLen: 9 * bs}}},
		}, Options{}},
		// Pinned: r refers to half of a 16-block disk extent, and d to the
		// first 4 blocks of that half (a line shared them while the
		// extent's rewrite waited): rewriting r's half and sharing d's
		// range with the copy frees all 16 blocks.
		{"pinned", btrfsMagic, []tfile{
			{path: "/m/r", blocks: "ABCDEFGH", extents: []fiemap.Extent{
				{Logical: 0, Physical: 6 << 30, Length: 8 * bs, Flags: fiemap.FlagLast | fiemap.FlagShared, DiskStart: 6 << 30, DiskLen: 16 * bs}}},
			{path: "/m/d", blocks: "ABCD", extents: []fiemap.Extent{
				{Logical: 0, Physical: 6 << 30, Length: 4 * bs, Flags: fiemap.FlagLast | fiemap.FlagShared, DiskStart: 6 << 30, DiskLen: 16 * bs}}},
		}, Options{}},
		{"partial-extent-xfs", 0x58465342, []tfile{{path: "/m/a", blocks: "ABCDEFGH"}, {path: "/m/b", blocks: "ABCDWXYZ"}}, Options{}},
		{"min-len", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABxCDEF"}, {path: "/m/b", blocks: "ABzCDEF"}}, Options{MinLen: 3 * bs}},
		{"whole-files-only", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABC"}, {path: "/m/b", blocks: "ABC"}, {path: "/m/c", blocks: "ABCD"}}, Options{WholeFiles: true}},
		{"include-exclude", btrfsMagic, []tfile{{path: "/m/keep/a", blocks: "AB"}, {path: "/m/keep/b", blocks: "AB"}, {path: "/m/keep/skip.tmp", blocks: "AB"}, {path: "/m/other/c", blocks: "AB"}},
			Options{Include: []string{"/m/keep"}, Exclude: []string{"*.tmp"}}},
		// Only files that can share storage are planned together: b is in
		// a subvolume of a's btrfs; c and d are on another filesystem,
		// with the NOCOW files there among themselves; the NOCOW file on
		// fs1 is alone in its class, and f's device, recorded without an
		// ID, counts as a filesystem of its own.
		{"filesystems", btrfsMagic, classFiles, Options{}},
		{"filesystems-whole-files", btrfsMagic, classFiles, Options{WholeFiles: true}},
		// With a budget this small each of several passes holds a slice of
		// the sums; the plan is the same as with one pass.
		{"many-passes", btrfsMagic, []tfile{{path: "/m/a", blocks: "ABCDEFGHIJ"}, {path: "/m/b", blocks: "ABCDEFGHIJ"}, {path: "/m/c", blocks: "JIHGFEDCBA"}}, Options{Budget: 64}},
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
	for _, f := range files {
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
	var dsts, srcs []span
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
			if got := blockOf(r.Path, r.Off, n); got != want || strings.Contains(got, ".") {
				t.Errorf("%s@%d holds %q; source %s@%d holds %q", r.Path, r.Off, got, d.Src.Path, d.Src.Off, want)
			}
			dsts = append(dsts, span{r.Path, r.Off, r.Off + d.Len})
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
