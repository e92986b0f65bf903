package walk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/safeopen"
)

// Entry is a regular, non-empty file found by the walk, with what lstat
// said of it; or, where Listed, a regular file as its directory lists it
// (see Options.Listed): Stat holds only the device of the directory and
// the inode number the listing gives, and the file may be empty.
type Entry struct {
	Path string
	fsys.Stat
	Nlink  uint64 // its names when stat'ed: more than one, a hard link
	Listed bool
}

// Options shape a walk.
type Options struct {
	// Exclude holds glob patterns (path.Match syntax); a file or directory
	// whose base name or full path matches one is left out, with all below it.
	Exclude []string
	// OneFS keeps the walk on the filesystem of each root.
	OneFS bool
	// Enter, if set, is asked before the walk goes into a directory below
	// a root: false leaves the directory out, with all below it, and
	// reports nothing. It may be asked twice of a directory, and must give
	// the same answer.
	Enter func(path string, st *unix.Stat_t) bool
	// Listed, if set, is asked of each directory the walk lists (a root
	// included) unless the directory holding it was granted it on the
	// same device: true hands over the regular files in it, and in the
	// directories below it on that device, as listed (Entry.Listed),
	// without lstat. The caller then looks at them itself where it
	// needs more than their name and inode number.
	Listed func(path string, st *unix.Stat_t) bool
	// Files, if set, is asked of each directory the walk enters (a root
	// included): false leaves out what it holds but its subdirectories,
	// reporting nothing of it; the walk still goes into those that Enter
	// grants.
	Files func(path string, st *unix.Stat_t) bool
	// Dir, if set, is called for each directory entered, and Skipped for each
	// entry that is not a regular file (or is empty); both may be nil.
	Dir     func(path string, st *unix.Stat_t)
	Skipped func(path string, why string)
	// Error is called for each path that cannot be read; the walk goes on.
	Error func(path string, err error)
	// Own, if set, names files the walk leaves out, saying nothing: the
	// tool's own (its index and the files beside it).
	Own *Own
	// DedupeOnly has the walk list nothing of a filesystem that cannot
	// deduplicate either (see walker.unwalked); pseudo filesystems it
	// never lists.
	DedupeOnly bool
	// Mounts, if set, are the filesystems mounted when the walk began
	// (see NewMounts): one that the walk would not list (see
	// walker.unwalked) is left out where the walk meets its mount point,
	// unlooked at, and told to Unwalked; so is a root at or below such a
	// mount point. Not even lstat'ed: that of a hard NFS mount whose
	// server is down, or of a FUSE mount whose server does not answer,
	// waits for ever. Filesystems mounted since are found as the walk
	// meets them. In a filesystem it does not list, the walk still goes
	// to the mount points below of those it does list (a btrfs mounted
	// on a directory of an ext4 root), and only there.
	Mounts *Mounts
	// Unwalked, if set, is told of each filesystem (st_dev dev) the walk
	// met and did not list, once a Walk, from any of its goroutines: the
	// path of the first directory of it met (or the root, which goes to
	// Skipped too where it is a file on it, or on one of Mounts), its
	// type's name, and whether it is a pseudo filesystem (see
	// walker.unwalked).
	Unwalked func(path, fsType string, dev uint64, pseudo bool)
	// TempDir is where the listing of a directory of many entries is
	// sorted (see bigDir), in a file that has no name there; "" for
	// os.TempDir(). Where no file can be made there, the listing is held
	// in memory.
	TempDir string
}

// Mounts holds the mounts a walk may meet: those seen from this
// process's root and not hidden by a later mount.
type Mounts struct {
	at      map[string]Mount // by mount point
	parents map[string]bool  // the directories that hold mount points
	listed  []string         // the mount points of those not skipped, sorted
}

// Mount is a filesystem mounted at a path the walk may meet.
type Mount struct {
	Type string // as mount(8) names it: ext4, nfs4, fuse.sshfs...
	Dev  uint64
	// Skip says the walk lists nothing of it, by its type's name (see
	// fstype.ByName), and Pseudo why.
	Skip, Pseudo bool
}

// NewMounts returns the mounts of ms (in /proc/self/mountinfo's order)
// that no later one hides, at or above its mount point; with dedupeOnly,
// those of types that cannot deduplicate are skipped, as pseudo ones
// always are (see Options.DedupeOnly).
func NewMounts(ms []fsys.Mount, dedupeOnly bool) *Mounts {
	out := &Mounts{at: make(map[string]Mount, len(ms)), parents: make(map[string]bool, len(ms))}
	later := make(map[string]bool, len(ms))
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		hidden := false
		for p := m.Point; ; p = filepath.Dir(p) {
			if later[p] {
				hidden = true
				break
			}
			if p == "/" || p == "." {
				break
			}
		}
		later[m.Point] = true
		if hidden {
			continue
		}
		pseudo, cannot := fstype.ByName(m.Type)
		skip := pseudo || cannot && dedupeOnly
		out.at[m.Point] = Mount{Type: m.Type, Dev: m.Dev, Skip: skip, Pseudo: pseudo}
		out.parents[filepath.Dir(m.Point)] = true
		if !skip {
			out.listed = append(out.listed, m.Point)
		}
	}
	slices.Sort(out.listed)
	return out
}

