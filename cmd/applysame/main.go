// Applysame shares the storage of identical file ranges, as a dedupe plan
// says, with the kernel's FIDEDUPERANGE ioctl.
//
// Synopsis:
//
//	applysame [-chunk SIZE] [-dry-run] [-from-fdupes] [-j N] [-max-time DURATION] [-q] [-reserve SIZE] [-rewrite-limit SIZE] [-stop-on-error] [PLAN]
//
// Applysame reads a plan, one JSON dedupe record per line as findsame
// prints them (see docs/plan-format.md), from the file PLAN, or from stdin
// when PLAN is absent or "-". It applies -j lines at once, reads the next
// line when one is done, and writes the results in plan order. For each
// line it opens the source and destination files read-only, checks that
// each is still the regular file the plan was made for (device, inode,
// size and modification time), that offsets are multiples of the
// filesystem block size, and asks the kernel to share each destination
// range with the source range. The kernel compares the bytes under lock and shares only what is
// identical, so file contents never change. A file that changed since it
// was hashed is reported stale and left alone. The pages the kernel reads
// to compare a destination range that had none cached are dropped from
// the page cache again, so that a run does not push out what other
// programs use.
//
// A rewrite line (on btrfs) frees an extent that the dedupe lines cover only
// in part: applysame checks that the ranges to copy still lie, unshared, in
// that extent, copies them into a new unnamed file on the same filesystem
// (O_TMPFILE, so a crash leaves nothing behind; for a file in a read-only
// snapshot, next to the writable file the line names), syncs it, and shares the
// file's ranges back from the copy with FIDEDUPERANGE; if the file changed
// after the copy, the kernel finds the bytes differ and nothing is shared.
// No file is ever written but the copy, and -rewrite-limit bounds how much
// is written.
//
// A plan comes in units of work: an extent's rewrite with the dedupe lines
// that cover it, or a dedupe line that needs no rewrite (findsame writes
// those first, then the rewrites, those that free most per byte written
// first). Applysame finishes a unit with a rewrite before it starts the
// next, so that the copy it wrote is paid back by the extent it frees.
// Before each rewrite it checks that the filesystem keeps -reserve bytes
// available after the copy; a unit without that room waits until the plan
// is read, while the units after it free what they can (but those that
// share from the extent it would free, which wait behind it), and is
// tried again then. Once a copy runs out of space (ENOSPC) it writes
// nothing more in the run and goes on with the lines that need no
// writing. The dedupe lines of a rewrite that was not done leave its
// extent alone: sharing part of an extent frees nothing. A line whose
// source lies in that extent shares it back into files that may refer to
// it already (a snapshot's copy of the file): each destination is first
// looked at (FIEMAP), and one sharing the source's storage is not
// compared.
//
// Options:
//
//	-chunk SIZE
//	      bytes per ioctl call, 1MiB to 1GiB (default 16MiB); a number with
//	      an optional suffix K, M or G, optionally followed by iB (powers of
//	      1024). Both files are locked while a call runs, so writers to them
//	      wait for at most one chunk.
//	-dry-run
//	      check every line (identities, file types, alignment) and issue no
//	      ioctl; destinations that pass are reported "checked".
//	-from-fdupes
//	      read fdupes or jdupes output instead of a plan: paths one per line,
//	      groups separated by blank lines. The first file of each group is the
//	      source; the others are deduped whole against it. Identities are
//	      taken when the group is read; files of another size differ.
//	-j N  lines applied at once, 1 to 64 (default: the number of CPUs, at
//	      most 64). While one line waits for the disk, another goes on. A
//	      unit with a rewrite starts once the lines before it are done,
//	      and its lines once its rewrite is. -j 1 applies each line before
//	      reading the next.
//	-max-time DURATION
//	      start no unit of work after DURATION (such as 30m or 2h): the
//	      unit in progress is finished, and the lines after it are
//	      reported skipped. 0 (the default) sets no limit.
//	-q    print no progress or summary.
//	-reserve SIZE
//	      the space a rewrite must leave available on its filesystem, as
//	      statfs reports it, after its copy; a rewrite that would leave
//	      less is skipped (default: 2% of the filesystem, at most 1GiB).
//	-rewrite-limit SIZE
//	      the most bytes rewrite lines may write in this run (default 1GiB);
//	      a rewrite that would pass it is skipped. 0 turns rewriting off.
//	-keep-going
//	      go on after an item fails (the default); -keep-going=false is
//	      -stop-on-error.
//	-stop-on-error
//	      stop after the first line with an item not done (lines already
//	      started finish, and their results are written; units read and
//	      waiting for room are reported skipped).
//
// Options may be written with one or two dashes. SIZE takes the suffixes
// K, M and G (powers of 1024), optionally followed by iB.
//
// Examples:
//
//	findsame -db idx.db > plan.jsonl && applysame plan.jsonl > results.jsonl
//	findsame -db idx.db -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
//	applysame -dry-run < plan.jsonl | jq -c 'select(.status != "checked")'
//	fdupes -r /srv/data | applysame -from-fdupes
//
// Output:
//
// For each plan line (or fdupes group), one JSON result record on stdout,
// written as soon as the line is done: the line number, the line's status
// (done, partial, invalid, stale, error, skipped, busy; checked in a dry
// run) and for each destination its status (deduped, differs, stale,
// error, skipped, busy, checked), the bytes deduped and any errno and
// message. See docs/plan-format.md. A destination that the kernel finds
// busy (EAGAIN: a btrfs send reads its subvolume) is tried again after 1,
// 2, 4 and 8 seconds, then reported busy; the next run plans it again.
// Where a dedupe or a rewrite's copy finds the quota of its btrfs subvolume
// full (EDQUOT: its qgroup limit reached), or its filesystem mounted
// read-only (EROFS, as btrfs makes itself after an error), the units after
// it that would share or copy into that volume are skipped, their results
// saying what to do: done by halves, they would free nothing and cost
// metadata, and each would fail in turn.
//
// On stderr, one message per item not done, naming the plan line and the
// file:
//
//	applysame: line 3: /mnt/a: stale: size 8192, plan says 4096
//
// while it runs, when standard error is a terminal, a progress line: lines
// done, of how many when the plan is a file (its lines are counted first),
// the percentage, rate and time left, and the bytes deduplicated so far;
// from a pipe, lines done and the rate;
//
// and at the end a summary: lines read, destinations deduped, bytes
// deduplicated, differing, stale and failed items, invalid lines, the
// lines not started for each volume found to take nothing more, and for
// each filesystem touched the space it reports freed, measured with statfs
// before the first dedupe on it and after the run, after syncing it:
//
//	applysame: 561 lines not started: the filesystem of /backup/a was found mounted read-only on line 1 (EROFS); mount it read-write and run again
//
// Exit status:
//
//	0    every line done, or left for a later run: skipped (rewrite limit,
//	     reserve, -max-time) or busy; a plan applied before is done
//	1    fatal error, e.g. the plan cannot be read
//	2    usage error
//	3    some items not done: invalid lines, stale files, differing data,
//	     errors
//	130  interrupted (SIGINT or SIGTERM): the unit of work in progress is
//	     finished if it has a rewrite (a second signal kills), otherwise
//	     the ioctls in progress finish; the line read but not started is
//	     reported skipped, and no further line is read
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"same/internal/apply"
	"same/internal/cli"
	"same/internal/fstype"
	"same/internal/plan"

	"golang.org/x/sys/unix"
)

