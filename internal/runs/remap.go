package runs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/walk"
)

// ErrChanged marks a file whose identity is no longer the one hashed.
var ErrChanged = errors.New("changed since it was hashed (run hashfile again)")

// remap replaces the recorded extents of every involved file with its
// extents as they are now. Deduplication changes a file's extents
// but not its identity, so the index cannot know what applysame has shared
// since; mapping again (FIEMAP: no data is read) is what keeps a re-run
// from planning it again. Files changed or gone since they were hashed are
// marked stale and reported (o.Warn). It returns how many were. It also
// marks the files with the immutable attribute. Of the files untouched
// marks (nil for none), those whose recorded extents can be trusted (see
// trusted) keep them and are not opened: it returns how many too.
func remap(files []file, involved, untouched []bool, o *Options) (stale, kept int) {
	warn := o.Warn
	work := make(chan int)
	var mu sync.Mutex // guards warn, stale, gone and o.Progress
	// The files gone since they were hashed, by volume: a tree removed, a
	// snapshot deleted (snapper's cleanup, say) are told once each.
	gone := make(map[*volume]map[int]error)
	var todo []int32
	for i, ok := range involved {
		switch {
		case !ok:
		case untouched != nil && untouched[i] && trusted(files[i].extents):
			kept++
		default:
			todo = append(todo, int32(i))
		}
	}
	total, done := int64(len(todo)), int64(0)
	var wg sync.WaitGroup
	for range max(2, runtime.NumCPU()) {
		wg.Go(func() {
			for i := range work {
				f := &files[i]
				ext, fixed, err := mapNow(f)
				if err != nil {
					f.stale, f.extents = true, nil
					mu.Lock()
					stale++
					if errors.Is(err, fs.ErrNotExist) {
						if gone[f.vol] == nil {
							gone[f.vol] = make(map[int]error)
						}
						gone[f.vol][i] = err
					} else if warn != nil {
						warn(f.path, err)
					}
					mu.Unlock()
					continue
				}
				f.extents, f.immutable = ext, fixed
				mu.Lock()
				if done++; done%256 == 0 {
					o.progress("mapping files", done, total, "files")
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range todo {
		work <- int(i)
	}
	close(work)
	wg.Wait()
	if warn != nil {
		for _, g := range goneFiles(files, gone) {
			warn(g.path, g.err)
		}
	}
	o.progress("mapping files", total, total, "files")
	return stale, kept
}

// warning is what o.Warn is called with.
type warning struct {
	path string
	err  error
}

// goneFiles says what remap found gone (gone: the files by volume, with
// the error opening each), a warning for each volume, in order of path:
// for one file, the error opening it; for more, how many, the directory
// they share and the first of them. Where another filesystem than theirs
// holds that directory, or the nearest one above it that is there, their
// filesystem is not mounted (tonight): hashfile keeps them, and running it
// again would not help, so the warning says so.
func goneFiles(files []file, gone map[*volume]map[int]error) []warning {
	var out []warning
	for vol, errs := range gone {
		first := -1
		for i := range errs {
			if first < 0 || i < first { // files are in order of path
				first = i
			}
		}
		path := files[first].path
		dir := filepath.Dir(path)
		for i := range errs {
			for !walk.Under(files[i].path, dir) {
				dir = filepath.Dir(dir)
			}
		}
		if !holdsFS(dir, vol.FS) {
			out = append(out, warning{dir, fmt.Errorf("%d files under %s left out: their filesystem (%s) is not mounted there; the index keeps them until it is (hashfile -new-fs prunes them)", len(errs), dir, vol.FS)})
			continue
		}
		if len(errs) == 1 {
			out = append(out, warning{path, errs[first]})
			continue
		}
		out = append(out, warning{dir, fmt.Errorf("%d files under %s gone since they were hashed (the first: %s): left out; run hashfile again", len(errs), dir, path)})
	}
	slices.SortFunc(out, func(a, b warning) int { return strings.Compare(a.path, b.path) })
	return out
}

// refusedImmutable reports (o.Warn) and counts the immutable files left
// out as destinations (file.refused).
func refusedImmutable(files []file, o *Options) int {
	n := 0
	for i := range files {
		if f := &files[i]; f.refused {
			n++
			if o.Warn != nil {
				o.Warn(f.path, fmt.Errorf("%s: immutable (chattr +i): nothing is deduplicated into it", f.path))
			}
		}
	}
	return n
}

// trusted reports whether the recorded extents ext of a file untouched
// since the last run (see finder.untouched) are as FIEMAP would show them
// now, in every way the plan depends on. They must be extent items that
// hashfile keeps current (see kept): on btrfs, a file's items change
// with whatever moves its data, and hashfile records them again. But the
// items do not say whether another file shares an extent, which FIEMAP
// told when the file was hashed (FlagShared), and another reference can
// appear since without the items changing: a snapshot (outside the files
// in scope too), a reflinked copy. So every extent stored on its own must
// be recorded shared already: a flag that is no longer true costs a look
// at the extent's references (see estimate), where a missing one would
// have the plan count space as freed that a reference keeps. (Flags go
// stale that way when a snapshot is deleted, which would keep rewrites
// from being planned: finder.untouched then trusts no file of its
// filesystem.)
func trusted(ext []fiemap.Extent) bool {
	if !kept(ext) {
		return false
	}
	for _, e := range ext {
		if e.Flags&fiemap.FlagDataInline != 0 || (e.DiskStart == 0 && e.Physical == 0) {
			continue
		}
		if e.Flags&fiemap.FlagShared == 0 {
			return false
		}
	}
	return true
}

// markOwnLeaves marks the involved files whose tree leaves no snapshot
// shares (file.ownLeaves), from their recorded extents, before remap
// replaces them: extent items that hashfile keeps current, each written
// after the last snapshot of the file's subvolume was taken. A leaf holds
// an item only from the transaction that wrote it on, and a leaf written
// after a subvolume's last snapshot is the subvolume's alone, changed in
// place of being copied (the kernel's btrfs_block_can_be_shared). So
// sharing into a file written since the last snapshot -- a day's new
// files and copies in a live subvolume snapshotted every night -- costs
// no metadata.
func markOwnLeaves(files []file, involved []bool) {
	for i, ok := range involved {
		f := &files[i]
		if !ok || !f.vol.btrfs || !f.vol.snapshotted || !kept(f.extents) {
			continue
		}
		own := true
		for _, e := range f.extents {
			if e.Flags&fiemap.FlagDataInline != 0 || uint64(e.Gen) <= f.vol.lastSnapshot {
				own = false
				break
			}
		}
		f.ownLeaves = own
	}
}

// mapNow returns f's extents and whether it has the immutable attribute,
// if f is still the file that was hashed.
func mapNow(f *file) ([]fiemap.Extent, bool, error) {
	h, err := dedupe.Open(f.path, f.identity())
	switch {
	case errors.Is(err, dedupe.ErrStale), errors.Is(err, dedupe.ErrNotRegular):
		return nil, false, fmt.Errorf("%s: %w", f.path, ErrChanged)
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w", f.path, err)
	}
	defer h.Close()
	immutable := fsys.Immutable(h)
	ext, err := fiemap.Map(h)
	if errors.Is(err, fiemap.ErrUnsupported) {
		return f.extents, immutable, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", f.path, err)
	}
	return ext, immutable, nil
}

// extentRefs returns a function listing the references to a btrfs disk
// extent (fiemap.ExtentRefs), found through file fi, or false when they
// cannot be known: the tree search is not allowed, no file of fi's
// filesystem could be opened as hashed, or the extent has more references
// than one call holds. The references are the filesystem's, whichever
// file asks: the first file of each filesystem that opens as hashed is
// kept open and asked through (opening a file an extent took most of the
// time the estimate of a snapshot host's night took, its paths being
// looked up afresh in each snapshot). What it learnt of an extent is
// kept. done closes the files kept open.
func extentRefs(files []file) (refs func(fi int, disk int64) ([]fiemap.Ref, bool), done func()) {
	type answer struct {
		refs []fiemap.Ref
		ok   bool
	}
	type extent struct {
		fs   string
		disk int64
	}
	known := make(map[extent]answer)
	open := make(map[string]*os.File) // by filesystem
	denied := false
	refs = func(fi int, disk int64) ([]fiemap.Ref, bool) {
		f := &files[fi]
		k := extent{f.vol.FS, disk}
		if a, ok := known[k]; ok {
			return a.refs, a.ok
		}
		if denied {
			return nil, false
		}
		h := open[f.vol.FS]
		if h == nil {
			var err error
			if h, err = dedupe.Open(f.path, f.identity()); err != nil {
				return nil, false // the next file of the filesystem may open
			}
			open[f.vol.FS] = h
		}
		rs, complete, err := fiemap.ExtentRefs(h, disk)
		if errors.Is(err, fiemap.ErrNoTreeSearch) {
			denied = true
		}
		known[k] = answer{rs, err == nil && complete}
		return rs, err == nil && complete
	}
	done = func() {
		for _, h := range open {
			h.Close()
		}
	}
	return refs, done
}

// markReadOnly marks the files in read-only btrfs subvolumes, and with
// keepSource keeps them as sources, looking at one file of each volume
// that can still be opened as hashed. It also marks the volumes whose
// tree leaves a snapshot shares (volume.snapshotted): those that are
// snapshots, and those another volume of the files is a snapshot of,
// with what copying one of their leaves costs (volume.leaf: a node, as
// many times as the metadata profile stores it; metadataLeaf if that
// cannot be known).
func markReadOnly(files []file, keepSource bool) {
	ro := make(map[fsys.Volume]bool)
	leaf := make(map[string]int64) // by filesystem
	type ids struct {
		vol          *volume
		uuid, origin [16]byte
	}
	var seen []ids
	for i := range files {
		f := &files[i]
		if !f.vol.btrfs {
			continue
		}
		known, ok := ro[f.vol.Volume]
		if !ok {
			h, err := dedupe.Open(f.path, f.identity())
			if err != nil {
				continue // the next file of the volume tells
			}
			if _, ok := leaf[f.vol.FS]; !ok {
				leaf[f.vol.FS] = metadataLeaf
				if m, err := fsys.MetadataOf(h); err == nil {
					leaf[f.vol.FS] = m.NodeSize * int64(m.Copies)
				}
			}
			f.vol.leaf = leaf[f.vol.FS]
			f.vol.lastSnapshot = ^uint64(0) // not known: every leaf may be shared
			if n, err := fiemap.LastSnapshot(h, f.vol.Subvol); err == nil {
				f.vol.lastSnapshot = n
			}
			// One BTRFS_IOC_GET_SUBVOL_INFO says both: read-only, and
			// what it is a snapshot of (fsys.ReadOnly asks it again).
			if sn, err := fsys.SnapshotOf(h); err == nil {
				known = sn.ReadOnly
				seen = append(seen, ids{f.vol, sn.UUID, sn.Origin})
			} else {
				f.vol.snapshotted = true // cannot tell: as if
			}
			h.Close()
			ro[f.vol.Volume] = known
		}
		f.readonly = known
		f.keepSource = known && keepSource
	}
	origins := make(map[string]bool)
	for _, v := range seen {
		if v.origin != ([16]byte{}) {
			v.vol.snapshotted = true
			origins[v.vol.FS+string(v.origin[:])] = true
		}
	}
	for _, v := range seen {
		if origins[v.vol.FS+string(v.uuid[:])] {
			v.vol.snapshotted = true
		}
	}
}

// holdsFS tells whether dir, or where it is gone the nearest directory
// above it, is on the filesystem named id (fsys.Volume's FS), or whether
// that cannot be told. It opens directories only (O_DIRECTORY: a FIFO
// put in the way is not waited on), without following a symbolic link.
func holdsFS(dir, id string) bool {
	for {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err == nil {
			d := os.NewFile(uintptr(fd), dir)
			at, err := fsys.StatFS(d)
			d.Close()
			return err != nil || at.ID == id
		}
		if err != unix.ENOENT {
			return true
		}
		up := filepath.Dir(dir)
		if up == dir {
			return true
		}
		dir = up
	}
}
