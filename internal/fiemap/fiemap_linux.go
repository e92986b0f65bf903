package fiemap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FS_IOC_FIEMAP is _IOWR('f', 11, struct fiemap); x/sys/unix has no wrapper.
const fsIocFiemap = 0xC020660B

// flagSync asks the kernel to flush delayed allocations first, so that
// recently written data has real physical offsets rather than FlagDelalloc.
const flagSync = 0x0001

// The kernel's struct fiemap (32 bytes) and struct fiemap_extent (56 bytes).
type header struct {
	start         uint64
	length        uint64
	flags         uint32
	mappedExtents uint32
	extentCount   uint32
	reserved      uint32
}

type rawExtent struct {
	logical    uint64
	physical   uint64
	length     uint64
	reserved64 [2]uint64
	flags      uint32
	reserved   [3]uint32
}

// batch is how many extents one ioctl call asks for.
const batch = 256

type request struct {
	h   header
	ext [batch]rawExtent
}

// Extents returns every extent of f in logical order. It asks the kernel to
// sync the file's delayed allocations first. Filesystems without FIEMAP
// (tmpfs, for one) give ErrUnsupported.
func Extents(f *os.File) ([]Extent, error) {
	return extents(f, 0, ^uint64(0), flagSync)
}

// ExtentsIn returns the extents of f that hold some of the n bytes at
// off: a look, cheap where Extents would map all of it. It too asks the
// kernel to write back what f has cached dirty first (cheap where it has
// nothing), for data cached over an extent is not the extent's: btrfs
// shares an inline extent into a file that had a regular one by writing
// its bytes into the file's page cache, and until they are written back
// FIEMAP shows the old extent, not flagged delayed.
func ExtentsIn(f *os.File, off, n int64) ([]Extent, error) {
	if n <= 0 {
		return nil, nil
	}
	return extents(f, uint64(off), uint64(off+n), flagSync)
}

// First returns the first extent of f, in one FIEMAP call that syncs
// nothing: where its data begins on the device, to read files in the
// order they lie there. ok is false where f has none (empty, or all
// holes).
func First(f *os.File) (e Extent, ok bool, err error) {
	var req struct {
		h   header
		ext [1]rawExtent
	}
	req.h = header{length: ^uint64(0), extentCount: 1}
	if err := ioctlFiemap(f, unsafe.Pointer(&req)); err != nil {
		return Extent{}, false, err
	}
	if req.h.mappedExtents == 0 {
		return Extent{}, false, nil
	}
	return extentOf(req.ext[0]), true, nil
}

// ioctlFiemap makes the FIEMAP call of req: a header followed by room for
// as many extents as it asks for.
func ioctlFiemap(f *os.File, req unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(req))
	if errno != 0 {
		if errors.Is(errno, unix.EOPNOTSUPP) || errors.Is(errno, unix.ENOTTY) {
			return ErrUnsupported
		}
		return fmt.Errorf("fiemap: %w", errno)
	}
	return nil
}

func extentOf(r rawExtent) Extent {
	return Extent{Logical: int64(r.logical), Physical: int64(r.physical), Length: int64(r.length), Flags: r.flags}
}

// extents maps f from start to end with FIEMAP flags.
func extents(f *os.File, start, end uint64, flags uint32) ([]Extent, error) {
	var out []Extent
	var req request
	for {
		req.h = header{start: start, length: end - start, flags: flags, extentCount: batch}
		if err := ioctlFiemap(f, unsafe.Pointer(&req)); err != nil {
			return nil, err
		}
		n := int(req.h.mappedExtents)
		if n == 0 {
			return out, nil
		}
		for _, r := range req.ext[:n] {
			out = append(out, extentOf(r))
		}
		last := req.ext[n-1]
		if last.flags&FlagLast != 0 || last.logical+last.length >= end {
			return out, nil
		}
		start = last.logical + last.length
	}
}

// BTRFS_IOC_TREE_SEARCH_V2 is _IOWR(0x94, 17, struct
// btrfs_ioctl_search_args_v2); the size in it (112) excludes the flexible
// result buffer.
const btrfsIocTreeSearchV2 = 0xC0709411

