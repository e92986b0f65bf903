// Package walk lists the regular files under a set of roots without ever
// opening anything else.
//
// # Data model
//
// An Entry is a path with the fsys.Stat lstat gave it: device, inode,
// size, mtime and ctime in nanoseconds, and owner. Files are met in the byte order of their
// paths (each directory's entries in name order, a subdirectory sorting as
// its name and a slash), so a walk of an unchanged tree meets the same
// paths in the same order, the order of an index of paths. Where the
// caller grants it (Options.Listed), the files of a directory and of
// those below it on its device come as listed instead, with only the
// device and the inode number the directory gives, without lstat: on a
// tree whose changes the caller knows otherwise, lstat of every file is
// most of a walk.
// Symbolic links are never followed: a root is looked up with none in any
// component, each directory below is opened relative to the descriptor of
// the one holding it (O_NOFOLLOW) and must be the directory listed there,
// and entries are stat'ed relative to their directory's descriptor, so a
// directory swapped for a symlink while the walk runs is an error for
// that entry, never a way out of the root. Device nodes, FIFOs and sockets
// are counted as skipped without being opened.
//
// Directories are opened with O_NOATIME where the caller may (their owner,
// or root): a walk leaves no trace in the tree. Updating every directory's
// access time each night would write metadata all over the filesystem,
// and on btrfs make every tree leaf holding a directory look changed to
// the searches that find what changed since a walk.
//
// # Filesystems not listed
//
// A pseudo filesystem (proc, sysfs, ...) holds no file data, and reading
// its files can take for ever or act; with Options.DedupeOnly, a
// filesystem that cannot deduplicate (ext4, tmpfs, NFS, FUSE, XFS without
// reflink, ...) holds nothing a plan could use. The walk lists nothing of
// either, told apart by their types, and names each once (Options.Unwalked).
// Where such a filesystem was mounted before the walk began
// (Options.Mounts, from /proc/self/mountinfo), its mount point is left
// out unlooked at: the lstat of a hard NFS mount whose server is down, or
// of a FUSE mount whose server does not answer, never returns. Where it
// was mounted since, the walk lstats its mount point without asking the
// server (statx's AT_STATX_DONT_SYNC), sees the root of a mount it did
// not know of (STATX_ATTR_MOUNT_ROOT), reads /proc/self/mountinfo again,
// and leaves it out unopened (see leaveNewMounts). In such a
// filesystem the walk still goes to the mount points below of those it
// lists, and only there. The caller's own files (Options.Own: the index
// and the files beside it) are left out by their directory's identity and
// their names.
//
// # Descriptors
//
// The walk holds a descriptor for each directory level being walked that
// has subdirectories, and at most maxListings more for the directories
// read ahead, each closed once it is listed. Paths of PATH_MAX bytes or
// more are reported (ENAMETOOLONG), not entered, which bounds the depth. Empty files are skipped too:
// they hold nothing to share.
//
// # Large directories
//
// A directory of more than bigDir entries (131,072) is not held in
// memory: its entries are sorted in runs in a nameless temporary file
// (Options.TempDir) and merged as the walk goes, a chunk at a time, in
// the order the walk would have met them otherwise. Its entries are
// lstat'ed as they are walked, not as it is listed, and one whose type
// changed in between (a directory there now that was a file) is reported
// replaced.
package walk
