// Package safeopen reaches files by path without following any symlink
// and opens nothing but what its caller has checked: the tools run as root
// over trees that other users can change while they run.
//
// # Looking up
//
// Lookup resolves a path to an O_PATH descriptor (a Handle) with openat2
// and RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS: a symlink in any
// directory of the path fails the lookup with a *SymlinkError that names
// it, and a symlink at the end is returned as itself, for the caller to
// refuse. Where the kernel has no openat2 (ENOSYS, also what container
// seccomp filters answer), the path is walked one component at a time with
// openat(O_PATH|O_NOFOLLOW), each directory checked with fstat before the
// next step. An O_PATH descriptor opens nothing: no driver's open runs, no
// FIFO blocks, and the Handle's Stat says what is there.
//
// # Opening
//
// Handle.Open opens the file of the handle, after checking that it is a
// regular file or a directory, by reopening the descriptor through
// /proc/self/fd, so that the file opened is the inode that was checked,
// whatever happens to its name meanwhile (Reopen, which the walk's
// directories are opened with too). Where /proc is not mounted it opens a
// directory as "." from the descriptor, and a file by its path again in
// the same way, non-blocking, checking that the device and inode are the
// same.
//
// A path is absolute or relative to the working directory; ".." is
// resolved as the kernel does (it is not a symlink).
package safeopen
