// Package fstype tells filesystem types apart by their statfs magic, names
// them, and says which can share storage between files with
// FIDEDUPERANGE.
//
// # Which filesystems can deduplicate
//
// btrfs can; XFS can when it was made with reflink (mkfs.xfs -m reflink=1,
// the default since xfsprogs 5.1), which XFS_IOC_FSGEOMETRY reports without
// touching any file. ext2/3/4, tmpfs, ramfs, FAT, exFAT, NTFS, ISO 9660,
// squashfs, NFS and FUSE filesystems cannot: the kernel answers
// EOPNOTSUPP (or EINVAL) for every destination. Other types are given the
// benefit of the doubt: the kernel says, per destination, when it cannot.
package fstype