// btrfsExtentDataKey is BTRFS_EXTENT_DATA_KEY: the item type of a file
// extent item, keyed (inode number, 108, file offset).
const btrfsExtentDataKey = 108

// File extent item types (btrfs_file_extent_item.type).
const (
	fileExtentInline   = 0
	fileExtentReg      = 1
	fileExtentPrealloc = 2
)

// searchKey is the kernel's struct btrfs_ioctl_search_key (104 bytes).
type searchKey struct {
	treeID      uint64
	minObjectID uint64
	maxObjectID uint64
	minOffset   uint64
	maxOffset   uint64
	minTransID  uint64
	maxTransID  uint64
	minType     uint32
	maxType     uint32
	nrItems     uint32
	unused      uint32
	unused1     [4]uint64
}

// searchBufSize is the result buffer of one tree search. A btrfs leaf is at
// most 64 KiB, so every item with its 32-byte search header fits, and the
// kernel's EOVERFLOW (item larger than the buffer) cannot happen.
const searchBufSize = 64 << 10

// searchArgs is struct btrfs_ioctl_search_args_v2 with its buffer.
type searchArgs struct {
	key     searchKey
	bufSize uint64
	buf     [searchBufSize]byte
}

// searchArgsPool keeps the 64 KiB search buffers between calls.
var searchArgsPool = sync.Pool{New: func() any { return new(searchArgs) }}

// The build fails here if the Go layouts differ from the kernel's.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(searchKey{})-104]
	_ = [1]struct{}{}[unsafe.Offsetof(searchArgs{}.buf)-112]
)

// Sizes in the result buffer: struct btrfs_ioctl_search_header, the fixed
// part of struct btrfs_file_extent_item that inline data follows, and the
// whole item of a regular or prealloc extent.
const (
	searchHeaderSize     = 32
	fileExtentInlineSize = 21
	fileExtentItemSize   = 53
)

// searchHeader is the kernel's struct btrfs_ioctl_search_header: the
// generation of the leaf an item lies in, and the item's key.
type searchHeader struct {
	transID, objectID, offset uint64
	typ                       uint32
}

// search runs one BTRFS_IOC_TREE_SEARCH_V2 for args.key in the btrfs
// subvolume (or tree) of f and calls fn with each item it returns, in key
// order. It returns how many items came and the room left in the buffer.
// Where the search is not allowed (not btrfs, EPERM, ENOTTY, EOPNOTSUPP)
// the error wraps ErrNoTreeSearch.
func search(f *os.File, args *searchArgs, fn func(h searchHeader, item []byte) error) (uint32, int, error) {
	args.bufSize = searchBufSize
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), btrfsIocTreeSearchV2, uintptr(unsafe.Pointer(args)))
	if errno != 0 {
		switch errno {
		case unix.EPERM, unix.ENOTTY, unix.EOPNOTSUPP:
			return 0, 0, fmt.Errorf("%w: %w", ErrNoTreeSearch, errno)
		}
		return 0, 0, fmt.Errorf("fiemap: btrfs tree search: %w", errno)
	}
	n := args.key.nrItems
	buf := args.buf[:]
	for i := uint32(0); i < n; i++ {
		if len(buf) < searchHeaderSize {
			return 0, 0, fmt.Errorf("fiemap: btrfs tree search: result %d of %d truncated", i, n)
		}
		// The search header is in CPU byte order, the item in little endian.
		h := searchHeader{
			transID:  binary.NativeEndian.Uint64(buf[0:]),
			objectID: binary.NativeEndian.Uint64(buf[8:]),
			offset:   binary.NativeEndian.Uint64(buf[16:]),
			typ:      binary.NativeEndian.Uint32(buf[24:]),
		}
		size := int(binary.NativeEndian.Uint32(buf[28:]))
		if len(buf) < searchHeaderSize+size {
			return 0, 0, fmt.Errorf("fiemap: btrfs tree search: result %d of %d truncated", i, n)
		}
		item := buf[searchHeaderSize : searchHeaderSize+size]
		buf = buf[searchHeaderSize+size:]
		if err := fn(h, item); err != nil {
			return 0, 0, err
		}
	}
	return n, len(buf), nil
}

