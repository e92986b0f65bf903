package runs

import (
	"fmt"
	"strconv"

	"same/internal/dedupe"
	"same/internal/fstype"
	"same/internal/index"
	"same/internal/plan"
)

// canDedupe returns a function that says whether a file's filesystem can
// deduplicate, so that files on those that cannot are never planned: by
// the type the index records, and with live, for XFS, by its reflink
// feature, asked through the first file of it that is still the one
// hashed. It warns once per filesystem it leaves out, naming where it is
// mounted.
func canDedupe(devs map[uint64]index.Device, live bool, warn func(string, error)) func(f index.File) bool {
	known := make(map[uint64]bool)
	warned := make(map[string]bool)
	return func(f index.File) bool {
		if ok, seen := known[f.Dev]; seen {
			return ok
		}
		d := devs[f.Dev]
		ok := fstype.ByType(d.FSType)
		if ok && live && d.FSType == fstype.XFS {
			h, err := dedupe.Open(f.Path, plan.Range{Path: f.Path, Dev: f.Dev, Ino: f.Ino, Size: f.Size, Mtime: f.Mtime})
			if err != nil {
				return true // stale or gone: remap leaves it out; the next file tells
			}
			_, ok = fstype.CanDedupe(h)
			h.Close()
		}
		known[f.Dev] = ok
		fs := d.FSID
		if fs == "" {
			fs = "st_dev " + strconv.FormatUint(f.Dev, 10)
		}
		if !ok && !warned[fs] && warn != nil {
			warned[fs] = true
			mnt := f.Path
			if live {
				mnt = fstype.MountPoint(f.Dev, f.Path)
			}
			warn(mnt, fmt.Errorf("%w: skipped", &fstype.Error{Type: fstype.Name(d.FSType), Mount: mnt}))
		}
		return ok
	}
}
