package scan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/safeopen"
	"same/internal/walk"
)

// read is a reader: it reads and hashes the files compare queues (or
// takes their sums from extents hashed before, see reuser), in the order
// e hands them out (see order.go), and hands them to the writer, until e
// is closed and empty. Once the run is interrupted it drains e without
// reading.
func (s *scanner) read(e *elevator) {
	r, _ := blockhash.NewReader(s.o.BlockSize)
	r.Progress = func(read, hole int64) { // as it goes: files can be large
		s.c.read.Add(read)
		s.c.toRead.Add(-hole) // not to be read after all
	}
	for {
		j, ok := e.take()
		if !ok {
			return
		}
		if s.ctx.Err() != nil {
			j.opened.close()
			continue // drain
		}
		if j.attrOf != 0 {
			if j.verify && asRecorded(s.ctx, s.ix, j.attrOf, j.moved) {
				continue
			}
			if a, ok := readAttr(s.ctx, s.ix, j); ok {
				if a.remapped {
					s.c.remapped.Add(1)
				}
				s.ops <- op{attr: &a}
			}
			continue
		}
		if j.sumsOf != 0 {
			if o, ok := fromOrigin(s.ctx, s.ix, j); ok {
				s.c.toRead.Add(-j.id.Size)
				if f := o.put; f != nil {
					s.c.fromOrigin(f.Size)
					s.ru.add(f.Vol.FS, f.Size, f.NoCOW, o.ext, o.sums)
				} // a copy is counted when written
				s.ops <- o
				continue
			}
		}
		f, sums, ext, _, reused, err := hash(s.ctx, r, s.ru, j)
		if err != nil {
			if s.ctx.Err() == nil { // else interrupted, not failed
				switch {
				case errors.Is(err, ErrChanged):
					s.failChanged(j.path, err)
				case errors.Is(err, ErrTooLarge):
					s.c.skipped.Add(1)
					s.o.Error(j.path, err)
				default:
					s.fail(j.path, err, false)
				}
			}
			s.ops <- op{forget: &key{j.vol, j.id.Ino}}
			continue
		}
		s.c.hashed.Add(1)
		if reused {
			s.c.reused.Add(1)
			s.c.reusedBytes.Add(f.Size)
			s.c.toRead.Add(-f.Size)
		}
		// Handed over, not copied: the sums of a large (or sparse)
		// file can take hundreds of MiB.
		s.ops <- op{put: &f, sums: sums, ext: ext}
	}
}

// open opens a directory or regular file met by the walk for reading. No
// symlink is followed in any component of path, and nothing else is
// opened: the path is looked up as an O_PATH descriptor, which opens
// nothing, and only a directory or regular file there is opened, that
// very inode (safeopen). A device, FIFO or socket found there now is
// refused unopened.
func open(path string) (*os.File, error) {
	h, err := safeopen.Lookup(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer h.Close()
	return openHandle(h, path)
}

func openHandle(h *safeopen.Handle, path string) (*os.File, error) {
	f, err := h.Open(os.O_RDONLY | unix.O_NONBLOCK | unix.O_NOATIME)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}

// openListed opens the file of j as open does, if it is still the regular
// file the walk listed there: the same device and inode. The walk reached
// it through directory descriptors; this open goes by path, so it checks
// that the path still leads to the inode listed, and reads no other.
// (Carrying each directory's descriptor to the readers instead would hold
// one open for every directory with a file queued.)
func openListed(j job) (*os.File, error) {
	h, err := safeopen.Lookup(j.path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: j.path, Err: err}
	}
	defer h.Close()
	if h.Stat.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: no longer a regular file", j.path)
	}
	if uint64(h.Stat.Dev) != j.id.Dev || h.Stat.Ino != j.id.Ino {
		return nil, fmt.Errorf("%s: %w", j.path, walk.ErrReplaced)
	}
	return openHandle(h, j.path)
}

