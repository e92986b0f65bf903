package apply

import (
	"same/internal/dedupe"
	"same/internal/fsys"
	"same/internal/plan"
)

// identity is what dedupe.Open checks the file of r against.
func identity(r plan.Range) dedupe.Identity {
	return dedupe.Identity{
		Vol: fsys.Volume{FS: r.FS, Subvol: r.Subvol}, Dev: r.Dev,
		Ino: r.Ino, Size: r.Size, Mtime: r.Mtime,
	}
}

// rangeNow returns path's identity as it is now (dedupe.IdentityOf), as a
// plan range at offset 0.
func rangeNow(path string) (plan.Range, error) {
	id, err := dedupe.IdentityOf(path)
	if err != nil {
		return plan.Range{}, err
	}
	return plan.Range{
		Path: path, FS: id.Vol.FS, Subvol: id.Vol.Subvol, Dev: id.Dev,
		Ino: id.Ino, Size: id.Size, Mtime: id.Mtime,
	}, nil
}

// dstStatus is the plan status of a destination's dedupe outcome.
func dstStatus(s dedupe.Status) plan.Status {
	switch s {
	case dedupe.Deduped:
		return plan.DstDeduped
	case dedupe.Differs:
		return plan.DstDiffers
	case dedupe.Skipped:
		return plan.DstSkipped
	}
	return plan.DstError
}
