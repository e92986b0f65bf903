//go:build !linux

package fiemap

import "os"

// Extents is not available on this platform.
func Extents(f *os.File) ([]Extent, error) { return nil, ErrUnsupported }

// DiskExtents is not available on this platform.
func DiskExtents(f *os.File) ([]Extent, error) { return nil, ErrNoTreeSearch }

// Ref is one reference to a btrfs disk extent.
type Ref struct {
	Root, Ino uint64
}

// ExtentRefs returns ErrNoTreeSearch.
func ExtentRefs(f *os.File, disk int64) ([]Ref, bool, error) { return nil, false, ErrNoTreeSearch }

// First returns ErrUnsupported.
func First(f *os.File) (Extent, bool, error) { return Extent{}, false, ErrUnsupported }

// ExtentsIn returns ErrUnsupported.
func ExtentsIn(f *os.File, off, n int64) ([]Extent, error) { return nil, ErrUnsupported }

// Changes is what changed in a btrfs subvolume (see the Linux version).
type Changes struct {
	Extents map[uint64]bool
	Items   map[uint64][]Extent
	Files   map[uint64]bool
	Others  bool
	Dirs    map[uint64]int64
}

// Changed returns ErrNoTreeSearch.
func Changed(f *os.File, minTransID uint64) (Changes, error) { return Changes{}, ErrNoTreeSearch }

// SubvolByUUID returns ErrNoTreeSearch.
func SubvolByUUID(f *os.File, uuid [16]byte) (uint64, bool, error) { return 0, false, ErrNoTreeSearch }

// ItemsOf returns ErrNoTreeSearch.
func ItemsOf(f *os.File, ino uint64) ([]Extent, error) { return nil, ErrNoTreeSearch }

// LastSnapshot returns ErrNoTreeSearch.
func LastSnapshot(f *os.File, id uint64) (uint64, error) { return 0, ErrNoTreeSearch }
