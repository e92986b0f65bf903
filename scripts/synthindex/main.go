// Synthindex builds a synthetic index of many blocks, for benchmarks of
// findsame at scale, without any file data.
//
// Usage:
//
//	go run ./scripts/synthindex [-blocks N] [-files N] [-dup F] [-zero F] [-seed N] -db PATH
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
// On standard error it prints what it built, the index size and the time
// it took.
//
// Options:
//
//	-blocks N   blocks in all files (default 10000000)
//	-files N    about N files: sizes are log-uniform from 4 KiB to a
//	            maximum chosen so that N files hold -blocks blocks
//	            (default 0: the maximum is 256 MiB, about one file per
//	            6000 blocks)
//	-dup F      fraction of blocks that are copies (default 0.3)
//	-zero F     fraction of blocks that are zero blocks (default 0.01)
//	-seed N     seed of the index (default 1)
//	-db PATH    the index to create
//
// Examples:
//
//	go run ./scripts/synthindex -blocks 10000000 -dup 0.3 -db /var/tmp/synth10m.db
//	bin/findsame -recorded -db /var/tmp/synth10m.db > /dev/null
//
// Exit status: 0 ok, 1 error, 2 usage error, 130 interrupted.
package main

import (
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
Usage: synthindex [-blocks N] [-files N] [-dup F] [-zero F] [-seed N] -db PATH

Builds a synthetic index (btrfs, 4 KiB blocks, no files behind it) with a
share of duplicate blocks, for benchmarks of findsame -recorded.

Examples:
  synthindex -blocks 10000000 -dup 0.3 -db /var/tmp/synth10m.db
`

const (
	bs         = 4096
	minSize    = 4 << 10
	maxSize    = 256 << 20
	extentSize = 128 << 20
	// commitBlocks is how many blocks of sums one transaction writes.
	commitBlocks = 8 << 20
)

// vol is the one volume a synthetic index holds.
var vol = fsys.Volume{FS: "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e", Subvol: 5}

func run(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("synthindex", flag.ContinueOnError)
	blocks := fs.Int64("blocks", 10_000_000, "blocks in all files")
	files := fs.Int("files", 0, "about `N` files (0: sizes up to 256 MiB)")
	dup := fs.Float64("dup", 0.3, "`fraction` of blocks that are copies")
	zero := fs.Float64("zero", 0.01, "`fraction` of blocks that are zero blocks")
	seed := fs.Uint64("seed", 1, "seed of the index")
	db := fs.String("db", "", "the index `file` to create")
	if err := cli.ParseFlags(fs, args, stderr, usage); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return cli.Usagef("unexpected argument %q", fs.Arg(0))
	case *db == "":
		return cli.Usagef("-db is required")
	case *blocks <= 0 || *blocks > 1<<34:
		return cli.Usagef("bad -blocks %d", *blocks)
	case *dup < 0 || *zero < 0 || *dup+*zero >= 1:
		return cli.Usagef("want -dup and -zero at least 0 and less than 1 together")
	case *files < 0 || (*files > 0 && *blocks*bs/int64(*files) < minSize):
		return cli.Usagef("bad -files %d: fewer files than that hold %d blocks", *files, *blocks)
	}
	if _, err := os.Stat(*db); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s exists: synthindex only creates new indexes", *db)
	}
	maxSz := float64(maxSize)
	if *files > 0 {
		maxSz = maxFor(float64(*blocks*bs) / float64(*files))
	}

	start := time.Now()
	ix, err := index.Open(*db)
	if err != nil {
		return err
	}
	defer ix.Close()
	if err := ix.UseBlockSize(bs); err != nil {
		return err
	}
	g := &gen{
		rng:  rand.New(rand.NewPCG(*seed, 0x5ee_d5)),
		sums: make([]byte, 0, *blocks*blockhash.SumSize),
		dup:  *dup, zero: *zero,
	}
	tx, err := ix.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { tx.Rollback() }()
	if err := tx.PutVolume(fsys.Info{Volume: vol, Magic: fstype.Btrfs, BlockSize: bs}, 0); err != nil {
		return err
	}
	var physical, inTx int64
	for i := 0; g.blocks() < *blocks; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		size := g.file(*blocks-g.blocks(), maxSz)
		n := (size + bs - 1) / bs
		var ext []fiemap.Extent
		for off := int64(0); off < n*bs; off += extentSize {
			e := fiemap.Extent{Logical: off, Physical: physical, Length: min(extentSize, n*bs-off)}
			physical += e.Length + 1<<20 // a gap, so no two files' extents touch
			ext = append(ext, e)
		}
		ext[len(ext)-1].Flags = fiemap.FlagLast
		f := index.File{
			Path: fmt.Sprintf("/synthetic/d%03d/f%05d", i/100, i), UID: 0,
			Identity: fsys.Identity{Vol: vol, Ino: uint64(256 + i), Size: size,
				Mtime: 1_700_000_000e9 + int64(i), Ctime: 1_700_000_000e9 + int64(i)},
		}
		last := g.files[len(g.files)-1]
		if _, err := tx.Put(f, g.sums[last.first*blockhash.SumSize:], ext); err != nil {
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
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := ix.Close(); err != nil {
		return err
	}
	st, err := os.Stat(*db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "synthindex: %s: %d files, %d blocks (%d copied, %d zero), index %s, built in %s\n",
		*db, len(g.files), g.blocks(), g.copied, g.zeros, cli.Bytes(st.Size()), time.Since(start).Round(time.Millisecond))
	return nil
}

// maxFor returns the largest size of a log-uniform distribution from
// minSize whose mean is mean: (max-min)/ln(max/min) = mean.
func maxFor(mean float64) float64 {
	lo, hi := float64(minSize), float64(minSize)
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

// gen generates the files' sums, all of them kept in one packed array so
// that later files can copy earlier ones.
type gen struct {
	rng           *rand.Rand
	sums          []byte
	files         []span
	dup, zero     float64
	copied, zeros int64
}

// span is a file's place in sums, in blocks.
type span struct {
	first, n int64
	size     int64
}

func (g *gen) blocks() int64 { return int64(len(g.sums) / blockhash.SumSize) }

// wantCopies reports whether the copies so far fall short of g.dup.
func (g *gen) wantCopies() bool { return float64(g.copied) < g.dup*float64(g.blocks()) }

// file appends the sums of a new file of at most room blocks and returns
// its size in bytes.
func (g *gen) file(room int64, maxSz float64) int64 {
	first := g.blocks()
	// A whole-file copy of an earlier file, when one fits and the copies
	// would not overshoot.
	if len(g.files) > 0 && g.rng.IntN(4) == 0 && g.wantCopies() {
		src := g.files[g.rng.IntN(len(g.files))]
		if src.n <= room && float64(g.copied+src.n) <= g.dup*float64(g.blocks()+src.n)+4096 {
			g.sums = append(g.sums, g.sums[src.first*blockhash.SumSize:(src.first+src.n)*blockhash.SumSize]...)
			g.copied += src.n
			g.files = append(g.files, span{first, src.n, src.size})
			return src.size
		}
	}
	size := max(minSize, int64(math.Exp(math.Log(minSize)+g.rng.Float64()*math.Log(maxSz/minSize))))
	if n := (size + bs - 1) / bs; n > room {
		size = room * bs
	}
	n := (size + bs - 1) / bs
	full := size / bs // blocks that copies may cover; a partial tail is unique
	for b := int64(0); b < n; {
		// Stretches of 1 to 4096 blocks, log-uniform.
		l := min(int64(math.Exp(g.rng.Float64()*math.Log(4097))), n-b)
		switch {
		case g.rng.Float64() < g.zero*2.4:
			// Zero stretches are a quarter as long as others, and the
			// others are often cut short, hence 2.4 for about g.zero.
			l = max(1, l/4)
			g.sums = append(g.sums, make([]byte, l*blockhash.SumSize)...)
			g.zeros += l
		case len(g.files) > 0 && b < full && g.wantCopies():
			src := g.files[g.rng.IntN(len(g.files))]
			srcFull := src.size / bs // at least 1: no file is under 4 KiB
			off := g.rng.Int64N(srcFull)
			l = min(l, srcFull-off, full-b)
			g.sums = append(g.sums, g.sums[(src.first+off)*blockhash.SumSize:(src.first+off+l)*blockhash.SumSize]...)
			g.copied += l
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
	}
	g.files = append(g.files, span{first, n, size})
	return size
}