// Nearest returns the mount nearest at or above path (absolute), and
// false if none is known.
func (ms *Mounts) Nearest(path string) (Mount, bool) {
	if ms == nil {
		return Mount{}, false
	}
	for p := path; ; p = filepath.Dir(p) {
		if m, ok := ms.at[p]; ok {
			return m, true
		}
		if p == "/" || p == "." {
			return Mount{}, false
		}
	}
}

// Listed returns where to find the filesystems that a walk of root
// lists, as the mounts say: root itself, unless the mount nearest at or
// above it is one the walk leaves out, and the mount points below root of
// those it lists. A filesystem may be found at several of them; none of
// those the walk leaves out is among them, to be looked at.
func (ms *Mounts) Listed(root string) []string {
	if ms == nil {
		return []string{root}
	}
	var out []string
	if m, ok := ms.Nearest(root); !ok || !m.Skip {
		out = append(out, root)
	}
	prefix := childPrefix(root)
	i, _ := slices.BinarySearch(ms.listed, prefix)
	for ; i < len(ms.listed) && strings.HasPrefix(ms.listed[i], prefix); i++ {
		out = append(out, ms.listed[i])
	}
	return out
}

// skipped reports whether path is the mount point of a mount the walk
// leaves out, with none that it lists below.
func (ms *Mounts) skipped(path string) (Mount, bool) {
	if ms == nil {
		return Mount{}, false
	}
	m, ok := ms.at[path]
	return m, ok && m.Skip && len(ms.toward(path)) == 0
}

// toward returns the names in directory path (absolute) that lead to the
// mount points of mounts the walk lists, below path: what the walk goes
// to in a filesystem it does not list.
func (ms *Mounts) toward(path string) []string {
	if ms == nil {
		return nil
	}
	prefix := childPrefix(path)
	var out []string
	i, _ := slices.BinarySearch(ms.listed, prefix)
	for ; i < len(ms.listed) && strings.HasPrefix(ms.listed[i], prefix); i++ {
		name, _, _ := strings.Cut(ms.listed[i][len(prefix):], "/")
		if name != "" && (len(out) == 0 || out[len(out)-1] != name) {
			out = append(out, name)
		}
	}
	return out
}

// Own names files of one directory, by its device and inode (however a
// path leads to it), that a walk leaves out.
type Own struct {
	Dev, Ino uint64
	Names    func(name string) bool
}

// holds reports whether o names name in the directory of st_dev dev,
// inode ino.
func (o *Own) holds(dev, ino uint64, name string) bool {
	return o != nil && o.Dev == dev && o.Ino == ino && o.Names(name)
}

// OwnFile reports whether o names the file at path (absolute): its
// directory's identity and its name.
func OwnFile(o *Own, path string) bool {
	if o == nil {
		return false
	}
	var st unix.Stat_t
	if unix.Stat(filepath.Dir(path), &st) != nil {
		return false
	}
	return o.holds(uint64(st.Dev), st.Ino, filepath.Base(path))
}

// CheckPatterns reports the first malformed exclude pattern.
func CheckPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("bad exclude pattern %q: %w", p, err)
		}
	}
	return nil
}

func (o *Options) excluded(path string) bool { return matchOne(o.Exclude, path) }

// matchOne reports whether path or its base name matches one of patterns.
func matchOne(patterns []string, path string) bool {
	base := filepath.Base(path)
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}

// Matches reports whether path, or a directory above it, matches one of
// patterns by full path or base name: what the walk would have excluded.
func Matches(patterns []string, path string) bool {
	if len(patterns) == 0 {
		return false
	}
	for p := path; ; p = filepath.Dir(p) {
		if matchOne(patterns, p) {
			return true
		}
		if p == "/" || p == "." {
			return false
		}
	}
}

