package runs

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
)

// canDedupe returns a function that says whether a file's filesystem can
// deduplicate, so that files on those that cannot are never planned: by
// the type the index records, and with live, through the first file of
// each volume that is still the one hashed, by whether it is mounted
// read-only (a backup disk, or a btrfs that an error made read-only:
// every line into it would fail with EROFS) and, for XFS, by its reflink
// feature. It warns once per filesystem it leaves out, naming where it is
// mounted.
func canDedupe(vols map[fsys.Volume]fsys.Info, live bool, warn func(string, error)) func(f index.File) bool {
	known := make(map[fsys.Volume]bool)
	warned := make(map[string]bool)
	return func(f index.File) bool {
		if ok, seen := known[f.Vol]; seen {
			return ok
		}
		v := vols[f.Vol]
		ok := fstype.ByType(v.Magic)
		readOnly := false
		if ok && live {
			h, err := dedupe.Open(f.Path, f.Identity)
			if err != nil {
				return true // stale or gone: remap leaves it out; the next file tells
			}
			if v.Magic == fstype.XFS {
				_, ok = fstype.CanDedupe(int(h.Fd()))
			}
			if ok && fstype.ReadOnly(h) {
				ok, readOnly = false, true
			}
			h.Close()
		}
		known[f.Vol] = ok
		if !ok && !warned[f.Vol.FS] && warn != nil {
			warned[f.Vol.FS] = true
			mnt := f.Path
			var st unix.Stat_t
			switch {
			case readOnly:
				mnt = mountOf(f.Path) // the mount, not the subvolume
			case live && unix.Lstat(f.Path, &st) == nil:
				mnt = fstype.MountPoint(uint64(st.Dev), f.Path)
			}
			warn(mnt, fmt.Errorf("%w: skipped", &fstype.Error{Type: fstype.Name(v.Magic), Mount: mnt, ReadOnly: readOnly}))
		}
		return ok
	}
}

// mountOf returns the mount point that holds path (absolute): the
// longest of /proc/self/mountinfo's at or above it; path itself where
// they cannot be read.
func mountOf(path string) string {
	mps, err := fsys.MountPoints()
	if err != nil {
		return path
	}
	best := path
	n := -1
	for _, mp := range mps {
		if len(mp) > n && (mp == "/" || path == mp || strings.HasPrefix(path, mp+"/")) {
			best, n = mp, len(mp)
		}
	}
	return best
}
