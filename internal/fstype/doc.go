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
// EOPNOTSUPP (or EINVAL) for every destination. Nor can overlayfs (a
// container's merged view): it shares only between files copied up
// already, which lie in its upper directory on the filesystem below,
// where they are deduplicated, and answers EPERM for the others. Pseudo
// filesystems (proc, sysfs and the like, see Pseudo) hold no file data at
// all. Other types are given the benefit of the doubt: the kernel says,
// per destination, when it cannot.
package fstype
