// Package dedupe asks the kernel to share identical ranges between files
// with the FIDEDUPERANGE ioctl, after checking that the files are still the
// ones a plan was made for.
//
// # Opening
//
// Open looks a plan path up with no symlink followed in any component
// (package safeopen) to an O_PATH descriptor, which opens nothing; refuses
// anything but a regular file without opening it; compares the file's
// identity (volume or device, inode, size, modification time in
// nanoseconds) with the fsys.Identity the caller recorded, a plan's for
// applysame (fsys.Identity.Check); and only then opens that inode
// read-only.
// A difference is a *StaleError (errors.Is(err, ErrStale)) that names the
// field. Rewrite makes its unnamed copy in the file's directory reached
// the same way. Files are never opened for writing: the kernel accepts
// read-only destinations from root, from the owner and from anyone who
// could open them for writing, and O_RDWR would fail on running
// executables (ETXTBSY) and on read-only btrfs snapshots (EROFS).
//
// # Deduplicating
//
// Range shares a source range with any number of destination ranges. It
// splits the work into calls of at most MaxDests destinations and one chunk
// of bytes (DefaultChunk), so that writers, which the kernel holds off while
// it compares, are not stalled for long. Each destination gets an Outcome:
// Deduped, Differs (the kernel found different bytes), Failed (with the
// errno and a readable message), or Skipped (the context was cancelled
// before its turn), with the bytes deduped so far. The package knows
// nothing of plans: a plan range carries its fsys.Identity, and package
// apply maps outcomes to result statuses.
//
// # Filesystems
//
// StatFS reports what statfs(2) says about the filesystem holding a file:
// its id, type, block size and free bytes. SyncFS commits it, so that space
// freed by deduplication shows in the free bytes.
package dedupe
