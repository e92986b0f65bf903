package fiemap

import (
	"errors"
	"os"
	"slices"
)

// Extent flags, from linux/fiemap.h.
const (
	FlagLast          = 0x0001
	FlagUnknown       = 0x0002
	FlagDelalloc      = 0x0004
	FlagEncoded       = 0x0008
	FlagDataEncrypted = 0x0080
	FlagNotAligned    = 0x0100
	FlagDataInline    = 0x0200
	FlagDataTail      = 0x0400
	FlagUnwritten     = 0x0800
	FlagMerged        = 0x1000
	FlagShared        = 0x2000
)

// Extent is one mapped range of a file, in bytes.
//
// DiskStart and DiskLen are set only by DiskExtents: they name the btrfs disk
// extent (its disk_bytenr and disk_num_bytes) that the range is a piece of.
// btrfs frees a disk extent only when no range of any file refers to any
// part of it. Extents leaves them 0, which means unknown.
//
// Gen and Offset are set only by DiskExtents too: the generation of the
// file extent item (the transaction that wrote the disk extent; a clone,
// a snapshot or a dedupe keeps it) and the offset of the range in the
// disk extent's (uncompressed) data. Outside NOCOW files, a disk extent's
// data never changes while it exists, and no two disk extents that exist
// at different times have the same (DiskStart, DiskLen, Gen): space freed
// in a transaction is reused only by a later one. So equal keys prove
// equal bytes at equal Offsets.
type Extent struct {
	Logical   int64
	Physical  int64
	Length    int64
	Flags     uint32
	DiskStart int64 // btrfs: disk_bytenr of the disk extent (0: unknown)
	DiskLen   int64 // btrfs: disk_num_bytes of that disk extent
	Gen       int64 // btrfs: generation of the file extent item
	Offset    int64 // btrfs: offset of the range in the disk extent's data
}

// End is the file offset just past the extent.
func (e Extent) End() int64 { return e.Logical + e.Length }

// At returns the extent of ext (in file order, not overlapping) that holds
// file offset off, if any.
func At(ext []Extent, off int64) (Extent, bool) {
	i, found := slices.BinarySearchFunc(ext, off, func(e Extent, off int64) int {
		switch {
		case e.End() <= off:
			return -1
		case e.Logical > off:
			return 1
		}
		return 0
	})
	if !found {
		return Extent{}, false
	}
	return ext[i], true
}

// ErrUnsupported is returned where the filesystem has no FIEMAP.
var ErrUnsupported = errors.New("fiemap: not supported")

// ErrNoTreeSearch is wrapped by DiskExtents where it cannot read btrfs's
// file extent items: the file is not on btrfs, the caller lacks
// CAP_SYS_ADMIN, or the kernel refuses the tree search ioctl. Callers fall
// back to Extents.
var ErrNoTreeSearch = errors.New("fiemap: btrfs tree search not available")

// Map returns f's extents as exactly as the platform tells them: the disk
// extents on btrfs where the tree search is allowed (DiskExtents), else
// FIEMAP's (Extents).
func Map(f *os.File) ([]Extent, error) {
	ext, err := DiskExtents(f)
	if errors.Is(err, ErrNoTreeSearch) {
		return Extents(f)
	}
	return ext, err
}
