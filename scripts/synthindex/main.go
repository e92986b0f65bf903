// Synthindex builds a synthetic index of many blocks, for benchmarks of
// findsame at scale, without any file data, or changes an index it built
// as hashfile would record files rewritten since.
//
// Usage:
//
//	go run ./scripts/synthindex [-blocks N] [-files N] [-dup F] [-zero F] [-settled] [-seed N] -db PATH
//	go run ./scripts/synthindex -change F [-dup F] [-zero F] [-seed N] -db PATH
//
// Synthindex writes a new index at PATH (which must not exist) directly
// through internal/index, as hashfile would have written it for a btrfs
// filesystem with 4 KiB blocks. The files do not exist: run findsame on it
// with -recorded, so that it uses the extents recorded instead of mapping
// the files again.
//
// Files are named /synthetic/dNNN/fNNNNN, a hundred to a directory. Their
// sizes are log-uniform from 4 KiB to 256 MiB (most end in a partial
// block), the last one cut so that the files hold exactly -blocks blocks.
// Each file has one extent per 128 MiB, at physical offsets of its own.
// Block sums are random, except that a -dup fraction of the blocks are
// copies of blocks of files written before: whole-file copies, and runs of
// 1 to 4096 blocks copied from a block-aligned offset of another file to
// one of this file. A -zero fraction of the blocks are zero blocks. The
// index is the same for the same flags.
//
// With -settled, the copies share storage with what they copy, as if
// already deduplicated: the blocks of a whole-file copy or a copied run
// are recorded at the physical addresses the source's extents give its
// blocks (those of the file that first held them, where the source is a
// copy itself), in extents split where the copies begin and end, and the
// extents on both sides are flagged shared as FIEMAP flags them. Only the
// other blocks stay at the file's own offsets. findsame -recorded plans
// (nearly) nothing on such an index: blocks that already share storage
// are never planned.
//
// With -change F, synthindex changes the existing index at PATH instead,
// in the same way for the same flags and index: it rewrites files chosen
// at random until they hold a fraction F of the index's blocks (only files
// that fit in what is left to cover are chosen, so the changed files are
// smaller than most). A rewritten file keeps its path, inode and owner,
// and gets a new mtime and ctime, one in four a new size (from half to
// twice the old one), and new content: random sums, of which a -dup
// fraction are runs of 1 to 4096 blocks copied from files left unchanged
// (their sums read from the index) and a -zero fraction are zero blocks,
// in one extent per 128 MiB at physical offsets beyond any recorded (a
// rewritten file shares nothing). The files are recorded as hashfile
// records them (index.Tx.Put), in transactions of up to 8M blocks.
//
// On standard error it prints what it built or changed, the index size and
// the time it took.
//
// Options:
//
//	-blocks N   blocks in all files (default 10000000)
//	-files N    about N files: sizes are log-uniform from 4 KiB to a
//	            maximum chosen so that N files hold -blocks blocks
//	            (default 0: the maximum is 256 MiB, about one file per
//	            6000 blocks)
//	-dup F      fraction of blocks that are copies (default 0.3); with
//	            -change, of the blocks rewritten
//	-zero F     fraction of blocks that are zero blocks (default 0.01);
//	            with -change, of the blocks rewritten
//	-settled    copies share storage with what they copy (see above)
//	-change F   change the index at PATH, which must exist: rewrite files
//	            holding a fraction F of its blocks (more than 0, at most
//	            1); -blocks, -files and -settled do not apply
//	-seed N     seed of the index, or of the change (default 1)
//	-db PATH    the index to create, or with -change to change
//
// Examples:
//
//	go run ./scripts/synthindex -blocks 10000000 -dup 0.3 -db /var/tmp/synth10m.db
//	bin/findsame -recorded -db /var/tmp/synth10m.db > /dev/null
//
//	go run ./scripts/synthindex -blocks 10000000 -settled -db /var/tmp/settled.db
//	bin/findsame -recorded -db /var/tmp/settled.db > /dev/null   # plans nothing
//	go run ./scripts/synthindex -change 0.01 -seed 2 -db /var/tmp/settled.db
//	bin/findsame -recorded -db /var/tmp/settled.db > plan.jsonl  # the rewritten files' copies
//
// Exit status: 0 ok, 1 error, 2 usage error, 130 interrupted.
package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sort"
	"syscall"
	"time"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fiemap"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("synthindex", err, os.Stderr))
}

