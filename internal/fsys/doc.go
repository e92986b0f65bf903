// Package fsys tells what the tools need to know of the filesystem a file
// lives on: which filesystem and subvolume it is, by names that survive a
// remount; its type and block size; its free space; how to commit it; and
// whether a file has the NOCOW attribute.
//
// # Identity
//
// st_dev does not name a filesystem for good: a btrfs subvolume gets an
// anonymous device number when it is first reached after mounting, and a
// loop-mounted image gets whichever loop device is free. A Volume names a
// filesystem by its UUID (BTRFS_IOC_FS_INFO on btrfs, FS_IOC_GETFSUUID
// elsewhere, statfs's f_fsid where neither answers) and, on btrfs, the
// subvolume by its tree id (BTRFS_IOC_INO_LOOKUP, which needs no
// privilege for this question). A file is then known for good by its
// Volume and inode number.
//
// # Stat
//
// Stat is what lstat or fstat says of a file that the tools compare to
// decide whether it changed: one type and one way of reading times
// (FromStat: nanoseconds since the epoch), used by the walk, the index and
// the checks before a dedupe alike.
//
// An Identity is a file as it was when hashed: its Volume (or, where no
// volume is known, its st_dev), inode, size, mtime and, in the index,
// ctime. The index records one per file, every range of a plan carries
// one, and Identity.Check is the one comparison of a file's Stat with it
// (volume or device, inode, size, mtime), made before any dedupe. A
// FileID is the part of an Identity that names the file for good.
package fsys
