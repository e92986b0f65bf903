// Package scan brings the index up to date with a set of roots: the work
// of hashfile.
//
// # Data flow
//
// One walker lists regular files in name order and decides, from the
// identity the index already holds for each inode, which need reading.
// Files are known by their volume (filesystem UUID and btrfs subvolume,
// which survive remounts; see fsys.Volume) and inode. A file is unchanged
// when its (volume, inode, size, mtime) match the index
// and either its ctime matches or it is met under a new path (a rename or a
// new hard link updates ctime but not the data); an unchanged file is not
// opened. Workers read and hash the rest in parallel and take their
// extents; one writer commits results to the index in batched
// transactions. When the walk of every root has completed, inodes under the
// roots that were not met are pruned; an interrupted or killed run prunes
// nothing, and the next run completes it.
//
// A file whose size, mtime or ctime change while it is read is not
// recorded: it is reported and counted as failed, and read again next run.
// So is a path that no longer leads to the inode the walk listed, through
// directories that are not symlinks: readers open files by path, looked
// up with no symlink followed, and read only that inode.
//
// # What is stored is read once
//
// On btrfs, where the tree search is allowed (root), a file all of whose
// extents were hashed before -- in another file, a snapshot, a reflinked
// copy, recorded or earlier in the same run -- takes its sums from them
// and is not read (see reuser). A btrfs subvolume unchanged since its
// last complete walk (its generation the same) is not walked at all (see
// subvols). A missing root, or one found on another volume than at the
// last run, stops the run before anything is pruned.
package scan