// DiskExtents returns one Extent per btrfs file extent item of f, in file
// order, with DiskStart and DiskLen naming the disk extent each refers to.
// Unlike Extents, it neither merges items that are contiguous on disk nor
// hides that two ranges are pieces of one disk extent. It reads the items of
// f's subvolume with BTRFS_IOC_TREE_SEARCH_V2, which needs CAP_SYS_ADMIN;
// where that is not possible (not btrfs, EPERM, ENOTTY, EOPNOTSUPP) the
// error wraps ErrNoTreeSearch and callers fall back to Extents.
//
// It first calls Extents, whose FIEMAP_FLAG_SYNC writes back delayed
// allocations and waits for their ordered extents, so that the items of
// data written but not yet synced are in the tree when it is searched. The
// tree search cannot tell whether a disk extent is shared, so each item that
// overlaps an extent FIEMAP flags FlagShared gets FlagShared too. The two
// calls are not atomic: a file written meanwhile can give a stale answer.
//
// Each Extent has Logical = the item's file offset and Length = its
// num_bytes (a multiple of the block size, as with FIEMAP). For uncompressed
// data Physical = disk_bytenr + offset, where the range starts on disk; for
// compressed or otherwise encoded data Physical = disk_bytenr and FlagEncoded
// is set, as FIEMAP does. Prealloc items get FlagUnwritten. Inline items get
// FlagDataInline and FlagNotAligned, Physical 0, no disk extent, and Length
// = ram_bytes, the bytes of file data they hold. Holes are skipped, as FIEMAP
// skips them. The last Extent has FlagLast. Addresses are btrfs logical
// addresses, as FIEMAP reports them, not device offsets.
func DiskExtents(f *os.File) ([]Extent, error) {
	out, _, err := diskExtents(f, false)
	return out, err
}

// DiskExtentsNoDataSum is DiskExtents, and reports too whether btrfs
// keeps no checksums of f's data (see NoDataSum), from the inode item the
// same tree search reads.
func DiskExtentsNoDataSum(f *os.File) ([]Extent, bool, error) {
	return diskExtents(f, true)
}

// diskExtents is DiskExtents; with inode, it reads the inode item too
// (see itemsOf).
func diskExtents(f *os.File, inode bool) ([]Extent, bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return nil, false, fmt.Errorf("fiemap: fstatfs: %w", err)
	}
	if sfs.Type != unix.BTRFS_SUPER_MAGIC {
		return nil, false, fmt.Errorf("%w: not btrfs", ErrNoTreeSearch)
	}
	fm, err := Extents(f)
	if err != nil {
		return nil, false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, false, fmt.Errorf("fiemap: fstat: %w", err)
	}
	out, noSum, err := itemsOf(f, st.Ino, inode)
	if err != nil {
		return nil, false, err
	}
	copyShared(out, fm)
	return out, noSum, nil
}

// ItemsOf returns the file extent items of file ino of the btrfs
// subvolume holding f (any file or directory in it), as DiskExtents does
// but without FIEMAP: no extent has FlagShared, and data not yet written
// back may be missing. For a file of a read-only snapshot, which holds
// none, it spares an open of the file and FIEMAP's look-up of who shares
// each extent. It needs CAP_SYS_ADMIN; otherwise the error wraps
// ErrNoTreeSearch.
func ItemsOf(f *os.File, ino uint64) ([]Extent, error) {
	out, _, err := itemsOf(f, ino, false)
	return out, err
}

