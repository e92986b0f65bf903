package fsys

import (
	"fmt"
	"strconv"
)

// Identity is a file as it was when hashed: what names it for good and
// what tells whether it is still the same. The index records it, a plan
// carries it, and the tools check a file against it (Check) before they
// deduplicate or map it.
type Identity struct {
	// Vol names the file's filesystem and subvolume. When Vol.FS is
	// empty the file is named by Dev, its st_dev, instead (plans of
	// version 1, and fdupes groups' files that are not regular); Dev is 0
	// otherwise.
	Vol   Volume
	Dev   uint64
	Ino   uint64
	Size  int64
	Mtime int64 // nanoseconds since the epoch
	// Ctime (nanoseconds since the epoch) is known where the index
	// records it, and 0 elsewhere: plans do not carry it, and Check does
	// not compare it.
	Ctime int64
}

// Identity returns the identity of the file that s describes, on volume
// vol; named by its st_dev when vol names no filesystem.
func (s Stat) Identity(vol Volume) Identity {
	id := Identity{Vol: vol, Ino: s.Ino, Size: s.Size, Mtime: s.Mtime, Ctime: s.Ctime}
	if vol.FS == "" {
		id.Dev = s.Dev
	}
	return id
}

// FileID names a file for good: its Identity without what changes with
// its content.
type FileID struct {
	Vol      Volume
	Dev, Ino uint64
}

// File returns the FileID of the file id names.
func (id Identity) File() FileID { return FileID{id.Vol, id.Dev, id.Ino} }

// Mismatch is a field in which a file differs from the Identity recorded
// for it, with both values as plans write them.
type Mismatch struct {
	Field     string // "fs", "subvol", "dev", "ino", "size" or "mtime"
	Got, Want string // mtime: date and nanoseconds
}

// Check compares the file that st describes with id: its volume, or its
// st_dev when id names no volume; then inode, size and mtime. It returns
// the first field that differs, or nil when none does. vol, which gives
// the file's volume, is asked only when id names one, and its error is
// returned.
func (id Identity) Check(st Stat, vol func() (Volume, error)) (*Mismatch, error) {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	if id.Vol.FS == "" {
		if st.Dev != id.Dev {
			return &Mismatch{"dev", u(st.Dev), u(id.Dev)}, nil
		}
	} else {
		v, err := vol()
		if err != nil {
			return nil, err
		}
		switch {
		case v.FS != id.Vol.FS:
			return &Mismatch{"fs", v.FS, id.Vol.FS}, nil
		case v.Subvol != id.Vol.Subvol:
			return &Mismatch{"subvol", u(v.Subvol), u(id.Vol.Subvol)}, nil
		}
	}
	switch {
	case st.Ino != id.Ino:
		return &Mismatch{"ino", u(st.Ino), u(id.Ino)}, nil
	case st.Size != id.Size:
		return &Mismatch{"size", strconv.FormatInt(st.Size, 10), strconv.FormatInt(id.Size, 10)}, nil
	case st.Mtime != id.Mtime:
		return &Mismatch{"mtime", mtime(st.Mtime), mtime(id.Mtime)}, nil
	}
	return nil, nil
}

// mtime shows a time both ways: as a date, and in the nanoseconds a plan
// of version 1 carries.
func mtime(ns int64) string { return fmt.Sprintf("%s (%d ns)", Time(ns), ns) }
