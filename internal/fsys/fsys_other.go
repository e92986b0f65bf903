//go:build !linux

package fsys

import "os"

// Describe returns ErrUnsupported.
func Describe(f *os.File) (Info, error) { return Info{}, ErrUnsupported }

// StatFS returns ErrUnsupported.
func StatFS(f *os.File) (FS, error) { return FS{}, ErrUnsupported }

// SyncFS returns ErrUnsupported.
func SyncFS(f *os.File) error { return ErrUnsupported }

// NoCOW reports false.
func NoCOW(f *os.File) bool { return false }

// Immutable reports false.
func Immutable(f *os.File) bool { return false }

// SubvolGen returns ErrUnsupported.
func SubvolGen(f *os.File) (id, gen uint64, err error) { return 0, 0, ErrUnsupported }

// SnapshotOf returns ErrUnsupported.
func SnapshotOf(f *os.File) (Snapshot, error) { return Snapshot{}, ErrUnsupported }

// MetadataOf returns ErrUnsupported.
func MetadataOf(f *os.File) (Metadata, error) { return Metadata{}, ErrUnsupported }

// HasSubvols reports true: it cannot tell.
func HasSubvols(f *os.File) bool { return true }

// MountPoints returns ErrUnsupported: a caller cannot tell what is
// mounted where.
func MountPoints() ([]string, error) { return nil, ErrUnsupported }

// ReadOnly reports false.
func ReadOnly(f *os.File) bool { return false }

// WillNeed does nothing.
func WillNeed(fd int, off, n int64) {}

// Cached returns false: it cannot tell.
func Cached(fd int, off, n int64) (int64, bool) { return 0, false }

// DontNeed does nothing.
func DontNeed(fd int, off, n int64) {}

// InoPath returns ErrUnsupported.
func InoPath(f *os.File, ino uint64) (string, bool, error) { return "", false, ErrUnsupported }