// Walk calls fn for every regular non-empty file at or below root, which
// must be an absolute, clean path. It returns the first error fn returns,
// or ctx's error; errors reading the tree go to o.Error.
//
// No symlink is followed: root is looked up with none in any of its
// components, and below it each directory is opened relative to the
// descriptor of the one holding it, with O_NOFOLLOW, and must be the
// directory that was listed there (device and inode); entries are
// stat'ed relative to their directory's descriptor. A directory swapped
// for a symlink or another directory while the walk runs is reported as
// an error for that entry, never followed.
func Walk(ctx context.Context, root string, o Options, fn func(Entry) error) error {
	w := walker{ctx: ctx, o: &o, fn: fn, listings: make(chan struct{}, maxListings)}
	if m, ok := o.Mounts.Nearest(root); ok && m.Skip && len(o.Mounts.toward(root)) == 0 {
		w.skipMount(root, m)
		if o.Skipped != nil {
			o.Skipped(root, "on a filesystem that the walk does not list")
		}
		return nil
	}
	h, err := safeopen.Lookup(root)
	if err != nil {
		op := "lstat"
		if errors.Is(err, unix.ELOOP) {
			op = "open"
		}
		o.fail(root, &os.PathError{Op: op, Path: root, Err: err})
		return nil
	}
	defer h.Close()
	st := h.Stat
	w.rootDev = uint64(st.Dev)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if OwnFile(o.Own, root) {
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && w.unwalked(h.Fd(), root, uint64(st.Dev)) {
			if o.Skipped != nil {
				o.Skipped(root, "on a filesystem that cannot deduplicate")
			}
			return nil
		}
		return w.visit(-1, "", root, &lstatResult{st: st}, nil)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.Dir != nil {
		o.Dir(root, &st)
	}
	d, err := h.Open(unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOATIME)
	if err != nil {
		o.fail(root, &os.PathError{Op: "open", Path: root, Err: err})
		return nil
	}
	defer d.Close()
	fd := int(d.Fd())
	ls := w.list(fd, root, w.listed(root, &st, false, 0), o.Files != nil && !o.Files(root, &st), uint64(st.Dev), st.Ino)
	return w.children(root, ls, func() (int, error) { return fd, nil }, false)
}

type walker struct {
	ctx     context.Context
	o       *Options
	fn      func(Entry) error
	rootDev uint64
	// unwalkable caches, by device, the verdict of unwalked.
	mu         sync.Mutex
	unwalkable map[uint64]unwalkable
	// listings holds a token for each directory being read ahead, so
	// that the read-ahead holds at most maxListings descriptors.
	listings chan struct{}
	// since holds the mounts as mountinfo said when the walk last met a
	// mount point it did not know of (see mountedSince), by mount point.
	since map[string]Mount
}

func (o *Options) fail(path string, err error) {
	if o.Error != nil {
		o.Error(path, err)
	}
}

func (o *Options) skip(path, why string) {
	if o.Skipped != nil {
		o.Skipped(path, why)
	}
}

// visit handles the entry name of the directory open at parent, listed
// with r; next is its listing read ahead if it is a directory to enter.
func (w *walker) visit(parent int, name, path string, r *lstatResult, next *pending) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	st := &r.st
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if r.listed {
			return w.fn(Entry{Path: path, Stat: fsys.Stat{Dev: uint64(st.Dev), Ino: st.Ino}, Listed: true})
		}
		if st.Size == 0 {
			w.o.skip(path, "empty")
			return nil
		}
		return w.fn(Entry{Path: path, Stat: fsys.FromStat(st), Nlink: uint64(st.Nlink)})
	case unix.S_IFDIR:
		if !w.enters(st) {
			w.o.skip(path, "on another filesystem")
			return nil
		}
		if !w.asked(path, st) {
			return nil
		}
		return w.dir(parent, name, path, st, next)
	case unix.S_IFLNK:
		w.o.skip(path, "symlink")
	case unix.S_IFCHR, unix.S_IFBLK:
		w.o.skip(path, "device")
	case unix.S_IFIFO:
		w.o.skip(path, "FIFO")
	case unix.S_IFSOCK:
		w.o.skip(path, "socket")
	default:
		w.o.skip(path, "not a regular file")
	}
	return nil
}

// enters reports whether the walk goes into the directory st.
func (w *walker) enters(st *unix.Stat_t) bool {
	return !w.o.OneFS || uint64(st.Dev) == w.rootDev
}

// listed reports whether the files in the directory at path, st, go as
// listed (see Options.Listed): as the directory holding it, on dev, if
// that one's did (parent) and it is on the same device; else as the
// caller says.
func (w *walker) listed(path string, st *unix.Stat_t, parent bool, dev uint64) bool {
	if parent && uint64(st.Dev) == dev {
		return true
	}
	return w.o.Listed != nil && w.o.Listed(path, st)
}

// asked reports whether Options.Enter lets the walk into the directory at
// path.
func (w *walker) asked(path string, st *unix.Stat_t) bool {
	return w.o.Enter == nil || w.o.Enter(path, st)
}