const usage = `
Usage: synthindex [-blocks N] [-files N] [-dup F] [-zero F] [-settled] [-seed N] -db PATH
       synthindex -change F [-dup F] [-zero F] [-seed N] -db PATH

Builds a synthetic index (btrfs, 4 KiB blocks, no files behind it) with a
share of duplicate blocks, for benchmarks of findsame -recorded; with
-settled, the copies already share storage with what they copy. With
-change, rewrites files of an existing index instead, as hashfile records
files written since.

Examples:
  synthindex -blocks 10000000 -dup 0.3 -db /var/tmp/synth10m.db
  synthindex -blocks 10000000 -settled -db /var/tmp/settled.db
  synthindex -change 0.01 -seed 2 -db /var/tmp/settled.db
`

const (
	bs         = 4096
	minSize    = 4 << 10
	maxSize    = 256 << 20
	extentSize = 128 << 20
	// gap is left after each extent, so that no two files' extents touch.
	gap = 1 << 20
	// commitBlocks is how many blocks of sums one transaction writes.
	commitBlocks = 8 << 20
	sumSize      = blockhash.SumSize
)

// vol is the one volume a synthetic index holds.
var vol = fsys.Volume{FS: "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e", Subvol: 5}

// options are the flags.
type options struct {
	blocks    int64
	files     int
	dup, zero float64
	settled   bool
	change    float64
	seed      uint64
	db        string
}

func run(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("synthindex", flag.ContinueOnError)
	fs.Int64Var(&o.blocks, "blocks", 10_000_000, "blocks in all files")
	fs.IntVar(&o.files, "files", 0, "about `N` files (0: sizes up to 256 MiB)")
	fs.Float64Var(&o.dup, "dup", 0.3, "`fraction` of blocks that are copies")
	fs.Float64Var(&o.zero, "zero", 0.01, "`fraction` of blocks that are zero blocks")
	fs.BoolVar(&o.settled, "settled", false, "copies share storage with what they copy")
	fs.Float64Var(&o.change, "change", 0, "rewrite files holding this `fraction` of the blocks of the index at -db")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the index, or of the change")
	fs.StringVar(&o.db, "db", "", "the index `file` to create, or with -change to change")
	if err := cli.ParseFlags(fs, args, stderr, usage); err != nil {
		return err
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case fs.NArg() > 0:
		return cli.Usagef("unexpected argument %q", fs.Arg(0))
	case o.db == "":
		return cli.Usagef("-db is required")
	case o.dup < 0 || o.zero < 0 || o.dup+o.zero >= 1:
		return cli.Usagef("want -dup and -zero at least 0 and less than 1 together")
	}
	if set["change"] {
		switch {
		case set["blocks"] || set["files"] || set["settled"]:
			return cli.Usagef("-blocks, -files and -settled do not apply to -change")
		case !(o.change > 0 && o.change <= 1):
			return cli.Usagef("bad -change %g: want more than 0, at most 1", o.change)
		}
		return change(ctx, o, stderr)
	}
	switch {
	case o.blocks <= 0 || o.blocks > 1<<34:
		return cli.Usagef("bad -blocks %d", o.blocks)
	case o.files < 0 || (o.files > 0 && o.blocks*bs/int64(o.files) < minSize):
		return cli.Usagef("bad -files %d: fewer files than that hold %d blocks", o.files, o.blocks)
	}
	return build(ctx, o, stderr)
}

