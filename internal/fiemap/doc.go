// Package fiemap reads a file's extent map with the FS_IOC_FIEMAP ioctl.
//
// # Data model
//
// An Extent maps Length bytes at file offset Logical to disk offset
// Physical. Two files whose extents have the same Physical offset share
// storage; the kernel also sets FlagShared on an extent any other file or
// snapshot references. Holes have no extent. Inline extents (FlagDataInline)
// live in metadata and cannot be shared.
//
// # Disk extents
//
// On btrfs a file range refers to a piece of a disk extent, and the disk
// extent is freed only when no range of any file refers to any part of it.
// FIEMAP hides this: it merges ranges that are contiguous on disk, and two
// pieces of one disk extent look like unrelated extents. DiskExtents (Linux,
// btrfs, CAP_SYS_ADMIN) reads the file extent items themselves with
// BTRFS_IOC_TREE_SEARCH_V2 and returns one Extent per item, with DiskStart
// and DiskLen naming its disk extent: ranges with equal DiskStart keep the
// same disk extent alive. It takes FlagShared from FIEMAP, which it also
// calls first so that delayed allocations are written back and their items
// exist. Elsewhere, or without the capability, it returns an error wrapping
// ErrNoTreeSearch, and callers fall back to Extents, whose DiskStart and
// DiskLen are 0 (unknown).
//
// # Keys and references
//
// DiskExtents also gives each item the generation that wrote its disk
// extent and its offset in the extent's data (Extent.Gen, Extent.Offset):
// outside NOCOW files a disk extent's bytes never change while it exists,
// and (DiskStart, DiskLen, Gen) names it for good, so sums computed once
// for a piece of it serve every file that refers to the same piece.
// ExtentRefs lists every file (subvolume and inode) that refers to a disk
// extent, with BTRFS_IOC_LOGICAL_INO_V2 (root; as last committed):
// an extent is freed only when all of them let go. ExtentsIn maps one
// range of a file without flushing it first, for a quick look.
package fiemap