// listing is what the walk reads of a directory: its names, sorted and
// filtered, and the lstat of each (or, where listed, of its
// subdirectories and of entries of unknown type: the others as listed).
type listing struct {
	names    []string
	stats    []lstatResult
	listed   bool   // its files go as listed
	dirsOnly bool   // only its subdirectories go (see Options.Files)
	dev      uint64 // the directory's device
	openErr  error  // the directory could not be opened
	readErr  error  // reading it stopped early; names holds what was read
	// unwalked says a filesystem the walk does not list was mounted on
	// the directory since its parent was listed: it is left out.
	unwalked bool
	// big holds, in place of names and stats, the entries of a directory
	// of more than bigDir, spilled to a temporary file (see bigDir).
	big *spilled
}

// pending is a listing being read ahead.
type pending struct {
	done chan struct{}
	l    listing
}

// readAhead is how many directories after the one being walked are read
// in the background, among those of one directory. On a tree whose
// metadata is not cached, each listing and lstat waits for the disk, and
// reading several at once overlaps the waits; the walk still meets
// entries in order.
const readAhead = 8

// maxListings bounds the directories read ahead at once, over all levels
// of the tree: each holds a descriptor while it is read.
const maxListings = 2 * readAhead

// ErrReplaced is the error for a directory that is not the one listed
// under its name when the walk opens it.
var ErrReplaced = errors.New("replaced since it was listed")

// openDir opens the directory name of the directory open at parent, with
// no symlink followed, and checks that it is st.
func openDir(parent int, name string, st *unix.Stat_t) (int, error) {
	// Looked up unopened (O_PATH) and checked to be the directory listed
	// before it is opened: a filesystem mounted on it since (a FUSE one
	// whose server does not answer) is refused unopened, its attributes
	// taken from the kernel (see fsys.Lstat).
	p, err := unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		p, err = unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(p)
	var got unix.Stat_t
	mountRoot, _, err := fsys.Lstat(p, "", &got)
	if err != nil {
		return -1, err
	}
	if got.Dev != st.Dev || got.Ino != st.Ino {
		if mountRoot && got.Dev != st.Dev {
			return -1, &mountedSinceError{dev: uint64(got.Dev)}
		}
		return -1, ErrReplaced
	}
	// Reopened from the descriptor, it is the directory checked,
	// whatever is mounted on its name now, and opening it asks only for
	// read permission on it, as opening it by name did (a directory that
	// may be listed but not searched is listed).
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOCTTY | unix.O_CLOEXEC | unix.O_NOATIME
	fd, err := safeopen.Reopen(p, flags)
	if err == unix.EPERM { // O_NOATIME needs ownership or CAP_FOWNER
		fd, err = safeopen.Reopen(p, flags&^unix.O_NOATIME)
	}
	return fd, err
}

// mountedSinceError is openDir's error for a directory on which a
// filesystem was mounted since it was listed (device dev).
type mountedSinceError struct{ dev uint64 }

func (e *mountedSinceError) Error() string { return "a filesystem mounted on it since it was listed" }

// listAhead reads the directory name of the directory open at parent, st
// in its listing, in the background. parent must stay open until done.
func (w *walker) listAhead(parent int, name, path string, st *unix.Stat_t, listed bool) *pending {
	dirsOnly := w.o.Files != nil && !w.o.Files(path, st)
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		w.listings <- struct{}{}
		defer func() { <-w.listings }()
		if Fault != nil {
			Fault(path)
		}
		fd, err := openDir(parent, name, st)
		if ms, ok := errors.AsType[*mountedSinceError](err); ok {
			// Left out, as one mounted before it was listed: with OneFS,
			// as any other filesystem.
			if w.o.OneFS {
				w.o.skip(path, "on another filesystem")
				p.l.unwalked = true
				return
			}
			if m, ok := w.mountedSince(path, ms.dev); ok && m.Skip {
				w.skipMount(path, m)
				p.l.unwalked = true
				return
			}
		}
		if err != nil {
			p.l.openErr = &os.PathError{Op: "open", Path: path, Err: err}
			return
		}
		p.l = w.list(fd, path, listed, dirsOnly, uint64(st.Dev), st.Ino)
		unix.Close(fd)
	}()
	return p
}

// skipMount tells Options.Unwalked of m, mounted at or above path, which
// the walk does not go into, once a walk.
func (w *walker) skipMount(path string, m Mount) {
	w.mu.Lock()
	_, told := w.unwalkable[m.Dev]
	if w.unwalkable == nil {
		w.unwalkable = make(map[uint64]unwalkable)
	}
	w.unwalkable[m.Dev] = unwalkable{name: m.Type, pseudo: m.Pseudo}
	w.mu.Unlock()
	if !told && w.o.Unwalked != nil {
		w.o.Unwalked(path, m.Type, m.Dev, m.Pseudo)
	}
}

