//go:build !linux

package fiemap

import "os"

// Extents is not available on this platform.
func Extents(f *os.File) ([]Extent, error) { return nil, ErrUnsupported }
