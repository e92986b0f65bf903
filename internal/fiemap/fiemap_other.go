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

// ExtentsIn returns ErrUnsupported.
func ExtentsIn(f *os.File, off, n int64) ([]Extent, error) { return nil, ErrUnsupported }

// ChangedFiles returns ErrNoTreeSearch.
func ChangedFiles(f *os.File, minTransID uint64) (map[uint64]bool, error) {
	return nil, ErrNoTreeSearch
}

// SubvolByUUID returns ErrNoTreeSearch.
func SubvolByUUID(f *os.File, uuid [16]byte) (uint64, bool, error) { return 0, false, ErrNoTreeSearch }