// unwalkable is what unwalked found of a device: the name of the type of
// a filesystem not to be listed, or "".
type unwalkable struct {
	name   string
	pseudo bool
}

// unwalked reports whether the directory open at fd, at path, on device
// dev, is on a filesystem the walk lists nothing of, and tells
// Options.Unwalked once: a pseudo filesystem (proc, sysfs, debugfs...:
// see fstype.Pseudo), which holds no file data, and whose files can take
// for ever to read (/proc/kcore) or act when read; or, with
// Options.DedupeOnly, one that cannot deduplicate (ext4, tmpfs, NFS, FUSE,
// XFS without reflink...: see fstype.CanDedupe), whose data no plan could
// use, and whose reading can cost hours (a network share, a cloud bucket
// mounted through FUSE). It looks once per device.
func (w *walker) unwalked(fd int, path string, dev uint64) bool {
	w.mu.Lock()
	u, ok := w.unwalkable[dev]
	if !ok {
		magic, can := fstype.CanDedupe(fd)
		if pseudo := fstype.Pseudo(magic); pseudo || !can && w.o.DedupeOnly {
			u = unwalkable{name: fstype.Name(magic), pseudo: pseudo}
		}
		if w.unwalkable == nil {
			w.unwalkable = make(map[uint64]unwalkable)
		}
		w.unwalkable[dev] = u
	}
	w.mu.Unlock()
	if !ok && u.name != "" && w.o.Unwalked != nil {
		w.o.Unwalked(path, u.name, dev, u.pseudo)
	}
	return u.name != ""
}

// list reads the directory open at fd, whose path is path, on device
// dev, inode ino, leaving out what Options.Exclude and Options.Own name;
// where listed, its files go as listed; where dirsOnly, only its
// subdirectories go, and nothing else is stat'ed.
func (w *walker) list(fd int, path string, listed, dirsOnly bool, dev, ino uint64) listing {
	l := listing{listed: listed, dirsOnly: dirsOnly, dev: dev}
	if w.unwalked(fd, path, dev) {
		// Nothing to deduplicate there, and reading can hang; but the
		// way to the mount points below of filesystems that can.
		l.names = slices.DeleteFunc(w.o.Mounts.toward(path), func(name string) bool { return w.o.excluded(childPrefix(path) + name) })
		l.stats = make([]lstatResult, len(l.names))
		lstatAll(fd, childPrefix(path), l.names, l.stats)
		pathOrder(&l)
		return l
	}
	// The mount points left out that were told of: a spill that fails
	// partway leaves the directory to be read again, and each is told
	// (and with -x counted) once.
	var told map[string]bool
	if w.o.Mounts != nil && w.o.Mounts.parents[path] {
		told = make(map[string]bool)
	}
	ents, more, err := readDirentsUpTo(fd, nil, bigDir)
	if more && err == nil {
		s, readErr, spillErr := spill(fd, w.o.TempDir, ents, w.keeper(fd, path, dirsOnly, dev, ino, true, told))
		if spillErr == nil {
			l.big = s
			if readErr != nil {
				l.readErr = &os.PathError{Op: "readdirent", Path: path, Err: readErr}
			}
			return l
		}
		// No room for the runs (a full disk): the directory is read
		// whole, as a smaller one is.
		if _, err = unix.Seek(fd, 0, io.SeekStart); err == nil {
			ents, err = readDirents(fd)
		}
	}
	if err != nil {
		l.readErr = &os.PathError{Op: "readdirent", Path: path, Err: err}
	}
	// By name first, so that the mount points left out are told in order.
	slices.SortFunc(ents, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	keep := w.keeper(fd, path, dirsOnly, dev, ino, false, told)
	ents = slices.DeleteFunc(ents, func(e dirent) bool { return !keep(&e) })
	l.fill(ents)
	lstatAll(fd, childPrefix(path), l.names, l.stats)
	pathOrder(&l)
	return l
}

// fill sets the names of l to those of ents, and their stats, where l's
// files go as listed, to the types and inode numbers the listing gives.
func (l *listing) fill(ents []dirent) {
	l.names = make([]string, len(ents))
	l.stats = make([]lstatResult, len(ents))
	for i, e := range ents {
		l.names[i] = e.name
		if mode, ok := listedModes[e.typ]; ok && l.listed {
			l.stats[i] = lstatResult{listed: true}
			l.stats[i].st.Mode, l.stats[i].st.Dev, l.stats[i].st.Ino = mode, l.dev, e.ino
		}
	}
}

// keeper returns what list leaves out of a directory's entries, one at a
// time: false for an entry to leave out, as Options.Exclude and
// Options.Own say, or as a mount point left out (told so), or with
// dirsOnly what is no directory. With resolve, for a large directory
// (see spill), it lstats an entry of unknown type, to place a directory
// in path order; a smaller directory's entries are lstat'ed anyway. A
// mount point left out is told of once: told holds those told already.
func (w *walker) keeper(fd int, path string, dirsOnly bool, dev, ino uint64, resolve bool, told map[string]bool) func(*dirent) bool {
	prefix := childPrefix(path)
	mounts := w.o.Mounts != nil && w.o.Mounts.parents[path]
	return func(e *dirent) bool {
		if dirsOnly && e.typ != unix.DT_DIR && e.typ != unix.DT_UNKNOWN {
			return false
		}
		if w.o.excluded(prefix+e.name) || w.o.Own.holds(dev, ino, e.name) {
			return false
		}
		if mounts {
			if m, ok := w.o.Mounts.skipped(prefix + e.name); ok {
				switch {
				case told[e.name]:
				case w.o.OneFS:
					w.o.skip(prefix+e.name, "on another filesystem") // not entered in any case
				default:
					w.skipMount(prefix+e.name, m)
				}
				told[e.name] = true
				return false
			}
		}
		if resolve && e.typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if _, _, err := fsys.Lstat(fd, e.name, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				e.typ = unix.DT_DIR
			} else if dirsOnly {
				return false
			}
		}
		return true
	}
}

