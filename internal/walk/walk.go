package walk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
)

// Identity is what a file's stat says of it.
type Identity = fsys.Stat

// FromStat returns the Identity of a stat result.
func FromStat(st *unix.Stat_t) Identity { return fsys.FromStat(st) }

// Entry is a regular, non-empty file found by the walk.
type Entry struct {
	Path string
	Identity
}

// Options shape a walk.
type Options struct {
	// Exclude holds glob patterns (path.Match syntax); a file or directory
	// whose base name or full path matches one is left out, with all below it.
	Exclude []string
	// OneFS keeps the walk on the filesystem of each root.
	OneFS bool
	// Dir, if set, is called for each directory entered, and Skipped for each
	// entry that is not a regular file (or is empty); both may be nil.
	Dir     func(path string, st *unix.Stat_t)
	Skipped func(path string, why string)
	// Error is called for each path that cannot be read; the walk goes on.
	Error func(path string, err error)
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
func Walk(ctx context.Context, root string, o Options, fn func(Entry) error) error {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		o.fail(root, &os.PathError{Op: "lstat", Path: root, Err: err})
		return nil
	}
	w := walker{ctx: ctx, o: &o, fn: fn, rootDev: uint64(st.Dev)}
	return w.visit(root, &st, nil)
}

type walker struct {
	ctx     context.Context
	o       *Options
	fn      func(Entry) error
	rootDev uint64
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

func (w *walker) visit(path string, st *unix.Stat_t, next *pending) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size == 0 {
			w.o.skip(path, "empty")
			return nil
		}
		return w.fn(Entry{Path: path, Identity: FromStat(st)})
	case unix.S_IFDIR:
		if !w.enters(st) {
			w.o.skip(path, "on another filesystem")
			return nil
		}
		return w.dir(path, st, next)
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

// listing is what the walk reads of a directory: its names, sorted and
// filtered, and the lstat of each.
type listing struct {
	names   []string
	stats   []lstatResult
	openErr error // the directory could not be opened
	readErr error // reading it stopped early; names holds what was read
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

func (w *walker) listAhead(path string) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		p.l = w.list(path)
		close(p.done)
	}()
	return p
}

func (w *walker) list(path string) listing {
	var l listing
	d, err := os.Open(path)
	if err != nil {
		l.openErr = err
		return l
	}
	l.names, l.readErr = d.Readdirnames(-1)
	d.Close()
	slices.Sort(l.names)
	prefix := childPrefix(path)
	l.names = slices.DeleteFunc(l.names, func(name string) bool { return w.o.excluded(prefix + name) })
	l.stats = lstatAll(prefix, l.names)
	return l
}

func childPrefix(path string) string {
	if path == "/" {
		return "/"
	}
	return path + "/"
}

// dir walks the directory at path; l, if not nil, is its listing read
// ahead.
func (w *walker) dir(path string, st *unix.Stat_t, l *pending) error {
	if w.o.Dir != nil {
		w.o.Dir(path, st)
	}
	var ls listing
	if l != nil {
		<-l.done
		ls = l.l
	} else {
		ls = w.list(path)
	}
	if ls.openErr != nil {
		w.o.fail(path, ls.openErr)
		return nil
	}
	if ls.readErr != nil {
		w.o.fail(path, ls.readErr)
		// Go on with the names read so far.
	}
	// The subdirectories to enter, in order, and their listings read
	// ahead, up to readAhead past the one being walked.
	var subdirs []int
	for i := range ls.names {
		if ls.stats[i].err == nil && ls.stats[i].st.Mode&unix.S_IFMT == unix.S_IFDIR && w.enters(&ls.stats[i].st) {
			subdirs = append(subdirs, i)
		}
	}
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
		var next *pending
		if sub < len(subdirs) && subdirs[sub] == i {
			for ; started < len(subdirs) && started <= sub+readAhead; started++ {
				ahead[started] = w.listAhead(prefix + ls.names[subdirs[started]])
			}
			next = ahead[sub]
			sub++
		}
		if err := w.visit(child, &ls.stats[i].st, next); err != nil {
			for _, p := range ahead[max(sub-1, 0):started] {
				<-p.done // no goroutine outlives the walk
			}
			return err
		}
	}
	return nil
}

type lstatResult struct {
	st  unix.Stat_t
	err error
}

// lstatAll lstats prefix+name for each name, several at a time in large
// directories: on a re-run of an unchanged tree, lstat is most of the work.
func lstatAll(prefix string, names []string) []lstatResult {
	out := make([]lstatResult, len(names))
	const per = 256 // names per goroutine
	if len(names) <= per {
		for i, name := range names {
			out[i].err = unix.Lstat(prefix+name, &out[i].st)
		}
		return out
	}
	var wg sync.WaitGroup
	for lo := 0; lo < len(names); lo += per {
		wg.Go(func() {
			for i := lo; i < min(lo+per, len(names)); i++ {
				out[i].err = unix.Lstat(prefix+names[i], &out[i].st)
			}
		})
	}
	wg.Wait()
	return out
}

// Under reports whether path is root or lies below it.
func Under(path, root string) bool {
	if root == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == root || strings.HasPrefix(path, root+"/")
}
