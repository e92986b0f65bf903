// Mkcorpus generates deterministic test trees and measures the fixed-block
// oracle of a tree.
//
// Usage:
//
//	go run ./scripts/mkcorpus [-kind mixed|images|files|vms] [-count N] [-size SIZE] [-seed N] [-special] DIR
//	go run ./scripts/mkcorpus -ceiling [-bs SIZE] [-json] DIR
//
// The first form writes a tree of about SIZE bytes under DIR (created if
// needed; existing files of the same names make it fail). The tree is the
// same for the same kind, size and seed. Kinds (see internal/corpus):
//
//	mixed    unique files of varied sizes, whole-file copies, files made of
//	         4 KiB-aligned runs of others, sparse files and zero blocks,
//	         many small files, data duplicated at unaligned offsets, in
//	         nested directories; about 40% duplicated content
//	images   loose files and two ext4 disk images holding copies of many
//	         of them plus files of their own; needs root (loop mounts) and
//	         mkfs.ext4
//	files    -count small files of 1 KiB to -max, a fifth of them copies
//	         (-size does not apply)
//	vms      three disk images of virtual machines cloned from one
//	         template, each then written at random (as many 4 KiB
//	         writes as 5, 20 and 60% of its blocks, synced every 256):
//	         up to a hundred thousand extents each on btrfs
//
// With -special it then adds special entries under DIR/special: a FIFO, a
// character device like /dev/zero (needs CAP_MKNOD), a unix socket,
// symbolic links to the largest file and to /dev/zero, an empty file and
// hard links to the largest file.
//
// The second form reads every regular file under DIR once per inode,
// without following symbolic links, and prints the fixed-block oracle:
// non-zero blocks minus distinct ones, times the block size, the most that
// block deduplication could free:
//
//	ceiling: 123456789 bytes (files 100, blocks 2000, non-zero 1900, distinct 1500)
//
// or, with -json, one JSON object with the fields files, blocks, non_zero,
// distinct, ceiling and block_size.
//
// Options:
//
//	-kind KIND    tree to generate: mixed (default), images, files or vms
//	-count N      number of files for -kind files (default 100000)
//	-max SIZE     largest file for -kind files (default 16K)
//	-size SIZE    about how many bytes to write: 4096, 512M, 2G (default 256M)
//	-seed N       seed of the tree (default 1)
//	-special      add special entries after the tree
//	-ceiling      measure DIR instead of writing a tree
//	-bs SIZE      oracle block size (default 4K)
//	-json         print the oracle as JSON
//
// Examples:
//
//	go run ./scripts/mkcorpus -kind mixed -size 2G -seed 1 -special /mnt/test/tree
//	go run ./scripts/mkcorpus -ceiling /mnt/test/tree
//	go run ./scripts/mkcorpus -ceiling -json /mnt/test/tree | jq .ceiling
//
// An interrupt (SIGINT, SIGTERM) lets the tree being written finish, so
// that no disk image is left mounted, and then exits with status 130.
//
// Exit status: 0 ok, 1 error, 2 usage error, 130 interrupted.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"same/internal/cli"
	"same/internal/corpus"
)

func main() {
	// An interrupt does not kill mkcorpus while it writes a tree: it
	// finishes (so that no disk image stays mounted) and exits with 130.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("mkcorpus", err, os.Stderr))
}

const usage = `
Usage: mkcorpus [-kind mixed|images|files|vms] [-count N] [-size SIZE] [-seed N] [-special] DIR
       mkcorpus -ceiling [-bs SIZE] [-json] DIR

Writes a deterministic test tree under DIR, or prints the fixed-block
oracle (the most block deduplication could free) of the tree under DIR.

Examples:
  mkcorpus -kind mixed -size 2G -seed 1 -special /mnt/test/tree
  mkcorpus -ceiling /mnt/test/tree
`

func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkcorpus", flag.ContinueOnError)
	kind := fs.String("kind", "mixed", "tree to generate: `mixed`, images, files or vms")
	count := fs.Int("count", 100000, "number of files for -kind files")
	maxFile := cli.Size(16 << 10)
	fs.Var(&maxFile, "max", "largest file for -kind files")
	size := cli.Size(256 << 20)
	fs.Var(&size, "size", "about how many `bytes` to write (4096, 512M, 2G)")
	seed := fs.Int64("seed", 1, "seed of the tree")
	special := fs.Bool("special", false, "add special entries under DIR/special")
	ceiling := fs.Bool("ceiling", false, "print the fixed-block oracle of DIR")
	bs := cli.Size(corpus.BlockSize)
	fs.Var(&bs, "bs", "oracle block `size`")
	asJSON := fs.Bool("json", false, "print the oracle as JSON")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("want one DIR, got %d arguments", fs.NArg())
	}
	dir := fs.Arg(0)

	if *ceiling {
		if bs <= 0 || bs > 1<<30 {
			return cli.Usagef("bad -bs %d", bs)
		}
		o, err := corpus.Ceiling(dir, int(bs))
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(struct {
				corpus.Oracle
				BlockSize int64 `json:"block_size"`
			}{o, int64(bs)})
		}
		_, err = fmt.Fprintf(stdout, "ceiling: %d bytes (files %d, blocks %d, non-zero %d, distinct %d)\n",
			o.Ceiling, o.Files, o.Blocks, o.NonZero, o.Distinct)
		return err
	}

	start := time.Now()
	var err error
	switch *kind {
	case "mixed":
		err = corpus.Mixed(dir, int64(size), *seed)
	case "images":
		err = corpus.Images(dir, int64(size), *seed)
	case "files":
		err = corpus.Files(dir, *count, int64(maxFile), *seed)
	case "vms":
		err = corpus.VMs(dir, int64(size), *seed)
	default:
		return cli.Usagef("unknown -kind %q: want mixed, images, files or vms", *kind)
	}
	if err != nil {
		return err
	}
	if *special && ctx.Err() == nil {
		if err := corpus.Special(dir); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "mkcorpus: %s tree of about %s (seed %d) in %s in %s\n",
		*kind, cli.Bytes(int64(size)), *seed, dir, time.Since(start).Round(time.Millisecond))
	return nil
}
