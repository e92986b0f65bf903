// Findsame prints a dedupe plan for the files in the index.
//
// Usage:
//
//	findsame [flags] > plan.jsonl
//
// Findsame reads the index that hashfile wrote and finds maximal duplicate
// runs: stretches of consecutive blocks whose content appears again,
// consecutively, in another file or elsewhere in the same file, at any
// block-aligned offset. It prints one JSON object per line on standard
// output, each naming a source range and up to 127 destination ranges of
// the same content, with the identity every file had when hashed (see
// docs/plan-format.md). applysame carries the plan out; jq can filter it.
//
// The source of each run is chosen so that the most space is freed: on
// btrfs, an extent is freed only when no part of it is still referenced,
// so copies whose extents the run covers whole become destinations (a loose
// file found inside a disk image points into the image). Files are paired
// only with files they can share storage with: on the same filesystem
// (btrfs subvolumes of one filesystem count as one), and on btrfs only
// files that both have, or both lack, the NOCOW attribute (chattr +C).
// Zero blocks, holes, inline extents and ranges that already share storage
// with their source are never planned, so a re-run after applysame plans
// nothing:
// findsame maps the files it is about to plan again (FIEMAP, no data read),
// because deduplication changes extents without changing the identity
// hashfile records. A file changed or gone since it was hashed is left out
// with a warning naming it; run hashfile again to include it. With
// -recorded, findsame uses the extents recorded in the index instead and
// opens no file: for indexes of files that are not at hand, such as the
// synthetic ones of scripts/bench-findsame.
// Where the runs cover only part of a destination's extent on btrfs,
// which frees nothing by itself, findsame plans a rewrite of the rest
// (unless -no-rewrite): applysame copies it into a new unnamed file and
// shares it back, so that the old extent is freed. It also plans the
// rewrite of extents that an interrupted or limited run left partly
// referred to by no file. A rewrite is planned when it frees, net, at
// least a quarter of the extent and at least 64 KiB.
//
// Output is deterministic for a given index, in units of work (the "unit"
// field, see docs/plan-format.md): first the dedupe lines that need no
// rewrite, each a unit, in order of source path and offset; then each
// rewrite, those that free most per byte written first, followed by the
// dedupe lines that go with it.
//
// A summary goes to standard error unless -q: lines, destinations, bytes
// to deduplicate, and an estimate of the bytes applysame would free (on
// btrfs, only destination extents the plan covers whole count).
//
// Examples:
//
//	findsame > plan.jsonl
//	findsame -min-len 1M -exclude '/srv/db/*' | applysame
//	findsame -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
//	findsame -whole-files -include '/home/*' | jq -r '.dst[].path'
//
// Exit status: 0 plan written (possibly empty), 1 error, 2 usage error,
// 130 interrupted.
package main

import (
	"bufio"
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
	"same/internal/index"
	"same/internal/plan"
	"same/internal/runs"
	"same/internal/walk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("findsame", err, os.Stderr))
}

const usage = `
Usage: findsame [flags] > plan.jsonl

Prints a dedupe plan, one JSON object per line, for the files in the index.

Examples:
  findsame > plan.jsonl
  findsame -min-len 1M -exclude '/srv/db/*' | applysame
  findsame -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
  findsame -whole-files -include '/home/*' | jq -r '.dst[].path'

Exit status: 0 plan written, 1 error, 2 usage, 130 interrupted.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("findsame", flag.ContinueOnError)
	db := fs.String("db", index.DefaultPath(), "index `file`")
	var minLen cli.Size
	fs.Var(&minLen, "min-len", "skip runs shorter than `size` bytes (suffixes K, M, G)")
	var include, exclude cli.Strings
	fs.Var(&include, "include", "only files whose path, name or a directory above matches `glob` (repeatable)")
	fs.Var(&exclude, "exclude", "leave out files whose path, name or a directory above matches `glob` (repeatable)")
	whole := fs.Bool("whole-files", false, "only runs that cover both files whole")
	budget := cli.Size(runs.DefaultBudget)
	fs.Var(&budget, "mem", "memory for one grouping pass; larger indexes take more passes")
	recorded := fs.Bool("recorded", false, "use the extents recorded in the index instead of mapping the files again; for indexes of files that are not at hand, such as benchmarks")
	noRewrite := fs.Bool("no-rewrite", false, "plan no rewrites of partly covered extents")
	quiet := fs.Bool("q", false, "no summary")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("unexpected argument %q: findsame reads the index (-db)", fs.Arg(0))
	}
	for _, p := range [][]string{include, exclude} {
		if err := walk.CheckPatterns(p); err != nil {
			return cli.Usagef("%v", err)
		}
	}
	stop, err := cli.Profile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	ix, err := index.OpenExisting(*db)
	if err != nil {
		return err
	}
	defer ix.Close()

	start := time.Now()
	w := bufio.NewWriterSize(stdout, 256<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	sum, err := runs.Find(ctx, ix, runs.Options{
		MinLen: int64(minLen), Include: include, Exclude: exclude,
		WholeFiles: *whole, Budget: int64(budget), Live: !*recorded,
		Rewrite: !*noRewrite,
		Warn:    func(path string, err error) { fmt.Fprintf(stderr, "findsame: %v\n", err) },
	}, func(r plan.Record) error { return enc.Encode(r) })
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write plan: %w", ferr)
	}
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stderr, "findsame: %d lines, %d destinations, %s to deduplicate, %d extents to rewrite (%s to write), about %s to be freed; %d files (%d changed since hashed), %d blocks, %d pass(es) in %s\n",
			sum.Lines, sum.Runs, cli.Bytes(sum.Bytes), sum.Rewrites, cli.Bytes(sum.Written), cli.Bytes(sum.Freed), sum.Files, sum.Skipped, sum.Blocks, sum.Passes,
			time.Since(start).Round(time.Millisecond))
	}
	return nil
}