// listedModes gives the file type of each directory entry type that a
// listed directory's entry is taken as (see Options.Listed): all but
// directories, which are entered, and unknown types, stat'ed.
var listedModes = map[uint8]uint32{
	unix.DT_REG: unix.S_IFREG, unix.DT_LNK: unix.S_IFLNK, unix.DT_CHR: unix.S_IFCHR,
	unix.DT_BLK: unix.S_IFBLK, unix.DT_FIFO: unix.S_IFIFO, unix.DT_SOCK: unix.S_IFSOCK,
}

// pathOrder puts the entries of l in the byte order of the paths below
// them: a directory's entries sort as its name and a slash, so that
// directory "b" comes after file "b.txt" ('.' sorts before '/'). A walk
// then meets files in the byte order of their paths, the order in which
// the index reads its rows, so that the two can be merged.
func pathOrder(l *listing) {
	key := func(i int) string {
		if l.stats[i].err == nil && l.stats[i].st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return l.names[i] + "/"
		}
		return l.names[i]
	}
	sorted := true
	for i := 1; i < len(l.names) && sorted; i++ {
		sorted = key(i-1) < key(i)
	}
	if sorted {
		return
	}
	idx := make([]int, len(l.names))
	keys := make([]string, len(l.names))
	for i := range idx {
		idx[i], keys[i] = i, key(i)
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	names := make([]string, len(idx))
	stats := make([]lstatResult, len(idx))
	for k, i := range idx {
		names[k], stats[k] = l.names[i], l.stats[i]
	}
	l.names, l.stats = names, stats
}

// Fault, when set (by tests, here and of callers), is called with the
// path of each directory below the root just before it is opened to be
// listed.
var Fault func(path string)

var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// dirent is an entry of a directory as getdents64 gives it.
type dirent struct {
	name string
	ino  uint64
	typ  uint8 // DT_*
}

// readDirents returns the entries of the directory open at fd, but "."
// and "..".
func readDirents(fd int) ([]dirent, error) {
	out, _, err := readDirentsUpTo(fd, nil, 0)
	return out, err
}

// readDirentsUpTo appends to out the next entries of the directory open
// at fd, but "." and "..", until it holds max or more (with max > 0) or
// the directory ends, and reports whether it stopped before the end.
func readDirentsUpTo(fd int, out []dirent, max int) ([]dirent, bool, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	for max <= 0 || len(out) < max {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return out, false, err
		}
		if n <= 0 {
			return out, false, nil
		}
		if out, err = parseDirents(buf[:n], out); err != nil {
			return out, false, err
		}
	}
	return out, true, nil
}

// parseDirents appends the entries of buf, records of struct
// linux_dirent64 (ino, off, reclen, type, then the name and a NUL), to
// out, but "." and "..".
func parseDirents(buf []byte, out []dirent) ([]dirent, error) {
	const nameAt = 19
	for len(buf) > 0 {
		if len(buf) < nameAt {
			return out, fmt.Errorf("short directory entry: %d bytes", len(buf))
		}
		reclen := int(binary.NativeEndian.Uint16(buf[16:]))
		if reclen < nameAt || reclen > len(buf) {
			return out, fmt.Errorf("directory entry of %d bytes in %d", reclen, len(buf))
		}
		name := buf[nameAt:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." {
			out = append(out, dirent{name: s, ino: binary.NativeEndian.Uint64(buf), typ: buf[18]})
		}
		buf = buf[reclen:]
	}
	return out, nil
}

