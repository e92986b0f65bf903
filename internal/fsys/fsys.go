package fsys

import (
	"fmt"
	"time"
)

// Stat is a file's identity and state as stat(2) reports it: the device
// (valid only while the filesystem stays mounted), inode, size, times in
// nanoseconds since the epoch, and owner.
type Stat struct {
	Dev   uint64
	Ino   uint64
	Size  int64
	Mtime int64
	Ctime int64
	UID   uint32
}

// Volume names a filesystem, and on btrfs a subvolume of it, by names that
// survive remounts and reboots.
type Volume struct {
	// FS is the filesystem's UUID in hex (32 digits), or statfs's f_fsid
	// (16 digits) where the filesystem reports no UUID.
	FS string
	// Subvol is the btrfs subvolume's tree id (5 for the top level), 0
	// elsewhere.
	Subvol uint64
}

func (v Volume) String() string {
	if v.Subvol == 0 {
		return v.FS
	}
	return fmt.Sprintf("%s subvolume %d", v.FS, v.Subvol)
}

// Info is a Volume with what statfs says of its filesystem.
type Info struct {
	Volume
	// Magic is statfs's f_type.
	Magic int64
	// BlockSize (f_bsize) is the unit dedupe offsets must be multiples of.
	BlockSize int64
}

// FS is what statfs(2) reports about a filesystem now.
type FS struct {
	// ID names the filesystem, as Volume.FS: the same for every btrfs
	// subvolume (which statfs's f_fsid is not).
	ID string
	// Type names the filesystem (see fstype.Name).
	Type string
	// BlockSize (f_bsize) is the unit dedupe offsets must be multiples of.
	BlockSize int64
	// Free is f_bfree in bytes: free blocks including those reserved for
	// root.
	Free int64
}

// Time formats nanoseconds since the epoch as an RFC 3339 date in UTC with
// as many fractional digits as needed: exact, and readable.
func Time(ns int64) string {
	return string(AppendTime(nil, ns))
}

// AppendTime appends Time(ns) to b.
func AppendTime(b []byte, ns int64) []byte {
	return time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
}

// ParseTime is the inverse of Time.
func ParseTime(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	ns := t.UnixNano()
	if time.Unix(0, ns).UTC() != t.UTC() {
		return 0, fmt.Errorf("%s is out of range", s)
	}
	return ns, nil
}

// Metadata is how a btrfs stores its metadata (see MetadataOf).
type Metadata struct {
	NodeSize int64 // bytes in a tree node, a leaf among them
	Copies   int   // bytes written for each byte of a node, at most
}

// Snapshot is where a btrfs subvolume came from (see SnapshotOf).
type Snapshot struct {
	// UUID is the subvolume's own; Origin is the UUID of the subvolume
	// it is a snapshot of (its parent_uuid), all zero when it is not a
	// snapshot.
	UUID, Origin [16]byte
	// Made is the transaction that made it (otransid); Changed, the
	// last that changed anything in it by a file operation (ctransid:
	// written, deduplicated into), which is older than Made in a
	// snapshot unchanged since it was made.
	Made, Changed uint64
	ReadOnly      bool
}
