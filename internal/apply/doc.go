// Package apply carries out a dedupe plan: it is applysame without its
// flags.
//
// # Lines and units of work
//
// Run reads the plan a unit of work at a time (plan.Unit: the records
// with one unit number, next to each other; a record without one is a
// unit of its own) and applies up to Options.Jobs dedupe lines at once,
// each in a goroutine, so it can follow findsame through a pipe; results
// are written in plan order, except those of units that waited.
// For each line it opens the source and every destination with
// dedupe.Open, which checks the identity the plan recorded; checks that
// offsets are multiples of the filesystem block size and that a length
// that is not ends at EOF on both sides; looks, for destinations that
// looks.want picks, whether the range shares its source's storage already
// (a plan applied again: nothing to read); asks the kernel to share the
// other ranges with dedupe.Range; and writes one result record
// (plan.Result).
// Destinations that get EAGAIN (btrfs send) are tried again after each of
// busyBackoff, then reported busy. Counting and writing results happen in
// Run's goroutine alone, and so do rewrites; the lines in flight share
// only the filesystems' first measurements and the extents of rewrites not
// done, under a mutex.
//
// A unit with rewrites runs once every line before it is done: its
// rewrites one after the other, then its lines. Once begun it is finished,
// interrupt or not, so that no copy is left without the extent it frees.
// Before it writes, a rewrite checks with statfs that the filesystem keeps
// Options.Reserve available (committing it once first, for space that
// dedupe freed shows only then); a unit without that room waits, its lines
// with it, and so does a later unit with a line whose source lies in a
// waiting rewrite's extent (it would share that extent, and the rewrite
// would free nothing); the waiting units are tried again once the plan is
// read, each once those it waits for are done, while one of them frees
// room for others. After ENOSPC nothing more is
// written. A rewrite copies only the ranges still in its extent, so a plan
// applied before is done. The destinations of a line that lie in the
// extent of a rewrite not done are skipped: sharing part of an extent
// frees nothing. Those of a line whose source lies in such an extent are
// each looked at first, whatever the looks of the run found (see looks):
// the line shares the extent back into the files that refer to it (a
// snapshot's copy of the file rewritten), which hold it already.
//
// A line fails only in part: a stale or unusable source fails the line
// (every destination skipped), a failed destination fails itself. Every
// item not done is reported through Options.Report and counted in Stats;
// the run goes on unless Options.StopOnError is set.
// A destination or a rewrite's copy that finds the quota of its btrfs
// subvolume full (EDQUOT), or its filesystem mounted read-only (EROFS),
// marks the volume so: the units after it that would share or copy into
// it are not started, nor the lines not started of a unit in progress
// (see noteBlocked).
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
// # Interrupts and the time limit
//
// When the context is cancelled, a unit with rewrites in progress is
// finished; otherwise the ioctls in progress finish and the destinations
// not reached are skipped. The unit read but not started is reported
// skipped ("interrupted"), no further line is read and Run returns
// ErrInterrupted. Past Options.Deadline no unit starts: the rest of the
// plan is read and reported skipped.
package apply