// itemsOf is ItemsOf; with inode, the search starts at the file's inode
// item, and it reports whether that has the NODATASUM flag.
func itemsOf(f *os.File, ino uint64, inode bool) ([]Extent, bool, error) {
	var out []Extent
	var noSum bool
	args := searchArgsPool.Get().(*searchArgs)
	defer searchArgsPool.Put(args)
	typ, offset := uint32(btrfsExtentDataKey), uint64(0)
	if inode {
		typ = btrfsInodeItemKey
	}
	for {
		// Keys are compared whole, (objectid, type, offset): from the
		// inode item on, the range holds the file's references and
		// extended attributes too, which are left out here.
		args.key = searchKey{
			treeID:      0, // the subvolume holding f
			minObjectID: ino,
			maxObjectID: ino,
			minOffset:   offset,
			maxOffset:   ^uint64(0),
			maxTransID:  ^uint64(0),
			minType:     typ,
			maxType:     btrfsExtentDataKey,
			nrItems:     ^uint32(0),
		}
		var last uint64
		lastTyp := typ
		n, left, err := search(f, args, func(h searchHeader, item []byte) error {
			last, lastTyp = h.offset, h.typ
			if h.objectID != ino {
				return nil // not asked for; the kernel filters these
			}
			switch h.typ {
			case btrfsInodeItemKey:
				var err error
				noSum, err = inodeNoDataSum(ino, item)
				return err
			case btrfsExtentDataKey:
				e, ok, err := parseFileExtent(h.offset, item)
				if ok {
					out = append(out, e)
				}
				return err
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		// The kernel stops at the end of the key range or when the next
		// item does not fit. An extent item after the first is never
		// inline (the tree checker allows inline items only at offset 0),
		// so it is at most fileExtentItemSize: if that much room is left
		// after one, the range is done and a further search would find
		// nothing. After an item of another kind (an extended attribute
		// can be larger), the search goes on from the key after it.
		if n == 0 || lastTyp == btrfsExtentDataKey && (last == ^uint64(0) || left >= searchHeaderSize+fileExtentItemSize) {
			break
		}
		if last < ^uint64(0) {
			typ, offset = lastTyp, last+1
		} else {
			typ, offset = lastTyp+1, 0 // lastTyp < btrfsExtentDataKey
		}
	}
	if len(out) == 0 {
		return nil, noSum, nil
	}
	out[len(out)-1].Flags |= FlagLast
	return out, noSum, nil
}

// parseFileExtent decodes a struct btrfs_file_extent_item (packed, little
// endian) keyed at file offset off. It reports false for a hole.
func parseFileExtent(off uint64, item []byte) (Extent, bool, error) {
	le := binary.LittleEndian
	if len(item) < fileExtentInlineSize {
		return Extent{}, false, fmt.Errorf("fiemap: file extent item at %d: %d bytes, too short", off, len(item))
	}
	e := Extent{Logical: int64(off)}
	ramBytes := le.Uint64(item[8:])
	// compression (u8), encryption (u8), other_encoding (u16)
	encoded := item[16] != 0 || item[17] != 0 || le.Uint16(item[18:]) != 0
	typ := item[20]
	if typ == fileExtentInline {
		e.Length = int64(ramBytes)
		e.Flags = FlagDataInline | FlagNotAligned
		if encoded {
			e.Flags |= FlagEncoded
		}
		return e, true, nil
	}
	if typ != fileExtentReg && typ != fileExtentPrealloc {
		return Extent{}, false, fmt.Errorf("fiemap: file extent item at %d: unknown type %d", off, typ)
	}
	if len(item) < fileExtentItemSize {
		return Extent{}, false, fmt.Errorf("fiemap: file extent item at %d: %d bytes, too short", off, len(item))
	}
	diskBytenr := le.Uint64(item[21:])
	diskNumBytes := le.Uint64(item[29:])
	offset := le.Uint64(item[37:])
	numBytes := le.Uint64(item[45:])
	if diskBytenr == 0 {
		return Extent{}, false, nil // a hole (without the NO_HOLES feature)
	}
	e.Length = int64(numBytes)
	e.DiskStart = int64(diskBytenr)
	e.DiskLen = int64(diskNumBytes)
	e.Gen = int64(le.Uint64(item[0:]))
	e.Offset = int64(offset)
	e.Physical = int64(diskBytenr + offset)
	if encoded {
		e.Physical = int64(diskBytenr)
		e.Flags |= FlagEncoded
	}
	if typ == fileExtentPrealloc {
		e.Flags |= FlagUnwritten
	}
	return e, true, nil
}

// copyShared sets FlagShared on each of items (sorted, disjoint) that
// overlaps one of the FIEMAP extents fm (sorted, disjoint) carrying it.
func copyShared(items, fm []Extent) {
	j := 0
	for i := range items {
		it := &items[i]
		for j < len(fm) && fm[j].End() <= it.Logical {
			j++
		}
		for k := j; k < len(fm) && fm[k].Logical < it.End(); k++ {
			if fm[k].Flags&FlagShared != 0 {
				it.Flags |= FlagShared
				break
			}
		}
	}
}

// btrfsIocLogicalInoV2 is BTRFS_IOC_LOGICAL_INO_V2, _IOWR(0x94, 59, struct
// btrfs_ioctl_logical_ino_args): logical (u64), size (u64), reserved[3],
// flags (u64), inodes (u64, a pointer to a struct btrfs_data_container).
const btrfsIocLogicalInoV2 = 0xC038943B

// logicalInoIgnoreOffset is BTRFS_LOGICAL_INO_ARGS_IGNORE_OFFSET: every
// reference to the extent, not only those to one of its bytes.
const logicalInoIgnoreOffset = 1

// refsBufSize is the result buffer of one LOGICAL_INO call: 16 bytes of
// header and 24 bytes a reference.
const refsBufSize = 64 << 10

// Ref is one reference to a btrfs disk extent: a file extent item of
// inode Ino in subvolume Root.
type Ref struct {
	Root, Ino uint64
}

// ExtentRefs returns every reference to the btrfs disk extent that starts
// at disk (a DiskStart), in any file of any subvolume of the filesystem
// holding f, with BTRFS_IOC_LOGICAL_INO_V2 (CAP_SYS_ADMIN; slow for
// extents with very many references). A file that refers to the extent
// several times is listed once. Without the privilege, or off btrfs, it
// returns an error wrapping ErrNoTreeSearch. ok is false when the buffer
// could not hold every reference.
func ExtentRefs(f *os.File, disk int64) (refs []Ref, ok bool, err error) {
	buf := make([]byte, refsBufSize)
	var args [56]byte
	le := binary.NativeEndian
	le.PutUint64(args[0:], uint64(disk))
	le.PutUint64(args[8:], refsBufSize)
	le.PutUint64(args[40:], logicalInoIgnoreOffset)
	le.PutUint64(args[48:], uint64(uintptr(unsafe.Pointer(&buf[0]))))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), btrfsIocLogicalInoV2, uintptr(unsafe.Pointer(&args[0])))
	runtime.KeepAlive(buf)
	switch errno {
	case 0:
	case unix.EPERM, unix.ENOTTY, unix.EOPNOTSUPP:
		return nil, false, fmt.Errorf("%w: %w", ErrNoTreeSearch, errno)
	default:
		return nil, false, fmt.Errorf("fiemap: btrfs logical ino: %w", errno)
	}
	missing := le.Uint32(buf[4:])
	n := int(le.Uint32(buf[8:]))
	seen := make(map[Ref]bool)
	for i := 0; i+2 < n && 16+(i+3)*8 <= len(buf); i += 3 {
		r := Ref{Ino: le.Uint64(buf[16+i*8:]), Root: le.Uint64(buf[16+(i+2)*8:])}
		if !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	return refs, missing == 0 && le.Uint32(buf[12:]) == 0, nil
}

// Changes is what a tree search finds changed in a btrfs subvolume since a
// transaction (see Changed).
type Changes struct {
	// Extents holds the files whose file extent items lie in tree leaves
	// written since: every file whose extents changed (written,
	// deduplicated, reflinked, defragmented, truncated, relocated), and
	// others that share a leaf with one.
	Extents map[uint64]bool
	// Items holds, for each file in Extents, its file extent items in
	// those leaves, holes left out, as DiskExtents gives them (without
	// FlagShared or FlagLast). Of a file whose inode item was not
	// rewritten (not in Files), only these can differ from what they
	// were. Writes, truncations, deduplication, reflinks, defragmentation
	// and balance all rewrite the inode item of a file whose extents they
	// change; most files in Extents are there for sharing a leaf with one.
	Items map[uint64][]Extent
	// Files holds the regular files whose inode items were rewritten
	// since: their data, size, times, owner, mode, links or extents
	// changed.
	Files map[uint64]bool
	// Others reports that the inode item of a directory, symlink or
	// other file was rewritten since: an entry may have been added,
	// removed or renamed.
	Others bool
	// Dirs holds the directories whose inode items were rewritten
	// since, with their ctimes now (in nanoseconds): adding, removing or
	// renaming an entry in a directory rewrites its inode item and sets
	// its ctime, and so does renaming or moving the directory itself;
	// writing its access time rewrites the item alone.
	Dirs map[uint64]int64
}

// Inode item fields (struct btrfs_inode_item, 160 bytes): the transaction
// that last wrote it, the mode, the flags and the ctime (struct
// btrfs_timespec: seconds, then nanoseconds).
const (
	btrfsInodeItemKey = 1
	inodeTransIDAt    = 8
	inodeModeAt       = 52
	inodeFlagsAt      = 64
	inodeCtimeAt      = 124
	inodeItemSize     = 160

	btrfsInodeNoDataSum = 1 << 0 // BTRFS_INODE_NODATASUM
)

// NoDataSum reports whether btrfs keeps no checksums of the data of file
// ino of the subvolume holding f (any file or directory in it): the
// NODATASUM flag of its inode item. Files with the NOCOW attribute have
// it; so have files written while the filesystem was mounted with
// nodatasum, for good, and FS_IOC_GETFLAGS does not show it on those.
// btrfs shares storage only between files that both have it or both lack
// it (EINVAL otherwise). It needs CAP_SYS_ADMIN; otherwise the error wraps
// ErrNoTreeSearch.
func NoDataSum(f *os.File, ino uint64) (bool, error) {
	item, found, err := lookup(f, 0, ino, btrfsInodeItemKey, 0, 0)
	switch {
	case err != nil:
		return false, err
	case !found:
		return false, fmt.Errorf("fiemap: no inode item of %d", ino)
	}
	return inodeNoDataSum(ino, item)
}

// inodeNoDataSum reads the NODATASUM flag of item, the inode item of ino.
func inodeNoDataSum(ino uint64, item []byte) (bool, error) {
	if len(item) < inodeItemSize {
		return false, fmt.Errorf("fiemap: inode item of %d: %d bytes", ino, len(item))
	}
	return binary.LittleEndian.Uint64(item[inodeFlagsAt:])&btrfsInodeNoDataSum != 0, nil
}

// Changed returns what changed in the btrfs subvolume holding f in
// transaction minTransID or later. The kernel skips the parts of the tree
// older than minTransID (BTRFS_IOC_TREE_SEARCH_V2 with min_transid), so
// this costs what changed, not the size of the subvolume. It needs
// CAP_SYS_ADMIN; otherwise the error wraps ErrNoTreeSearch.
func Changed(f *os.File, minTransID uint64) (Changes, error) {
	args := searchArgsPool.Get().(*searchArgs)
	defer searchArgsPool.Put(args)
	c := Changes{Extents: make(map[uint64]bool), Items: make(map[uint64][]Extent), Files: make(map[uint64]bool), Dirs: make(map[uint64]int64)}
	le := binary.LittleEndian
	var obj, off uint64
	typ := uint32(0)
	for {
		// Keys are compared whole, (objectid, type, offset): the range
		// holds every item from the last one seen on, and those of other
		// types are left out here.
		args.key = searchKey{
			treeID:      0, // the subvolume holding f
			minObjectID: obj,
			maxObjectID: ^uint64(0),
			minOffset:   off,
			maxOffset:   ^uint64(0),
			minTransID:  minTransID,
			maxTransID:  ^uint64(0),
			minType:     typ,
			maxType:     ^uint32(0),
			nrItems:     ^uint32(0),
		}
		n, _, err := search(f, args, func(h searchHeader, item []byte) error {
			obj, off, typ = h.objectID, h.offset, h.typ
			if h.transID < minTransID {
				return nil
			}
			switch h.typ {
			case btrfsExtentDataKey:
				c.Extents[h.objectID] = true
				e, ok, err := parseFileExtent(h.offset, item)
				if err != nil {
					return err
				}
				if ok {
					c.Items[h.objectID] = append(c.Items[h.objectID], e)
				}
			case btrfsInodeItemKey:
				if len(item) < inodeItemSize {
					return fmt.Errorf("fiemap: inode item of %d: %d bytes", h.objectID, len(item))
				}
				if le.Uint64(item[inodeTransIDAt:]) < minTransID {
					return nil
				}
				switch le.Uint32(item[inodeModeAt:]) & unix.S_IFMT {
				case unix.S_IFREG:
					c.Files[h.objectID] = true
				case unix.S_IFDIR:
					c.Dirs[h.objectID] = int64(le.Uint64(item[inodeCtimeAt:]))*1e9 + int64(le.Uint32(item[inodeCtimeAt+8:]))
					c.Others = true
				default:
					c.Others = true
				}
			}
			return nil
		})
		if err != nil {
			return Changes{}, err
		}
		if n == 0 {
			return c, nil
		}
		// On from the key after the last one seen.
		switch {
		case off < ^uint64(0):
			off++
		case typ < 255:
			typ, off = typ+1, 0
		case obj < ^uint64(0):
			obj, typ, off = obj+1, 0, 0
		default:
			return c, nil
		}
	}
}

// The root tree (BTRFS_ROOT_TREE_OBJECTID) holds a root item for each
// subvolume, keyed (its id, BTRFS_ROOT_ITEM_KEY, 0 or the transaction
// that made it); last_snapshot lies at offset 200 of struct
// btrfs_root_item, after the inode item (160 bytes), generation,
// root_dirid, bytenr, byte_limit and bytes_used.
const (
	btrfsRootTree       = 1
	btrfsRootItemKey    = 132
	rootLastSnapshotOff = 200
)

// LastSnapshot returns the transaction in which the last snapshot of
// subvolume id of the btrfs holding f was taken (a snapshot's own is the
// one that made it, its root item being a copy of its origin's): a tree
// block written after it is the subvolume's alone, which the kernel
// changes in place of sharing (btrfs_block_can_be_shared). It searches
// the root tree, which needs CAP_SYS_ADMIN; otherwise the error wraps
// ErrNoTreeSearch.
func LastSnapshot(f *os.File, id uint64) (uint64, error) {
	item, found, err := lookup(f, btrfsRootTree, id, btrfsRootItemKey, 0, ^uint64(0))
	switch {
	case err != nil:
		return 0, err
	case !found || len(item) < rootLastSnapshotOff+8:
		return 0, fmt.Errorf("fiemap: no root item of subvolume %d", id)
	}
	return binary.LittleEndian.Uint64(item[rootLastSnapshotOff:]), nil
}

// lookup returns a copy of the first item of tree keyed (objectID, typ,
// an offset from minOffset to maxOffset) in the btrfs holding f, and
// false if there is none, with one tree search (see search).
func lookup(f *os.File, tree, objectID uint64, typ uint32, minOffset, maxOffset uint64) ([]byte, bool, error) {
	args := searchArgsPool.Get().(*searchArgs)
	defer searchArgsPool.Put(args)
	args.key = searchKey{
		treeID:      tree,
		minObjectID: objectID,
		maxObjectID: objectID,
		minOffset:   minOffset,
		maxOffset:   maxOffset,
		maxTransID:  ^uint64(0),
		minType:     typ,
		maxType:     typ,
		nrItems:     1,
	}
	var out []byte
	var found bool
	_, _, err := search(f, args, func(h searchHeader, item []byte) error {
		if !found && h.objectID == objectID && h.typ == typ && h.offset >= minOffset && h.offset <= maxOffset {
			out, found = slices.Clone(item), true
		}
		return nil
	})
	return out, found, err
}

// The UUID tree (BTRFS_UUID_TREE_OBJECTID) maps each subvolume's UUID to
// its id: an item keyed (first 8 bytes of the UUID as a little-endian
// number, BTRFS_UUID_KEY_SUBVOL, last 8 bytes) holding little-endian
// subvolume ids.
const (
	btrfsUUIDTree      = 9
	btrfsUUIDKeySubvol = 251
)

// SubvolByUUID returns the id of the subvolume with UUID uuid in the btrfs
// holding f, and false if there is none (deleted, or never there). It
// searches the UUID tree, which needs CAP_SYS_ADMIN; otherwise the error
// wraps ErrNoTreeSearch.
func SubvolByUUID(f *os.File, uuid [16]byte) (uint64, bool, error) {
	lo, hi := binary.LittleEndian.Uint64(uuid[:8]), binary.LittleEndian.Uint64(uuid[8:])
	item, found, err := lookup(f, btrfsUUIDTree, lo, btrfsUUIDKeySubvol, hi, hi)
	if err != nil || !found || len(item) < 8 {
		return 0, false, err
	}
	return binary.LittleEndian.Uint64(item), true, nil
}

// DirChanged returns the transaction that last changed inode ino of
// subvolume tree of the btrfs holding f (0: the subvolume holding f), from
// its inode item, and false if that is no directory's. A directory's inode
// item is written whenever an entry is added to it, removed or renamed.
// It searches that subvolume's tree, which needs CAP_SYS_ADMIN; otherwise
// the error wraps ErrNoTreeSearch.
func DirChanged(f *os.File, tree, ino uint64) (uint64, bool, error) {
	item, found, err := lookup(f, tree, ino, btrfsInodeItemKey, 0, 0)
	switch {
	case err != nil:
		return 0, false, err
	case !found:
		return 0, false, nil
	case len(item) < inodeItemSize:
		return 0, false, fmt.Errorf("fiemap: inode item of %d: %d bytes", ino, len(item))
	}
	le := binary.LittleEndian
	return le.Uint64(item[inodeTransIDAt:]), le.Uint32(item[inodeModeAt:])&unix.S_IFMT == unix.S_IFDIR, nil
}

// DirEntry is one entry of a btrfs directory: its name, the key of what it
// names (an inode, or a subvolume's root item) and its type (BTRFS_FT_*).
type DirEntry struct {
	Name    string
	Object  uint64
	KeyType uint8
	Type    uint8
}

// btrfsDirIndexKey keys a directory's entries in the order they were
// made, one item each: struct btrfs_dir_item (the location key, transid,
// data_len, name_len, type), then the name.
const (
	btrfsDirIndexKey = 96
	dirItemSize      = 30
)

// DirEntries returns the entries of directory dir in subvolume tree of the
// btrfs holding f (0: the subvolume holding f), sorted by name. It
// searches that subvolume's tree, which needs CAP_SYS_ADMIN; otherwise the
// error wraps ErrNoTreeSearch.
func DirEntries(f *os.File, tree, dir uint64) ([]DirEntry, error) {
	args := searchArgsPool.Get().(*searchArgs)
	defer searchArgsPool.Put(args)
	le := binary.LittleEndian
	var out []DirEntry
	off := uint64(0)
	for {
		args.key = searchKey{
			treeID:      tree,
			minObjectID: dir,
			maxObjectID: dir,
			minOffset:   off,
			maxOffset:   ^uint64(0),
			maxTransID:  ^uint64(0),
			minType:     btrfsDirIndexKey,
			maxType:     btrfsDirIndexKey,
			nrItems:     ^uint32(0),
		}
		last, seen := uint64(0), false
		_, room, err := search(f, args, func(h searchHeader, item []byte) error {
			if h.objectID != dir || h.typ != btrfsDirIndexKey {
				return nil
			}
			last, seen = h.offset, true
			if len(item) < dirItemSize {
				return fmt.Errorf("fiemap: entry %d of directory %d: %d bytes", h.offset, dir, len(item))
			}
			n := int(le.Uint16(item[27:]))
			if len(item) < dirItemSize+n {
				return fmt.Errorf("fiemap: entry %d of directory %d: %d bytes for a name of %d", h.offset, dir, len(item), n)
			}
			out = append(out, DirEntry{Name: string(item[dirItemSize : dirItemSize+n]), Object: le.Uint64(item[0:]), KeyType: item[8], Type: item[29]})
			return nil
		})
		if err != nil {
			return nil, err
		}
		// The kernel stops when the next item does not fit: with room
		// for an entry of the longest name left, none was left out.
		if !seen || last == ^uint64(0) || room >= searchHeaderSize+dirItemSize+255 {
			slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
			return out, nil
		}
		off = last + 1
	}
}
