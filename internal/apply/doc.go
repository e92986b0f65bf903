// Package apply carries out a dedupe plan: it is applysame without its
// flags.
//
// # Lines
//
// Run reads the plan a line at a time and applies up to Options.Jobs lines
// at once, each in a goroutine, reading the next line when one is done, so
// it can follow findsame through a pipe; results are written in plan
// order. Rewrite lines that come before dedupe lines are all done before
// the first of those starts (and the other way round). For each line
// it opens the source and every destination with dedupe.Open, which checks
// the identity the plan recorded; checks that offsets are multiples of the
// filesystem block size and that a length that is not ends at EOF on both
// sides; asks the kernel to share the ranges with dedupe.Range; and
// writes one result record (plan.Result) for the line as soon as the lines
// before it have theirs. Counting, the rewrite limit and writing results
// happen in Run's goroutine alone; the lines in flight share only the
// filesystems' first measurements, under a mutex.
//
// A line fails only in part: a stale or unusable source fails the line
// (every destination skipped), a failed destination fails itself. Every
// item not done is reported through Options.Report and counted in Stats;
// the run goes on unless Options.StopOnError is set.
//
// # fdupes groups
//
// With Options.FromFdupes the input is what fdupes and jdupes print: paths
// one per line, groups separated by blank lines. Each group is a line whose
// first path is the source and whose other paths are whole-file
// destinations, with the identities lstat gives when the group is read. A
// destination of another size differs without an ioctl; a hard link to the
// source or to an earlier destination is skipped. The result's line is the
// line of the group's first path.
//
// # Space freed
//
// The first time the run opens a file on a filesystem, before any dedupe
// there, it records the free space statfs reports. At the end it syncs each
// of those filesystems (syncfs, after BTRFS_IOC_SYNC on btrfs) and measures
// again: Stats.FS holds what the filesystems say was freed, never a sum of
// requested lengths. On btrfs an extent is freed only when no reference to
// it remains, so deduping part of an extent frees nothing.
//
// # Interrupts
//
// When the context is cancelled the ioctls in progress finish, the lines
// they belong to get their results (destinations not reached are skipped),
// no further line is read and Run returns ErrInterrupted.
package apply