// readAttr reads the NOCOW attribute of the file of j, and with j.remap
// its extents where they differ from those ix records, if it is still
// the file the walk met. A file that cannot be opened or mapped, or
// changed, is left to the next run.
func readAttr(ctx context.Context, ix *index.Index, j job) (attr, bool) {
	f, err := openListed(j)
	if err != nil {
		return attr{}, false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || fsys.FromStat(&st) != j.id {
		return attr{}, false
	}
	a := attr{id: j.attrOf, nocow: noCOW(f, j.id.Ino)}
	if j.remap {
		if a.ext, err = fiemap.Map(f); err != nil {
			return attr{}, false
		}
		// Mapped as the file the walk met: its data, and so its sums,
		// are those recorded.
		if unix.Fstat(int(f.Fd()), &st) != nil || fsys.FromStat(&st) != j.id {
			return attr{}, false
		}
		same, err := recorded(ctx, ix, j.attrOf, j.items, a.ext)
		if err != nil {
			return attr{}, false
		}
		a.remapped = !same
	}
	return a, true
}

// fromOrigin reads the extent items of the file of j, a file of a new
// read-only snapshot, through the snapshot's top directory, and takes the
// sums of row j.sumsOf, the same inode in the subvolume the snapshot was
// taken from, whose identity it has (see scanner.queueNew); it returns the
// op that records them. The file is not opened: in a read-only snapshot
// it cannot change but by deduplication, which leaves its data as it is,
// and its data is never written back late. Whether another file shares
// its extents is not recorded (see alike). Where the items are the ones
// recorded of that row as it was when queued (a search by generation names
// whole tree leaves, so most files it names changed nothing), the op
// copies the row (index.Tx.Copy, which marks the file a clone of it for
// findsame): its sums are not read. It reports false, for the file to be
// hashed instead, when the items cannot be read, or when that row changed
// while its sums were read.
func fromOrigin(ctx context.Context, ix *index.Index, j job) (op, bool) {
	ext, err := fiemap.ItemsOf(j.top, j.id.Ino)
	if err != nil {
		return op{}, false
	}
	same, err := recorded(ctx, ix, j.sumsOf, j.items, ext)
	same = same && err == nil
	f := index.File{Path: j.path, Identity: j.id.Identity(j.vol), NoCOW: index.NoCOWUnset, UID: int64(j.id.UID)}
	if same {
		// The writer copies the row's extents (and marks the file a
		// clone) only if the row is still as it was when queued
		// (j.sumsSeq), the extents compared; else it records the items.
		return op{copy: &copied{from: j.sumsOf, changed: j.sumsSeq, file: f}, ext: ext}, true
	}
	sums, err := ix.Sums(ctx, j.sumsOf)
	if err != nil {
		return op{}, false
	}
	// Read after the sums: a row hashed again since has another ctime.
	row, ok, err := ix.FileByInode(ctx, j.origin, j.id.Ino)
	if err != nil || !ok || row.ID != j.sumsOf || row.Size != j.id.Size || row.Mtime != j.id.Mtime || row.Ctime != j.id.Ctime {
		return op{}, false
	}
	return op{put: &f, sums: sums, ext: ext}, true
}

// asRecorded reports whether each of the extent items is as the index
// records it for file id.
func asRecorded(ctx context.Context, ix *index.Index, id int64, items []fiemap.Extent) bool {
	had, err := ix.Extents(ctx, id)
	if err != nil {
		return false
	}
	for _, it := range items {
		i, ok := slices.BinarySearchFunc(had, it.Logical, func(e fiemap.Extent, off int64) int { return cmp.Compare(e.Logical, off) })
		if !ok || !alike(had[i], it) {
			return false
		}
	}
	return true
}

// recorded reports whether ext are the extents recorded of row id, by
// their digest items (index.ItemsDigest) where known, else read back.
func recorded(ctx context.Context, ix *index.Index, id, items int64, ext []fiemap.Extent) (bool, error) {
	if items != 0 {
		return index.ItemsDigest(ext) == items, nil
	}
	had, err := ix.Extents(ctx, id)
	return err == nil && slices.EqualFunc(had, ext, alike), err
}

// alike reports whether x and y map the same range alike. Whether another
// file shares the extent is left out: it changes without the file's items
// changing, and nothing reads it from the index but findsame -recorded.
// So is whether it is the file's last, which items taken alone do not
// say; in two whole mappings that are otherwise alike, it is the same.
func alike(x, y fiemap.Extent) bool {
	x.Flags &^= index.ItemsIgnored
	y.Flags &^= index.ItemsIgnored
	return x == y
}

// noCOWAttr reports whether f has the NOCOW attribute.
func noCOWAttr(f *os.File) int8 {
	if fsys.NoCOW(f) {
		return index.NoCOWSet
	}
	return index.NoCOWUnset
}

// noCOW reports whether f, inode ino, is to be recorded as NOCOW: whether
// it keeps no checksums of its data (fsys.NoChecksums), as btrfs shares
// storage only between files alike in this.
func noCOW(f *os.File, ino uint64) int8 {
	if fsys.NoChecksums(f, ino) {
		return index.NoCOWSet
	}
	return index.NoCOWUnset
}

// opened is the file of a job opened to be hashed, and what hash looks
// at before its data: its status then (before), its NOCOW attribute,
// and where itemsRead, its extent items (or the error reading them).
// err is why it could not be opened: hash returns it.
type opened struct {
	f         *os.File
	before    unix.Stat_t
	nocow     int8
	items     []fiemap.Extent
	itemsErr  error
	itemsRead bool
	err       error
}

// openToHash opens the file of j as hash reads it, reading its extent
// items too with items (when it is not NOCOW), and with them whether
// btrfs keeps checksums of its data (a file without is recorded as NOCOW,
// see noCOW, and its items are not kept). A change after this is
// seen by hash, which compares the file's status after reading with
// before.
func openToHash(j job, items bool) *opened {
	f, err := openListed(j)
	if err != nil {
		return &opened{err: err}
	}
	o := &opened{f: f}
	if err := unix.Fstat(int(f.Fd()), &o.before); err != nil {
		f.Close()
		return &opened{err: &os.PathError{Op: "fstat", Path: j.path, Err: err}}
	}
	if o.before.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return &opened{err: fmt.Errorf("%s: no longer a regular file", j.path)}
	}
	if items {
		o.nocow = noCOWAttr(f)
		if o.nocow == index.NoCOWUnset {
			var noSum bool
			o.items, noSum, o.itemsErr = fiemap.DiskExtentsNoDataSum(f)
			o.itemsRead = true
			if o.itemsErr == nil && noSum {
				o.nocow, o.items = index.NoCOWSet, nil
			}
		}
	} else {
		o.nocow = noCOW(f, o.before.Ino)
	}
	return o
}