// build writes a new index.
func build(ctx context.Context, o options, stderr io.Writer) error {
	if _, err := os.Stat(o.db); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s exists: synthindex only creates new indexes (or changes one with -change)", o.db)
	}
	maxSz := float64(maxSize)
	if o.files > 0 {
		maxSz = maxFor(float64(o.blocks*bs) / float64(o.files))
	}

	start := time.Now()
	ix, err := index.Open(o.db)
	if err != nil {
		return err
	}
	defer ix.Close()
	if err := ix.UseBlockSize(bs); err != nil {
		return err
	}
	// The sums are most of the heap and hold no pointers, so a collection
	// costs little; with the default GOGC the garbage of writing rows
	// (database/sql allocates for each) grew as large as the sums before
	// the first one: 2.5 GiB of peak RSS at 200M blocks -settled, against
	// 1.9 GiB with 10 (1.7 GiB without -settled, either way).
	debug.SetGCPercent(10)
	g := &gen{
		rng:  rand.New(rand.NewPCG(o.seed, 0x5ee_d5)),
		sums: make([]byte, 0, o.blocks*sumSize),
		dup:  o.dup, zero: o.zero,
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { tx.Rollback() }()
	if err := tx.PutVolume(fsys.Info{Volume: vol, Magic: fstype.Btrfs, BlockSize: bs}, 0); err != nil {
		return err
	}
	// With -settled, each file's extents and row id, and whether a later
	// copy flagged its extents shared once it was written.
	var exts [][]fiemap.Extent
	var ids []int64
	var reflag []bool
	var physical, extents, inTx int64
	for i := 0; g.made < o.blocks; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		size, err := g.file(o.blocks-g.made, maxSz)
		if err != nil {
			return err
		}
		ext := ownExtents((size+bs-1)/bs, &physical)
		if o.settled && len(g.copies) > 0 {
			ext = g.settle(ext, exts, reflag)
		}
		extents += int64(len(ext))
		f := index.File{
			Path: fmt.Sprintf("/synthetic/d%03d/f%05d", i/100, i), UID: 0,
			Identity: fsys.Identity{Vol: vol, Ino: uint64(256 + i), Size: size,
				Mtime: 1_700_000_000e9 + int64(i), Ctime: 1_700_000_000e9 + int64(i)},
		}
		s := g.files[i]
		id, err := tx.Put(f, g.sums[s.first*sumSize:(s.first+s.n)*sumSize], ext)
		if err != nil {
			return err
		}
		if o.settled {
			exts, ids, reflag = append(exts, ext), append(ids, id), append(reflag, false)
		}
		if inTx += s.n; inTx >= commitBlocks {
			if err := tx.Commit(); err != nil {
				return err
			}
			if tx, err = ix.Begin(ctx); err != nil {
				return err
			}
			inTx = 0
		}
	}
	// Record again the extents that copies flagged shared after they were
	// written.
	for i, ext := range exts {
		if reflag[i] {
			if err := tx.SetExtents(ids[i], ext); err != nil {
				return err
			}
		}
	}
	size, err := finish(tx, ix, o.db)
	if err != nil {
		return err
	}
	settled := ""
	if o.settled {
		settled = ", copies settled"
	}
	fmt.Fprintf(stderr, "synthindex: %s: %d files, %d blocks (%d copied, %d zero), %d extents%s, index %s, built in %s\n",
		o.db, len(g.files), g.made, g.copied, g.zeros, extents, settled, cli.Bytes(size), time.Since(start).Round(time.Millisecond))
	return nil
}

// change rewrites files of the existing index at o.db holding a fraction
// o.change of its blocks.
func change(ctx context.Context, o options, stderr io.Writer) error {
	start := time.Now()
	ix, err := index.OpenExisting(o.db)
	if err != nil {
		return err
	}
	defer ix.Close()
	if b, err := ix.BlockSize(); err != nil {
		return err
	} else if b != bs {
		return fmt.Errorf("%s: blocks of %d bytes, not %d", o.db, b, bs)
	}
	var all []index.File
	var total, latest int64
	err = ix.Files(ctx, func(f index.File) error {
		all = append(all, f)
		total += (f.Size + bs - 1) / bs
		latest = max(latest, f.Mtime, f.Ctime)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b index.File) int { return cmp.Compare(a.ID, b.ID) })
	var end int64 // past the last byte any extent is stored at
	err = ix.ScanExtents(ctx, 1, func(_ int, _ int64, e fiemap.Extent) error {
		end = max(end, e.Physical+e.Length)
		return nil
	})
	if err != nil {
		return err
	}

	g := &gen{rng: rand.New(rand.NewPCG(o.seed, 0xc4a_96e)), dup: o.dup, zero: o.zero}
	want := int64(math.Ceil(o.change * float64(total)))
	var picked []int // indexes in all of the files to rewrite
	rewritten := make([]bool, len(all))
	var covered int64
	for _, i := range g.rng.Perm(len(all)) {
		if covered >= want {
			break
		}
		if n := (all[i].Size + bs - 1) / bs; all[i].Path != "" && n > 0 && n <= want-covered {
			picked = append(picked, i)
			rewritten[i] = true
			covered += n
		}
	}
	// Copies come from the files left unchanged, span.first their id.
	for i, f := range all {
		if !rewritten[i] && f.Size >= bs {
			g.files = append(g.files, span{first: f.ID, n: (f.Size + bs - 1) / bs, size: f.Size})
		}
	}
	var from span // the file whose sums last holds
	var last []byte
	g.read = func(src span, off, l int64) ([]byte, error) {
		if from != src || last == nil {
			s, err := ix.Sums(ctx, src.first)
			if err != nil {
				return nil, err
			}
			if pad := src.n*sumSize - int64(len(s)); pad > 0 {
				s = append(s, make([]byte, pad)...) // the zero blocks at its end
			}
			from, last = src, s
		}
		return last[off*sumSize : (off+l)*sumSize], nil
	}

	tx, err := ix.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { tx.Rollback() }()
	physical := end + gap
	var inTx, resized int64
	for k, i := range picked {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := all[i]
		if g.rng.IntN(4) == 0 {
			f.Size = max(minSize, min(maxSize, int64(float64(f.Size)*math.Exp2(2*g.rng.Float64()-1))))
			resized++
		}
		n := (f.Size + bs - 1) / bs
		g.sums, g.copies = g.sums[:0], g.copies[:0]
		if err := g.stretches(n, f.Size/bs); err != nil {
			return err
		}
		f.Mtime = latest + 3600e9 + int64(k) // an hour after the index's last change
		f.Ctime = f.Mtime
		if _, err := tx.Put(f, g.sums, ownExtents(n, &physical)); err != nil {
			return err
		}
		if inTx += n; inTx >= commitBlocks {
			if err := tx.Commit(); err != nil {
				return err
			}
			if tx, err = ix.Begin(ctx); err != nil {
				return err
			}
			inTx = 0
		}
	}
	size, err := finish(tx, ix, o.db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "synthindex: %s: rewrote %d files holding %d of %d blocks (%.2f%%), %d of them resized, "+
		"now %d blocks (%d copied, %d zero), index %s, changed in %s\n",
		o.db, len(picked), covered, total, 100*float64(covered)/float64(max(total, 1)), resized,
		g.made, g.copied, g.zeros, cli.Bytes(size), time.Since(start).Round(time.Millisecond))
	return nil
}

