// Package fiemap reads a file's extent map with the FS_IOC_FIEMAP ioctl.
//
// # Data model
//
// An Extent maps Length bytes at file offset Logical to disk offset
// Physical. Two files whose extents have the same Physical offset share
// storage; the kernel also sets FlagShared on an extent any other file or
// snapshot references. Holes have no extent. Inline extents (FlagDataInline)
// live in metadata and cannot be shared.
package fiemap