func main() {
	ctx, stop := cli.WithSignals(context.Background(), "applysame", os.Stderr)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("applysame", err, os.Stderr))
}

const usage = `
Usage: applysame [-chunk SIZE] [-dry-run] [-from-fdupes] [-j N] [-max-time DURATION] [-q]
                 [-reserve SIZE] [-rewrite-limit SIZE] [-stop-on-error] [PLAN]

Shares the storage of identical ranges as a findsame plan says, with the
kernel's FIDEDUPERANGE ioctl; prints one JSON result per plan line.

Applysame reads a plan, one JSON dedupe record per line as findsame prints
them (see plan-format.md), from the file PLAN, or from standard input when
PLAN is absent or "-". It applies -j lines at once and writes the results
in plan order. For each line it opens the source and destination files
read-only, checks that each is still the regular file the plan was made
for (device, inode, size and modification time) and that offsets are
multiples of the filesystem block size, and asks the kernel to share each
destination range with the source range. The kernel compares the bytes
under lock and shares only what is identical, so file contents never
change. A file that changed since it was hashed is reported stale and left
alone. The pages the kernel reads to compare a destination range that had
none cached are dropped from the page cache again, so that a run does not
push out what other programs use.

A rewrite line (on btrfs) frees an extent that the dedupe lines cover only
in part: applysame checks that the ranges to copy still lie, unshared, in
that extent, copies them into a new unnamed file on the same filesystem
(O_TMPFILE, so a crash leaves nothing behind; for a file in a read-only
snapshot, next to the writable file the line names), syncs it, and shares the
file's ranges back from the copy; if the file changed after the copy, the
kernel finds the bytes differ and nothing is shared. No file is ever
written but the copy, and -rewrite-limit bounds how much is written.

On btrfs with quotas, a subvolume whose qgroup limit is reached takes no
dedupe: the kernel needs a little room in it for metadata (EDQUOT). The
first item into it fails, and the units of work after it that would share
or copy into it are skipped, their results saying how to raise the limit
(btrfs qgroup limit SIZE 0/ID PATH, with a PATH outside the subvolume).
So are those into a filesystem found mounted read-only (EROFS), as btrfs
makes itself after an error.

For each plan line (or fdupes group) one JSON result record goes to
standard output: the line number, the line's status (done, partial,
invalid, stale, error, skipped; checked in a dry run) and for each
destination its status, the bytes deduped and any error. On standard
error, one message per item not done, naming the plan line and the file:

  applysame: line 3: /mnt/a: stale: size 8192, plan says 4096

and at the end, unless -q, a summary: lines read, destinations deduped,
bytes deduplicated, items not done, the lines not started for each volume
found to take nothing more (a full quota, a read-only mount), and for each
filesystem touched the space it reports freed (statfs before the first
dedupe on it and after the run, after syncing it). Flags may be written with one or two dashes; a SIZE
takes the suffixes K, M and G (powers of 1024).

Examples:
  findsame > plan.jsonl && applysame plan.jsonl > results.jsonl
  findsame -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
  applysame -dry-run < plan.jsonl | jq -c 'select(.status != "checked")'
  fdupes -r /srv/data | applysame -from-fdupes

Exit status:
  0    every line done, or left for a later run: skipped (rewrite limit,
       reserve, -max-time) or busy; a plan applied before is done
  1    fatal error, e.g. the plan cannot be read
  2    usage error
  3    some items not done: invalid lines, stale files, differing data,
       errors
  130  interrupted (SIGINT or SIGTERM): the unit of work in progress is
       finished if it has a rewrite (a second signal kills), otherwise
       the ioctls in progress finish; the line read but not started is
       reported skipped, and no further line is read

See also: hashfile(1), findsame(1), fdupes(1)
`

