//go:build !linux

package fstype

import "os"

// CanDedupe reports whether the filesystem holding f can deduplicate; here
// it cannot tell, and says yes.
func CanDedupe(f *os.File) (magic int64, ok bool) { return 0, true }

// ReadOnly reports false: mounts are not looked at here.
func ReadOnly(f *os.File) bool { return false }

// MountPoint returns path: mount points are not looked up here.
func MountPoint(dev uint64, path string) string { return path }
