//go:build !linux

package fiemap

import "os"

// Extents is not available on this platform.
func Extents(f *os.File) ([]Extent, error) { return nil, ErrUnsupported }

// DiskExtents is not available on this platform.
func DiskExtents(f *os.File) ([]Extent, error) { return nil, ErrNoTreeSearch }