// DefaultRewriteLimit is the default of -rewrite-limit.
const DefaultRewriteLimit = 1 << 30

// maxJobs bounds -j; the default is one line per CPU up to it.
const maxJobs = 64

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("applysame", flag.ContinueOnError)
	chunk := cli.Size(16 << 20)
	fs.Var(&chunk, "chunk", "the `size` of one ioctl call, 1M to 1G; both files are locked while a call runs, so writers to them wait for at most one chunk")
	dryRun := fs.Bool("dry-run", false, "check every line (identities, file types, alignment) and issue no ioctl; destinations that pass are reported \"checked\"")
	fdupes := fs.Bool("from-fdupes", false, "read fdupes or jdupes output instead of a plan: paths one per line, groups separated by blank lines; the first file of each group is the source, the others are deduped whole against it")
	jobs := fs.Int("j", min(runtime.NumCPU(), maxJobs), "`N` lines applied at once, 1 to 64 (default: one per CPU, at most 64); -j 1 applies each line before reading the next")
	quiet := fs.Bool("q", false, "print no progress or summary")
	keepGoing := fs.Bool("keep-going", true, "go on after an item fails; -keep-going=false is -stop-on-error")
	stopOnError := fs.Bool("stop-on-error", false, "stop after the first line with an item not done (lines already started finish, and their results are written; units read and waiting for room are reported skipped)")
	rewriteLimit := cli.Size(DefaultRewriteLimit)
	fs.Var(&rewriteLimit, "rewrite-limit", "the most, a `size`, that rewrite lines may write in this run; a rewrite that would pass it is skipped; 0 turns rewriting off")
	reserve := reserveFlag(-1)
	fs.Var(&reserve, "reserve", "the space, a `size`, a rewrite leaves available on its filesystem after its copy; a rewrite that would leave less is skipped (default: 2% of the filesystem, at most 1G)")
	maxTime := fs.Duration("max-time", 0, "start no unit of work after this `duration` (such as 30m); the unit in progress is finished (0: no limit)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	showVersion := fs.Bool("version", false, "print the version and the plan format it reads")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprint(stdout, cli.VersionLine("applysame", fmt.Sprintf("plan format %d", plan.Version)))
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["keep-going"] && set["stop-on-error"] && *keepGoing == *stopOnError {
		return cli.Usagef("-keep-going=%t contradicts -stop-on-error=%t", *keepGoing, *stopOnError)
	}
	stop := *stopOnError || !*keepGoing
	if chunk < 1<<20 || chunk > 1<<30 {
		return cli.Usagef("-chunk %s: want 1M to 1G", &chunk)
	}
	if *jobs < 1 || *jobs > maxJobs {
		return cli.Usagef("-j %d: want 1 to %d lines at once", *jobs, maxJobs)
	}
	if *maxTime < 0 {
		return cli.Usagef("-max-time: %v is negative", *maxTime)
	}
	stopProfile, err := cli.Profile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var deadline time.Time
	if *maxTime > 0 {
		deadline = time.Now().Add(*maxTime)
	}
	in := stdin
	switch fs.NArg() {
	case 0:
	case 1:
		if name := fs.Arg(0); name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
	default:
		return cli.Usagef("more than one PLAN: %s", strings.Join(fs.Args(), " "))
	}

	var bar *cli.Progress
	if !*quiet {
		bar = cli.NewProgress(stderr)
	}
	opts := apply.Options{
		Chunk:        int64(chunk),
		DryRun:       *dryRun,
		FromFdupes:   *fdupes,
		StopOnError:  stop,
		Jobs:         *jobs,
		RewriteLimit: int64(rewriteLimit),
		Reserve:      int64(reserve),
		Deadline:     deadline,
		Report:       func(err error) { bar.Printf(stderr, "applysame: %v\n", err) },
	}
	if bar != nil {
		unit, total := "groups", int64(0)
		if !*fdupes {
			unit, total = "lines", planLines(in)
		}
		opts.Progress = func(s *apply.Stats) { bar.Update(meter(s, unit, total, *dryRun)) }
	}
	stats, err := apply.Run(ctx, in, stdout, opts)
	bar.Clear()
	if !*quiet {
		printSummary(stderr, stats, *dryRun)
	}
	if err == nil && stats.Failed() > 0 {
		err = cli.ErrPartial
	}
	return err
}