// close closes the file of o, if opened.
func (o *opened) close() {
	if o != nil && o.f != nil {
		o.f.Close()
	}
}

// hash reads one file, or takes its sums from the index through ru (see
// reuser) when ru is not nil, reading only what it does not find there when
// that is at most half the file, and checks that it did not change while
// read. It returns the file, its sums (which ru holds until the writer
// commits them), its extents, the bytes covered (read or holes), and
// whether the sums were reused.
func hash(ctx context.Context, r *blockhash.Reader, ru *reuser, j job) (index.File, []byte, []fiemap.Extent, int64, bool, error) {
	o := j.opened
	if o == nil {
		o = openToHash(j, ru != nil)
	}
	if o.err != nil {
		return index.File{}, nil, nil, 0, false, o.err
	}
	f := o.f
	defer f.Close()
	before := o.before
	var after unix.Stat_t
	id := fsys.FromStat(&before)
	nocow := o.nocow
	// On btrfs, a file all of whose extents were hashed before (in
	// another file, snapshot or copy) is not read.
	var ext []fiemap.Extent
	reused, partial := false, false
	var partRead int64 // bytes read of a file hashed in part before
	release := func() {}
	defer func() { release() }() // after the caller's add, on success
	var sums []byte
	var items []fiemap.Extent // the file's extent items, when read before its data
	if ru != nil && nocow == index.NoCOWUnset {
		if !o.itemsRead {
			o.items, o.itemsErr = fiemap.DiskExtents(f)
		}
		items = o.items
		err := o.itemsErr
		if err == nil {
			if err := sumsFit(j.path, id.Size, itemsEnd(items, id.Size), ru.bs); err != nil {
				return index.File{}, nil, nil, 0, false, err
			}
		}
		switch {
		case err == nil:
			var ok bool
			var missing []span
			if sums, missing, ok, release, err = ru.sums(ctx, j.vol.FS, items, id.Size, nil); err != nil {
				return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: %w", j.path, err)
			}
			var want int64
			for _, m := range missing {
				want += m.len
			}
			switch {
			case ok && len(missing) == 0:
				sums = trimZeroSums(sums)
				ext, reused = items, true
			case ok && want <= id.Size/2:
				// Most of it was hashed before: read the rest alone.
				if err := readMissing(ctx, r, f, sums, missing, ru.bs, &partRead); err != nil {
					if errors.Is(err, blockhash.ErrShrunk) {
						err = ErrChanged
					}
					return index.File{}, nil, nil, partRead, false, fmt.Errorf("%s: %w", j.path, err)
				}
				sums = trimZeroSums(sums)
				ext, partial = items, true
			}
		case !errors.Is(err, fiemap.ErrNoTreeSearch):
			return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: %w", j.path, err)
		}
	}
	var n int64
	if partial {
		n = id.Size // covered: read (partRead) or taken from the index
	}
	if !reused && !partial {
		var err error
		if items == nil && id.Size/int64(r.BlockSize())*blockhash.SumSize > checkSumsAbove {
			// Its extents before its data, to know where its data ends.
			ext, err = fiemap.Map(f)
			end := id.Size
			if err == nil {
				end = itemsEnd(ext, id.Size)
			} else if !errors.Is(err, fiemap.ErrUnsupported) {
				return index.File{}, nil, nil, 0, false, fmt.Errorf("%s: %w", j.path, err)
			}
			if err := sumsFit(j.path, id.Size, end, int64(r.BlockSize())); err != nil {
				return index.File{}, nil, nil, 0, false, err
			}
			items = ext
		}
		sums, n, err = r.HashFile(ctx, f, id.Size, sums[:0])
		if errors.Is(err, blockhash.ErrShrunk) {
			return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
		}
		if err != nil {
			return index.File{}, nil, nil, n, false, readError(j.path, err)
		}
		if n != id.Size {
			return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
		}
		// The extents are those read before the data, as where the sums
		// were taken from the index: a file that changed since is not
		// recorded (below), and one whose extents alone changed
		// (deduplicated, defragmented) holds the same bytes.
		ext = items
		if ext == nil {
			ext, err = fiemap.Map(f)
			if err != nil && !errors.Is(err, fiemap.ErrUnsupported) {
				return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, err)
			}
		}
	}
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return index.File{}, nil, nil, n, false, &os.PathError{Op: "fstat", Path: j.path, Err: err}
	}
	if fsys.FromStat(&after) != id {
		return index.File{}, nil, nil, n, false, fmt.Errorf("%s: %w", j.path, ErrChanged)
	}
	if ru != nil {
		ru.add(j.vol.FS, id.Size, nocow, ext, sums)
	}
	return index.File{Path: j.path, Identity: id.Identity(j.vol), NoCOW: nocow, UID: int64(id.UID)}, sums, ext, n, reused, nil
}