// maxFor returns the largest size of a log-uniform distribution from
// minSize whose mean is mean: (max-min)/ln(max/min) = mean.
func maxFor(mean float64) float64 {
	// At max = min the mean is min (the formula's limit, 0/0 as written):
	// the search starts above it.
	lo, hi := float64(minSize), float64(2*minSize)
	for (hi-minSize)/math.Log(hi/minSize) < mean {
		hi *= 2
	}
	for range 100 {
		mid := (lo + hi) / 2
		if mid > minSize && (mid-minSize)/math.Log(mid/minSize) >= mean {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// ownExtents returns the extents of a file of n blocks written anew: one
// per 128 MiB, from physical on, with a gap after each. It moves physical
// past them.
func ownExtents(n int64, physical *int64) []fiemap.Extent {
	var ext []fiemap.Extent
	for off := int64(0); off < n*bs; off += extentSize {
		e := fiemap.Extent{Logical: off, Physical: *physical, Length: min(extentSize, n*bs-off)}
		*physical += e.Length + gap
		ext = append(ext, e)
	}
	ext[len(ext)-1].Flags = fiemap.FlagLast
	return ext
}

// gen generates the files' sums. Building an index, it keeps all of them
// in one packed array, so that later files can copy earlier ones;
// changing one, it keeps those of the file being rewritten and reads
// those it copies from the index (read).
type gen struct {
	rng  *rand.Rand
	sums []byte
	// files are the files that copies come from: building, those made
	// so far; changing, those left unchanged, span.first their id.
	files []span
	// read returns the sums of blocks off to off+l of src; nil to take
	// them from sums.
	read func(src span, off, l int64) ([]byte, error)
	// copies are the copied stretches of the file last made, in order.
	copies        []copied
	made          int64 // blocks made
	dup, zero     float64
	copied, zeros int64
}

// span is a file's place in sums, in blocks.
type span struct {
	first, n int64
	size     int64
}

// copied is a stretch of n blocks at block at of a file, copied from
// block from of files[src].
type copied struct {
	at, from, n int64
	src         int
}

// wantCopies reports whether the copies so far fall short of g.dup.
func (g *gen) wantCopies() bool { return float64(g.copied) < g.dup*float64(g.made) }

// file appends the sums of a new file of at most room blocks to g.files
// and returns its size in bytes.
func (g *gen) file(room int64, maxSz float64) (int64, error) {
	first := g.made
	g.copies = g.copies[:0]
	// A whole-file copy of an earlier file, when one fits and the copies
	// would not overshoot.
	if len(g.files) > 0 && g.rng.IntN(4) == 0 && g.wantCopies() {
		k := g.rng.IntN(len(g.files))
		src := g.files[k]
		if src.n <= room && float64(g.copied+src.n) <= g.dup*float64(g.made+src.n)+4096 {
			g.sums = append(g.sums, g.sums[src.first*sumSize:(src.first+src.n)*sumSize]...)
			g.copied += src.n
			g.made += src.n
			g.copies = append(g.copies, copied{at: 0, from: 0, n: src.n, src: k})
			g.files = append(g.files, span{first, src.n, src.size})
			return src.size, nil
		}
	}
	size := max(minSize, int64(math.Exp(math.Log(minSize)+g.rng.Float64()*math.Log(maxSz/minSize))))
	if n := (size + bs - 1) / bs; n > room {
		size = room * bs
	}
	n := (size + bs - 1) / bs
	if err := g.stretches(n, size/bs); err != nil {
		return 0, err
	}
	g.files = append(g.files, span{first, n, size})
	return size, nil
}

// stretches appends the sums of a file's n blocks to g.sums, in stretches
// of random, zero and copied blocks. Copies cover only the first full
// blocks, of which the file has full: a partial tail is unique.
func (g *gen) stretches(n, full int64) error {
	for b := int64(0); b < n; {
		// Stretches of 1 to 4096 blocks, log-uniform.
		l := min(int64(math.Exp(g.rng.Float64()*math.Log(4097))), n-b)
		switch {
		case g.rng.Float64() < g.zero*2.4:
			// Zero stretches are a quarter as long as others, and the
			// others are often cut short, hence 2.4 for about g.zero.
			l = max(1, l/4)
			g.sums = append(g.sums, make([]byte, l*sumSize)...)
			g.zeros += l
		case len(g.files) > 0 && b < full && g.wantCopies():
			k := g.rng.IntN(len(g.files))
			src := g.files[k]
			srcFull := src.size / bs // at least 1: no file is under 4 KiB
			off := g.rng.Int64N(srcFull)
			l = min(l, srcFull-off, full-b)
			if g.read == nil {
				g.sums = append(g.sums, g.sums[(src.first+off)*sumSize:(src.first+off+l)*sumSize]...)
			} else {
				s, err := g.read(src, off, l)
				if err != nil {
					return err
				}
				g.sums = append(g.sums, s...)
			}
			g.copied += l
			g.copies = append(g.copies, copied{at: b, from: off, n: l, src: k})
		default:
			for range l {
				s := g.rng.Uint64()
				if s == blockhash.Zero {
					s = 1
				}
				g.sums = binary.LittleEndian.AppendUint64(g.sums, s)
			}
		}
		b += l
		g.made += l
	}
	return nil
}

// settle returns own, the extents of the file last made as if its data
// were all its own, with its copied stretches (g.copies) moved to where
// the blocks they copy are stored: exts[src] for a copy of files[src].
// The extents are split where the copies begin and end, and both those
// of the copies and those of exts they point into are flagged shared;
// reflag[src] is set where exts[src] gained the flag.
func (g *gen) settle(own []fiemap.Extent, exts [][]fiemap.Extent, reflag []bool) []fiemap.Extent {
	var out []fiemap.Extent
	var at int64 // bytes of the file placed so far
	for _, c := range g.copies {
		out, _ = place(out, own, at, c.at*bs, at, 0)
		var flagged bool
		out, flagged = place(out, exts[c.src], c.from*bs, (c.from+c.n)*bs, c.at*bs, fiemap.FlagShared)
		reflag[c.src] = reflag[c.src] || flagged
		at = (c.at + c.n) * bs
	}
	out, _ = place(out, own, at, own[len(own)-1].End(), at, 0)
	out[len(out)-1].Flags |= fiemap.FlagLast
	return out
}

// place appends to out the extents of bytes from to to of a file whose
// extents are ext (in file order, without gaps), moved to file offset at
// and flagged flags. It adds flags to those of ext too, and reports
// whether any of them lacked one.
func place(out, ext []fiemap.Extent, from, to, at int64, flags uint32) ([]fiemap.Extent, bool) {
	var flagged bool
	i := sort.Search(len(ext), func(i int) bool { return ext[i].End() > from })
	for ; from < to; i++ {
		e := &ext[i]
		end := min(to, e.End())
		flagged = flagged || e.Flags&flags != flags
		e.Flags |= flags
		out = append(out, fiemap.Extent{Logical: at, Physical: e.Physical + from - e.Logical, Length: end - from, Flags: flags})
		at += end - from
		from = end
	}
	return out, flagged
}

// finish commits tx, closes ix and returns the size of the index at db.
func finish(tx *index.Tx, ix *index.Index, db string) (int64, error) {
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if err := ix.Close(); err != nil {
		return 0, err
	}
	st, err := os.Stat(db)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