func childPrefix(path string) string {
	if path == "/" {
		return "/"
	}
	return path + "/"
}

// dir walks the directory name of the directory open at parent, listed
// with st; l is its listing read ahead.
func (w *walker) dir(parent int, name, path string, st *unix.Stat_t, l *pending) error {
	<-l.done
	if l.l.unwalked {
		return nil // told to Unwalked (see listAhead)
	}
	if w.o.Dir != nil {
		w.o.Dir(path, st)
	}
	return w.children(path, l.l, func() (int, error) { return openDir(parent, name, st) }, true)
}

// children walks the entries of ls, the listing of the directory at path.
// open returns a descriptor of that directory, to read its subdirectories
// from; it is called only if there are some (or ls is spilled), and the
// descriptor is closed when they are done if owned.
func (w *walker) children(path string, ls listing, open func() (int, error), owned bool) error {
	defer ls.big.close()
	if ls.unwalked {
		return nil
	}
	if errors.Is(ls.openErr, unix.ENOENT) {
		// Gone since its parent was listed, as files are: a tree
		// removed, a snapshot deleted while the walk runs.
		return nil
	}
	if ls.openErr != nil {
		w.o.fail(path, ls.openErr)
		return nil
	}
	if ls.readErr != nil {
		w.o.fail(path, ls.readErr)
		// Go on with the names read so far.
	}
	if ls.big != nil {
		return w.bigChildren(path, ls, open, owned)
	}
	w.leaveNewMounts(path, &ls)
	subdirs := w.subdirs(path, &ls)
	fd := -1
	if len(subdirs) > 0 {
		var err error
		if fd, err = open(); err != nil {
			if !errors.Is(err, unix.ENOENT) { // gone since listed
				w.o.fail(path, &os.PathError{Op: "open", Path: path, Err: err})
			}
			return nil
		}
		if owned {
			defer unix.Close(fd)
		}
	}
	return w.entries(path, &ls, subdirs, fd)
}

// bigChildren walks the entries of ls, a spilled listing (see bigDir),
// chunk at a time.
func (w *walker) bigChildren(path string, ls listing, open func() (int, error), owned bool) error {
	fd, err := open()
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			w.o.fail(path, &os.PathError{Op: "open", Path: path, Err: err})
		}
		return nil
	}
	if owned {
		defer unix.Close(fd)
	}
	prefix := childPrefix(path)
	var ents []dirent
	for {
		if ents = ls.big.next(chunk, ents); len(ents) == 0 {
			break
		}
		c := listing{listed: ls.listed, dirsOnly: ls.dirsOnly, dev: ls.dev}
		c.fill(ents)
		lstatAll(fd, prefix, c.names, c.stats)
		for i, e := range ents {
			// Its place in the order is that of what was listed: a
			// directory there now that was not (or the other way round)
			// is taken as replaced, as a directory is that is not the
			// one listed when opened.
			if c.stats[i].err == nil && (c.stats[i].st.Mode&unix.S_IFMT == unix.S_IFDIR) != (e.typ == unix.DT_DIR) {
				c.stats[i].err = ErrReplaced
			}
		}
		w.leaveNewMounts(path, &c)
		if err := w.entries(path, &c, w.subdirs(path, &c), fd); err != nil {
			return err
		}
	}
	if ls.big.err != nil {
		w.o.fail(path, &os.PathError{Op: "readdirent", Path: path, Err: ls.big.err})
	}
	return nil
}

// subdirs returns the indexes in ls of the subdirectories to enter, in
// order.
func (w *walker) subdirs(path string, ls *listing) []int {
	var subdirs []int
	for i := range ls.names {
		if ls.stats[i].err == nil && !ls.stats[i].unwalked && ls.stats[i].st.Mode&unix.S_IFMT == unix.S_IFDIR && w.enters(&ls.stats[i].st) &&
			w.asked(childPrefix(path)+ls.names[i], &ls.stats[i].st) {
			subdirs = append(subdirs, i)
		}
	}
	return subdirs
}

