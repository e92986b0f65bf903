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
// files that both keep, or both lack, checksums of their data (files with
// the NOCOW attribute, chattr +C, and files written while btrfs was
// mounted with nodatasum lack them);
// with -same-owner, only files of the same owner, so that no user learns
// through shared extents what another's files hold (docs/security.md).
// Files recorded by a hashfile older than the index's identities (by
// st_dev) are left out until hashfile runs again. Zero blocks, holes, inline extents and ranges that already share storage
// with their source are never planned, so a re-run after applysame plans
// nothing:
// findsame maps the files it is about to plan again (FIEMAP, no data read),
// because deduplication changes extents without changing the identity
// hashfile records; on btrfs, where hashfile (as root) records extents
// from the file extent items and records them again as they change, a
// file whose every copy elsewhere already shared its storage when
// recorded is not mapped again, and none of its blocks is planned; nor is
// a file that the last run's plan did not name, unchanged since, whose
// every extent was recorded shared (one of a unit left out for its
// metadata cost, night after night) (run
// hashfile before findsame, so that what changed since is recorded). The
// files a plan names count as named from before its first line is
// printed, even when the run is cut short (an interrupt, applysame
// stopping early). A file changed or gone since it was hashed is left
// out with a warning naming it (files gone, one warning for those of each
// filesystem or subvolume: how many, the directory they share and the
// first), and the next run looks at it again; run hashfile again to
// include it. Where another filesystem holds that directory (theirs is
// not mounted tonight), the warning says so: hashfile keeps such files,
// and they are planned again once their filesystem is back. A file with
// the immutable attribute (chattr +i), into which
// the kernel shares nothing even for root, is seen when mapped again: it
// is never a destination nor rewritten, only a source (with -whole-files,
// the source of its copies), with a warning naming it.
//
// Findsame keeps the sums it grouped in a table beside the index
// (INDEX-sums and INDEX-sums.delta, 16 bytes per block hashed), with the
// extents it read from the index (INDEX-sums.extents, 64 bytes per
// extent), all created 0600 (see package sumtab). The next run regroups
// only the files changed since (as hashfile recorded them) and those the
// last run planned that were not stored once yet, with every file that
// holds one of their blocks, reads from the index only the sums and
// extents of the files changed since, and prints the plan a full run
// would print. A file of a new
// read-only snapshot that hashfile recorded from its origin's row (the
// same sums and extents) joins its origin's groups without a look. A first run, a run
// with other options or after other volumes became read-only, and one
// after more than a quarter of the blocks changed group every sum; so
// does -full, which reads every extent from the index too. -no-keep keeps
// no table. After restoring the index from a
// backup, run findsame -full once: the table, newer than the index, cannot
// tell.
//
// With
// -recorded, findsame uses the extents recorded in the index instead and
// opens no file: for indexes of files that are not at hand, such as the
// synthetic ones of scripts/bench-findsame (an immutable file is then
// planned like any other, and applysame reports the lines into it).
// Where the runs cover only part of a destination's extent on btrfs,
// which frees nothing by itself, findsame plans a rewrite of the rest
// (unless -no-rewrite): applysame copies it into a new unnamed file and
// shares it back, so that the old extent is freed. It also plans the
// rewrite of extents partly referred to by no file, in any file of the
// index: left by an interrupted or limited run, or by overwrites inside
// large files (VM images, databases). A rewrite is planned when it frees,
// net, at least a quarter of the extent and at least 64 KiB.
//
// Output is deterministic for a given index, in units of work (the "unit"
// field, see docs/plan-format.md), each what must be done for extents to
// be freed (a unit's rewrites first, then its dedupe lines): those that
// free most per byte compared or written first, a line never before the
// rewrite of the extent holding its source. On btrfs (not with -recorded)
// a unit that frees less than the tree leaves it copies where snapshots
// share them (nothing, say) is left out.
//
// Filesystems that cannot deduplicate (ext4, tmpfs, XFS made without
// reflink, and others by type; see package fstype), and those mounted
// read-only (a backup disk, a btrfs that an error made read-only), are
// left out, each named once on standard error (with -recorded, XFS is
// taken to have reflink and every mount to be writable: no file is opened
// to ask):
//
//	findsame: ext4 at /mnt/x cannot deduplicate: skipped
//	findsame: btrfs at /backup is mounted read-only and cannot deduplicate: skipped
//
// On a terminal, standard error shows the progress of each phase (loading
// files, reading sums, grouping, or reading changed sums and looking up
// sums, loading extents, mapping files, chaining, joining runs, writing
// the plan): done, total, percentage and time left.
//
// A summary goes to standard error unless -q: lines, destinations, bytes
// to deduplicate, an estimate of the bytes applysame would free (on
// btrfs, only destination extents the plan covers whole count), and the
// files left out (changed since hashed), not mapped again (already shared
// when hashed, or as the last plan left them) or left as they are
// (immutable).
//
// Examples:
//
//	findsame > plan.jsonl
//	findsame -min-len 1M -exclude '/srv/db/*' | applysame
//	findsame -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
//	findsame -whole-files -include '/home/*' | jq -r '.dst[].path'
//	findsame -same-owner > plan.jsonl      # on hosts with several users
//	findsame -report                       # what the plan would do
//
// Exit status: 0 plan written (possibly empty), 1 error, 2 usage error,
// 130 interrupted.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"same/internal/cli"
	"same/internal/index"
	"same/internal/plan"
	"same/internal/runs"
)

