package runs

import (
	"fmt"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
)

// canDedupe returns a function that says whether a file's filesystem can
// deduplicate, so that files on those that cannot are never planned: by
// the type the index records, and with live, for XFS, by its reflink
// feature, asked through the first file of it that is still the one
// hashed. It warns once per filesystem it leaves out, naming where it is
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
		if ok && live && v.Magic == fstype.XFS {
			h, err := dedupe.Open(f.Path, f.Identity)
			if err != nil {
				return true // stale or gone: remap leaves it out; the next file tells
			}
			_, ok = fstype.CanDedupe(h)
			h.Close()
		}
		known[f.Vol] = ok
		if !ok && !warned[f.Vol.FS] && warn != nil {
			warned[f.Vol.FS] = true
			mnt := f.Path
			var st unix.Stat_t
			if live && unix.Lstat(f.Path, &st) == nil {
				mnt = fstype.MountPoint(uint64(st.Dev), f.Path)
			}
			warn(mnt, fmt.Errorf("%w: skipped", &fstype.Error{Type: fstype.Name(v.Magic), Mount: mnt}))
		}
		return ok
	}
}
