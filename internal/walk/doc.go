// Package walk lists the regular files under a set of roots without ever
// opening anything else.
//
// # Data model
//
// An Entry is a path with the Identity lstat gave it: device, inode, size,
// mtime and ctime in nanoseconds. Directories are read in name order, so a
// walk of an unchanged tree meets the same paths in the same order.
// Symbolic links are never followed, and device nodes, FIFOs and sockets
// are counted as skipped without being opened. Empty files are skipped too:
// they hold nothing to share.
package walk