func main() {
	ctx, stop := cli.WithSignals(context.Background(), "findsame", os.Stderr)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("findsame", err, os.Stderr))
}

const usage = `
Usage: findsame [flags] > plan.jsonl

Prints a dedupe plan, one JSON object per line, for the files in the index.

Findsame reads the index that hashfile wrote and finds maximal duplicate
runs: stretches of consecutive blocks whose content appears again,
consecutively, in another file or elsewhere in the same file, at any
block-aligned offset. Each line names a source range and up to 127
destination ranges of the same content, with the identity every file had
when hashed (see plan-format.md). applysame carries the plan out; jq can
filter it.

The source of each run is chosen so that the most space is freed: on btrfs
an extent is freed only when no part of it is still referenced, so copies
whose extents the run covers whole become destinations. Files are paired
only with files they can share storage with: on the same filesystem (btrfs
subvolumes of one filesystem count as one), and on btrfs only files that
both keep, or both lack, checksums of their data (NOCOW files, and files
written while it was mounted with nodatasum, lack them). Zero blocks, holes, inline
extents and ranges that already share storage with their source are never
planned: findsame maps the files it plans again (FIEMAP, no data read), so
a re-run after applysame plans nothing. On btrfs, a file all of whose
copies already shared its storage when hashfile (as root) recorded its
extents is not mapped again, nor is a file that the last run's plan did
not name, unchanged since, whose every extent was recorded shared (one of
a unit left out for its metadata cost, night after night) (run hashfile
before findsame, so that what changed since is recorded). The files a
plan names count as named from before its first line is printed, even
when the run is cut short (an interrupt, applysame stopping early). A file
changed or gone since it was hashed is left out with a warning (files gone,
a deleted snapshot say, one warning for each filesystem or subvolume: how
many, the directory they share and the first), and the next run looks at
it again; run hashfile again to include it. Where another filesystem
holds that directory (theirs is not mounted tonight), the warning says
so: hashfile keeps such files, and they are planned again once their
filesystem is back. A file with the
immutable attribute (chattr +i), into which the kernel shares nothing, is
never a destination nor rewritten, only a source, with a warning; with
-whole-files it is the source of its copies. (With -recorded, which opens
no file, it cannot be known: applysame then reports the lines into it.)

Findsame keeps the sums it grouped in a table beside the index
(INDEX-sums and INDEX-sums.delta, 16 bytes per block hashed), with the
extents it read from the index (INDEX-sums.extents, 64 bytes per extent),
all created 0600. The next run regroups only the files changed since (as
hashfile recorded them) and those the last run planned that were not
stored once yet, with every file that holds one of their blocks, reads
from the index only the extents of the files changed since and the sums
of those whose data changed (not of those deduplicated or defragmented),
and prints the plan a full run would print. A file of a new read-only snapshot that hashfile
recorded from its origin's row (the same sums and extents) joins its
origin's groups without a look. A first run, a run with other options or after
other volumes became read-only, and one after more than a quarter of the
blocks changed group every sum; so does -full, which reads every extent
from the index too. -no-keep keeps no table.
After restoring the index from a backup, run findsame -full once: the
table, newer than the index, cannot tell.

Where the runs cover only part of a destination's extent on btrfs, which
frees nothing by itself, findsame plans a rewrite of the rest (unless
-no-rewrite): applysame copies it into a new file and shares it back, so
that the old extent is freed. A rewrite is planned when the runs cover at
least a quarter of the extent and at least 64 KiB.

Output is deterministic for a given index, in units of work that each free
space on their own, those that free most per byte compared or written
first (see docs/plan-format.md). On btrfs (not with -recorded) a unit
that frees less than the metadata it costs (nothing, say) is left out:
sharing into a file copies the tree leaf of its extent items where a
snapshot shares it. A summary goes to standard error unless -q: lines,
destinations, bytes to deduplicate, an estimate of the bytes applysame
would free (on btrfs: the data, less the metadata the units cost), the
units left out for their metadata, and the files left out or left as
they are. Flags may
be written with one or two dashes; a SIZE takes the suffixes K, M and G
(powers of 1024).

Examples:
  findsame > plan.jsonl
  findsame -min-len 1M -exclude '/srv/db/*' | applysame
  findsame -no-rewrite | jq -c 'select(.len >= 1048576)' | applysame
  findsame -whole-files -include '/home/*' | jq -r '.dst[].path'
  findsame -report                 # what the plan would do, for a person
  findsame -same-owner > plan.jsonl    # on hosts with several users

Environment:
  SAME_DB         the index when -db is not given
  XDG_STATE_HOME  the index is $XDG_STATE_HOME/same/index.db when neither
                  -db nor SAME_DB is given (default ~/.local/state)

Exit status:
  0    plan written (possibly empty)
  1    fatal error
  2    usage error
  130  interrupted

See also: hashfile(1), applysame(1)
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("findsame", flag.ContinueOnError)
	db := fs.String("db", index.DefaultPath(), "index `file` (default: $SAME_DB, else $XDG_STATE_HOME/same/index.db)")
	var minLen cli.Size
	fs.Var(&minLen, "min-len", "skip runs shorter than `size`")
	var include, exclude cli.Strings
	fs.Var(&include, "include", "only files whose path, name or a directory above matches `glob` (repeatable)")
	fs.Var(&exclude, "exclude", "leave out files whose path, name or a directory above matches `glob` (repeatable)")
	whole := fs.Bool("whole-files", false, "only runs that cover both files whole")
	budget := cli.Size(runs.DefaultBudget)
	fs.Var(&budget, "mem", "most memory, a `size`, that findsame may hold for the sums and their mappings; what does not fit goes to temporary files (see -tmpdir); the files and the plan come on top")
	tmpdir := fs.String("tmpdir", "", "`directory` for temporary files (default: the index's): about 9 bytes per block hashed and 16 per block found duplicate, at most; the summary says how much they held")
	recorded := fs.Bool("recorded", false, "use the extents recorded in the index instead of mapping the files again; for indexes of files that are not at hand, such as benchmarks")
	full := fs.Bool("full", false, "group every sum, as the first run does, instead of only those of files changed since the last run (see -help)")
	noKeep := fs.Bool("no-keep", false, "keep no table of sums beside the index (it takes 16 bytes per block): every run groups every sum")
	noRewrite := fs.Bool("no-rewrite", false, "plan no rewrites of partly covered extents")
	showReport := fs.Bool("report", false, "print a report of the plan for a person instead of the plan: totals, the largest runs, the directories with the most to deduplicate, rewrites")
	noReadOnly := fs.Bool("no-readonly", false, "never deduplicate into files in read-only btrfs snapshots, which root otherwise may (see docs/security.md); their copies are used as sources instead")
	sameOwner := fs.Bool("same-owner", false, "pair only files of the same owner, so that no user can learn through shared extents what another user's files hold (see docs/security.md)")
	quiet := fs.Bool("q", false, "no progress or summary")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	showVersion := fs.Bool("version", false, "print the version and the index and plan formats it reads and writes")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprint(stdout, cli.VersionLine("findsame", fmt.Sprintf("index format %d", index.Version()), fmt.Sprintf("plan format %d", plan.Version)))
		return nil
	}
	if fs.NArg() > 0 {
		return cli.Usagef("unexpected argument %q: findsame reads the index (-db)", fs.Arg(0))
	}
	if *tmpdir != "" {
		if st, err := os.Stat(*tmpdir); err != nil || !st.IsDir() {
			return cli.Usagef("-tmpdir %s: not a directory", *tmpdir)
		}
	}
	if err := cli.CheckGlobs("include", include); err != nil {
		return err
	}
	if err := cli.CheckGlobs("exclude", exclude); err != nil {
		return err
	}
	stop, err := cli.Profile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	ix, err := index.OpenExisting(*db)
	if err != nil {
		return index.Explain(*db, err)
	}
	defer ix.Close()
	for _, w := range ix.Warnings() {
		fmt.Fprintf(stderr, "findsame: warning: %s\n", w)
	}

	start := time.Now()
	w := bufio.NewWriterSize(stdout, 256<<10)
	enc := plan.NewEncoder(w)
	var bar *cli.Progress
	if !*quiet {
		bar = cli.NewProgress(stderr)
	}
	opts := runs.Options{
		MinLen: int64(minLen), Include: include, Exclude: exclude,
		WholeFiles: *whole, Budget: int64(budget), TmpDir: *tmpdir, Live: !*recorded,
		Rewrite: !*noRewrite, SameOwner: *sameOwner, NoReadOnly: *noReadOnly,
		Full: *full,
		Warn: func(path string, err error) { bar.Printf(stderr, "findsame: %v\n", err) },
	}
	if bar != nil {
		opts.Progress = func(phase string, done, total int64, unit string) {
			bar.Update(cli.Meter{Phase: phase, Done: done, Total: total, Unit: unit})
		}
	}
	if !*noKeep {
		opts.Table = ix.Path() + "-sums"
	}
	emit := enc.Write
	rep := newReport()
	if *showReport {
		emit = rep.add
	}
	sum, err := runs.Find(ctx, ix, opts, emit)
	if *showReport && err == nil {
		err = rep.write(w)
	}
	bar.Clear()
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write plan: %w", ferr)
	}
	if err != nil {
		return index.Explain(*db, err)
	}
	if !*quiet {
		grouped := fmt.Sprintf("%d partition(s)", sum.Partitions)
		if sum.Regrouped >= 0 {
			grouped = fmt.Sprintf("%d partition(s), the sums of %d files changed or unsettled since the last run regrouped (%d more copied from a file in a snapshot's origin)", sum.Partitions, sum.Regrouped, sum.Cloned)
		}
		if sum.Temporary > 0 {
			grouped += fmt.Sprintf(", %s of temporary files at most", cli.Bytes(sum.Temporary))
		}
		freed := cli.Bytes(sum.Freed)
		if sum.Metadata > 0 {
			freed = fmt.Sprintf("%s (%s of data, less up to %s of btrfs metadata)", cli.Bytes(sum.Freed-sum.Metadata), cli.Bytes(sum.Freed), cli.Bytes(sum.Metadata))
		}
		var costly string
		if sum.Costly > 0 {
			costly = fmt.Sprintf(" (%d units left out that would cost btrfs's metadata more than they free)", sum.Costly)
			if sum.Costly == 1 {
				costly = " (1 unit left out that would cost btrfs's metadata more than it frees)"
			}
		}
		unmapped := ""
		if sum.Unmapped > 0 {
			unmapped = fmt.Sprintf(", %d not mapped again (as the last plan left them)", sum.Unmapped)
		}
		fmt.Fprintf(stderr, "findsame: %d lines, %d destinations, %s to deduplicate, %d extents to rewrite (%s to write), about %s to be freed%s; %d files (%d changed since hashed, %d already shared when hashed%s, %d immutable), %d blocks, %s in %s\n",
			sum.Lines, sum.Runs, cli.Bytes(sum.Bytes), sum.Rewrites, cli.Bytes(sum.Written), freed, costly, sum.Files, sum.Skipped, sum.Settled, unmapped, sum.Immutable, sum.Blocks, grouped,
			time.Since(start).Round(time.Millisecond))
	}
	return nil
}
