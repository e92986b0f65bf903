package fiemap

import "errors"

// Extent flags, from linux/fiemap.h.
const (
	FlagLast          = 0x0001
	FlagUnknown       = 0x0002
	FlagDelalloc      = 0x0004
	FlagEncoded       = 0x0008
	FlagDataEncrypted = 0x0080
	FlagNotAligned    = 0x0100
	FlagDataInline    = 0x0200
	FlagDataTail      = 0x0400
	FlagUnwritten     = 0x0800
	FlagMerged        = 0x1000
	FlagShared        = 0x2000
)

// Extent is one mapped range of a file, in bytes.
type Extent struct {
	Logical  int64
	Physical int64
	Length   int64
	Flags    uint32
}

// End is the file offset just past the extent.
func (e Extent) End() int64 { return e.Logical + e.Length }

// ErrUnsupported is returned where the platform or filesystem has no FIEMAP.
var ErrUnsupported = errors.New("fiemap: not supported")