// ErrTooLarge is the error of a file whose sums hashfile does not hold
// (see sumsFit): it is left out, counted as skipped.
var ErrTooLarge = errors.New("too large")

// checkSumsAbove is the size of a file's sums, were it all data, above
// which hash looks where its data ends before reading it (see sumsFit).
const checkSumsAbove = 64 << 20

// maxSums bounds the bytes of sums of one file: its sums are held whole
// while it is hashed and recorded, SumSize bytes a block up to its last
// data block. An eighth of the machine's memory, and at least 256 MiB (a
// file of 128 GiB at 4 KiB blocks).
var maxSums = func() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 256 << 20
	}
	return max(256<<20, int64(si.Totalram)*int64(si.Unit)/8)
}()

// sumsFit reports, for a file at path of size bytes whose data ends at
// dataEnd, an error wrapping ErrTooLarge if its sums would take more
// than maxSums bytes, or if it holds 2^32 blocks or more of bs bytes
// before its data ends, which findsame does not plan: a user who makes
// a sparse file of an exabyte with a byte at its end (truncate, then
// one write) would have root's nightly run hold its sums, or fail
// for want of memory.
func sumsFit(path string, size, dataEnd, bs int64) error {
	blocks := (dataEnd + bs - 1) / bs
	need := blocks * blockhash.SumSize
	switch {
	case blocks >= 1<<32:
		return fmt.Errorf("%s: %w: %s, its data ending %s in: %d blocks of %s, more than findsame plans in one file (2^32): left out", path, ErrTooLarge,
			cli.Bytes(size), cli.Bytes(dataEnd), blocks, cli.Bytes(bs))
	case need > maxSums:
		return fmt.Errorf("%s: %w: %s, its data ending %s in: its block sums would take %s of memory, more than hashfile holds for one file (%s, an eighth of this machine's): left out", path, ErrTooLarge,
			cli.Bytes(size), cli.Bytes(dataEnd), cli.Bytes(need), cli.Bytes(maxSums))
	}
	return nil
}

// readError names path in err once: errors from reading a file mostly
// name it already.
func readError(path string, err error) error {
	if _, ok := errors.AsType[*os.PathError](err); ok {
		return err
	}
	return fmt.Errorf("read %s: %w", path, err)
}

// readMissing hashes the ranges of f in missing and puts their sums into
// sums (zeroed there, and long enough for the whole file), adding the
// bytes read to read.
func readMissing(ctx context.Context, r *blockhash.Reader, f *os.File, sums []byte, missing []span, bs int64, read *int64) error {
	var part []byte
	for _, m := range missing {
		var n int64
		var err error
		part, n, err = r.HashRange(ctx, f, m.off, m.len, part[:0])
		*read += n
		if err != nil {
			return err
		}
		copy(sums[m.off/bs*blockhash.SumSize:], part)
	}
	return nil
}
