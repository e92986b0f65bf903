package fiemap

import (
	"errors"
	"fmt"
	"os"
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
	var out []Extent
	var req request
	start := uint64(0)
	for {
		req.h = header{start: start, length: ^uint64(0) - start, flags: flagSync, extentCount: batch}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&req)))
		if errno != 0 {
			if errors.Is(errno, unix.EOPNOTSUPP) || errors.Is(errno, unix.ENOTTY) {
				return nil, ErrUnsupported
			}
			return nil, fmt.Errorf("fiemap: %w", errno)
		}
		n := int(req.h.mappedExtents)
		if n == 0 {
			return out, nil
		}
		for _, r := range req.ext[:n] {
			out = append(out, Extent{
				Logical:  int64(r.logical),
				Physical: int64(r.physical),
				Length:   int64(r.length),
				Flags:    r.flags,
			})
		}
		last := req.ext[n-1]
		if last.flags&FlagLast != 0 {
			return out, nil
		}
		start = last.logical + last.length
	}
}