// entries walks the entries of ls, of the directory at path, open at fd
// where it has subdirectories to enter (subdirs), with their listings
// read ahead, up to readAhead past the one being walked.
func (w *walker) entries(path string, ls *listing, subdirs []int, fd int) error {
	ahead := make([]*pending, len(subdirs)) // ahead[k]: subdirs[k]'s listing
	started, sub := 0, 0                    // listings started; subdirectories met
	prefix := childPrefix(path)
	for i, name := range ls.names {
		child := prefix + name
		if err := ls.stats[i].err; err != nil {
			if !errors.Is(err, unix.ENOENT) { // gone since the listing: nothing to do
				w.o.fail(child, &os.PathError{Op: "lstat", Path: child, Err: err})
			}
			continue
		}
		if ls.stats[i].unwalked || ls.dirsOnly && ls.stats[i].st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		var next *pending
		if sub < len(subdirs) && subdirs[sub] == i {
			for ; started < len(subdirs) && started <= sub+readAhead; started++ {
				k := subdirs[started]
				st := &ls.stats[k].st
				ahead[started] = w.listAhead(fd, ls.names[k], prefix+ls.names[k], st, w.listed(prefix+ls.names[k], st, ls.listed, ls.dev))
			}
			next = ahead[sub]
			ahead[sub] = nil // not kept once walked: a directory may hold thousands
			sub++
		}
		if err := w.visit(fd, name, child, &ls.stats[i], next); err != nil {
			if next != nil {
				<-next.done
				next.l.big.close()
			}
			for _, p := range ahead[sub:started] {
				<-p.done // no goroutine outlives the walk, nor uses fd once closed
				p.l.big.close()
			}
			return err
		}
	}
	return nil
}

type lstatResult struct {
	st     unix.Stat_t
	err    error
	listed bool // st holds only the type, device and inode (see listing)
	// mountRoot says the entry is the root of a mount, where the kernel
	// tells (rootKnown: statx's STATX_ATTR_MOUNT_ROOT, Linux 5.8).
	mountRoot, rootKnown bool
	// unwalked marks a mount made since the walk began, of a filesystem
	// the walk does not list (see leaveNewMounts): left out.
	unwalked bool
}

// lstatAll lstats each name relative to the directory open at fd, whose
// children's paths begin with prefix, into out, but those listed
// already, several at a time in large directories: on a re-run of an
// unchanged tree, lstat is most of the work. A path too long to be opened
// later gets ENAMETOOLONG, as lstat(2) of it would, which also bounds the
// depth of the walk, and so the descriptors it holds.
func lstatAll(fd int, prefix string, names []string, out []lstatResult) {
	stat := func(i int) {
		if len(prefix)+len(names[i]) >= unix.PathMax {
			out[i] = lstatResult{err: unix.ENAMETOOLONG}
			return
		}
		if r := &out[i]; !r.listed {
			r.mountRoot, r.rootKnown, r.err = fsys.Lstat(fd, names[i], &r.st) // asking no server: see fsys.Lstat
		}
	}
	const per = 256 // names per goroutine
	if len(names) <= per {
		for i := range names {
			stat(i)
		}
		return
	}
	var wg sync.WaitGroup
	for lo := 0; lo < len(names); lo += per {
		wg.Go(func() {
			for i := lo; i < min(lo+per, len(names)); i++ {
				stat(i)
			}
		})
	}
	wg.Wait()
}

// leaveNewMounts marks unwalked the entries of ls, the listing of the
// directory at path, that are mount points of filesystems mounted since
// the walk began (not among Options.Mounts) that it does not list, and
// tells Options.Unwalked of them, as of those mounted before: they are
// left out without being opened, the opening of a FUSE filesystem whose
// server does not answer would wait for ever. Their types are read from
// /proc/self/mountinfo again.
func (w *walker) leaveNewMounts(path string, ls *listing) {
	if w.o.Mounts == nil || w.o.OneFS {
		return // with OneFS, visit leaves out any other filesystem unopened
	}
	prefix := childPrefix(path)
	for i := range ls.stats {
		r := &ls.stats[i]
		if r.err != nil || r.listed || !(r.mountRoot || !r.rootKnown && uint64(r.st.Dev) != ls.dev) {
			continue
		}
		p := prefix + ls.names[i]
		if _, ok := w.o.Mounts.at[p]; ok {
			continue // mounted before the walk began, and listed
		}
		if m, ok := w.mountedSince(p, uint64(r.st.Dev)); ok && m.Skip {
			r.unwalked = true
			w.skipMount(p, m)
		}
	}
}

// mountedSince returns the mount at path, on device dev, as
// /proc/self/mountinfo says now.
func (w *walker) mountedSince(path string, dev uint64) (Mount, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.since[path]; ok && m.Dev == dev {
		return m, true
	}
	ms, err := fsys.Mounts()
	if err != nil {
		return Mount{}, false
	}
	w.since = NewMounts(ms, w.o.DedupeOnly).at
	m, ok := w.since[path]
	return m, ok && m.Dev == dev
}

// Under reports whether path is root or lies below it.
func Under(path, root string) bool {
	if root == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == root || strings.HasPrefix(path, root+"/")
}
