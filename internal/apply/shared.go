package apply

import (
	"os"

	"same/internal/fiemap"
)

// notProven are the extents whose FIEMAP physical offset does not say
// where each byte lies (compressed: the extent's start for all of it) or
// that hold no shareable data yet.
const notProven = fiemap.FlagEncoded | fiemap.FlagDataInline | fiemap.FlagUnwritten |
	fiemap.FlagDelalloc | fiemap.FlagUnknown | fiemap.FlagNotAligned | fiemap.FlagDataEncrypted

// sharesStorage reports whether the n bytes at doff of the file with
// extents dext already lie, byte for byte, where the n bytes at soff of
// the file with extents sext lie: they share storage, and the kernel's
// compare, which would read both ranges, can be spared (a plan applied
// again, say). It says false when FIEMAP cannot prove it.
func sharesStorage(sext []fiemap.Extent, soff int64, dext []fiemap.Extent, doff, n int64) bool {
	for pos := int64(0); pos < n; {
		se, ok := fiemap.At(sext, soff+pos)
		if !ok || se.Flags&notProven != 0 {
			return false
		}
		de, ok := fiemap.At(dext, doff+pos)
		if !ok || de.Flags&notProven != 0 {
			return false
		}
		if se.Physical+(soff+pos-se.Logical) != de.Physical+(doff+pos-de.Logical) {
			return false
		}
		pos += min(se.End()-(soff+pos), de.End()-(doff+pos))
	}
	return n > 0
}

// extentsIn returns f's FIEMAP extents holding the n bytes at off, or nil
// when they cannot be read.
func extentsIn(f *os.File, off, n int64) []fiemap.Extent {
	ext, err := fiemap.ExtentsIn(f, off, n)
	if err != nil {
		return nil
	}
	return ext
}