// meter is the progress of a run: lines (or fdupes groups) done, of the
// total when the plan is a file, and the bytes deduplicated so far.
func meter(s *apply.Stats, unit string, total int64, dryRun bool) cli.Meter {
	m := cli.Meter{Phase: "applying", Done: int64(s.Lines), Total: total, Unit: unit}
	if dryRun {
		m.Phase = "checking"
		m.Extra = fmt.Sprintf("%d destinations checked", s.Checked)
	} else {
		m.Extra = cli.Bytes(s.Bytes) + " deduplicated"
	}
	if s.Failed() > 0 {
		m.Extra += fmt.Sprintf(", %d not done", s.Failed())
	}
	return m
}

// planLines counts the lines that are not blank in in from where it is
// read next, without moving it, when in is a regular file; else, or if
// that fails, it returns 0: not known.
func planLines(in io.Reader) int64 {
	f, ok := in.(*os.File)
	if !ok {
		return 0
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, 1<<62), 1<<20)
	var n int64
	blank := true
	for {
		b, err := r.ReadSlice('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			blank = false
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(b) > 0 && !blank {
			n++
		}
		blank = true
		if err != nil {
			return n
		}
	}
}

// printSummary writes the counts and the space each filesystem freed.
func printSummary(w io.Writer, s *apply.Stats, dryRun bool) {
	done := fmt.Sprintf("%d destinations deduped, %d bytes deduplicated (%s)", s.Deduped, s.Bytes, cli.Bytes(s.Bytes))
	if dryRun {
		done = fmt.Sprintf("%d destinations checked (dry run)", s.Checked)
	}
	busy := ""
	if s.Busy > 0 {
		busy = fmt.Sprintf(", %d busy (EAGAIN)", s.Busy)
	}
	fmt.Fprintf(w, "applysame: %d lines, %s, %d extents rewritten (%s written), %d differ, %d stale, %d errors, %d skipped%s, %d invalid lines\n",
		s.Lines, done, s.Rewrites, cli.Bytes(s.Written), s.Differs, s.Stale, s.Errors, s.Skipped, busy, s.Invalid)
	for _, b := range s.Blocked {
		fmt.Fprintf(w, "applysame: %d lines %s\n", b.Lines, b.Why)
	}
	if dryRun {
		return
	}
	for _, f := range s.FS {
		at := mountOf(f.Path)
		if f.Err != nil {
			fmt.Fprintf(w, "applysame: %s filesystem at %s: cannot measure freed space: %v\n", f.Type, at, f.Err)
			continue
		}
		fmt.Fprintf(w, "applysame: %s filesystem at %s: freed %d bytes (%s), free %s before, %s after\n",
			f.Type, at, f.Freed(), cli.Bytes(f.Freed()), cli.Bytes(f.FreeBefore), cli.Bytes(f.FreeAfter))
	}
}

// mountOf names where the filesystem holding path is mounted, or path
// itself if that cannot be told.
func mountOf(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return path
	}
	return fstype.MountPoint(uint64(st.Dev), path)
}

// reserveFlag is -reserve: a size, or -1 for the default.
type reserveFlag int64

func (r *reserveFlag) String() string {
	if *r < 0 {
		return "2% of the filesystem, at most 1GiB"
	}
	return strconv.FormatInt(int64(*r), 10)
}

func (r *reserveFlag) Set(v string) error {
	n, err := cli.ParseSize(v)
	*r = reserveFlag(n)
	return err
}
