package blockhash

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"

	"github.com/klauspost/cpuid/v2"
	sha256 "github.com/minio/sha256-simd"
)

// SumSize is the number of bytes stored per block.
const SumSize = 8

// Zero is the Sum of an all-zero block.
const Zero = uint64(0)

// MinBlockSize and MaxBlockSize bound the block sizes the index accepts.
const (
	MinBlockSize = 4096
	MaxBlockSize = 16 << 20
)

// Sum returns the stored digest of one block.
func Sum(block []byte) uint64 {
	if isZero(block) {
		return Zero
	}
	d := sha256.Sum256(block)
	return binary.LittleEndian.Uint64(d[:8])
}

// At returns the Sum of block i in sums, a packed array of Sums.
func At(sums []byte, i int) uint64 {
	return binary.LittleEndian.Uint64(sums[i*SumSize:])
}

var zeros [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if string(b[:n]) != string(zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// Reader hashes a stream block by block into packed Sums, reusing its
// buffer between files. A Reader is not safe for concurrent use.
type Reader struct {
	bs    int
	buf   []byte
	lanes *lanes // nil where hashing in lanes is not faster (useLanes)
	// Progress, if set, is called by HashFile as it goes, a window at a
	// time, with the bytes it has just read, or found to be a hole and
	// skipped.
	Progress func(read, skipped int64)
}

// NewReader returns a Reader for blockSize-byte blocks.
func NewReader(blockSize int) (*Reader, error) {
	if err := CheckBlockSize(blockSize); err != nil {
		return nil, err
	}
	n := max(blockSize, 1<<20) / blockSize * blockSize
	var l *lanes
	if useLanes() {
		// A buffer holds a whole batch of blocks, up to 16 MiB: a batch
		// takes as long however few its blocks.
		l, n = newLanes(blockSize), max(n, min(16*blockSize, 16<<20))
	}
	return &Reader{bs: blockSize, buf: make([]byte, n), lanes: l}, nil
}

// CheckBlockSize reports whether bs is a usable block size: a power of two
// from 4 KiB to 16 MiB.
func CheckBlockSize(bs int) error {
	if bs < MinBlockSize || bs > MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d: want a power of two from 4KiB to 16MiB", bs)
	}
	return nil
}

// sum appends the Sum of each block of b to sums: in lanes, where the
// Reader has them, the full blocks that are not zero.
func (h *Reader) sum(b []byte, sums []byte) []byte {
	// The blocks queued in lanes say where their Sums go: sums grows
	// once, here, and is not moved while they wait.
	sums = slices.Grow(sums, (len(b)+h.bs-1)/h.bs*SumSize)
	for off := 0; off < len(b); off += h.bs {
		block := b[off:min(off+h.bs, len(b))]
		at := len(sums)
		sums = sums[:at+SumSize]
		if h.lanes != nil && len(block) == h.bs && !isZero(block) {
			h.lanes.add(block, at, sums)
		} else {
			binary.LittleEndian.PutUint64(sums[at:], Sum(block))
		}
	}
	if h.lanes != nil {
		h.lanes.flush(sums)
	}
	return sums
}

// appendZero appends n zero Sums to sums, and makes room for more bytes
// after them. Where sums must grow, the new slice is made, not appended to:
// memory fresh from the kernel is zero, so the pages of a long run of zero
// Sums are not even touched.
func appendZero(sums []byte, n int64, more int) []byte {
	k := int(n) * SumSize
	if cap(sums)-len(sums) < k+more {
		grown := make([]byte, len(sums)+k, max(len(sums)+k+more, 2*cap(sums)))
		copy(grown, sums)
		return grown
	}
	sums = sums[:len(sums)+k]
	clear(sums[len(sums)-k:])
	return sums
}

// trimZero drops the zero Sums at the end of sums, down to len base.
func trimZero(sums []byte, base int) []byte {
	n := len(sums)
	for n > base && At(sums[:n], n/SumSize-1) == Zero {
		n -= SumSize
	}
	return sums[:n]
}

// Path names the SHA-256 implementation hashfile runs on this CPU:
// AVX-512, 16 blocks at once, where the CPU has it and it is faster than
// one block after another (see useLanes), with SHA-NI or Go's standard
// library for the blocks that come alone; else SHA-NI or ARMv8 SHA2
// instructions where present (sha256-simd), else Go's standard library,
// which uses AVX2 on amd64 CPUs that have it.
func Path() string {
	one := func() string {
		switch {
		case runtime.GOARCH == "amd64" && cpuid.CPU.Supports(cpuid.SHA, cpuid.SSSE3, cpuid.SSE4):
			return "SHA-NI"
		case runtime.GOARCH == "arm64" && cpuid.CPU.Has(cpuid.SHA2):
			return "ARMv8 SHA2"
		case runtime.GOARCH == "amd64" && cpuid.CPU.Supports(cpuid.AVX2, cpuid.BMI2):
			return "AVX2 (Go standard library)"
		default:
			return "generic (Go standard library)"
		}
	}
	if useLanes() {
		return "AVX-512, 16 blocks at once (" + one() + " for the rest)"
	}
	return one()
}

// BlockSize is the size of the blocks h hashes.
func (h *Reader) BlockSize() int { return h.bs }

// HashRange appends the Sums of the n bytes of f at off, read with pread:
// off is a multiple of the block size, and so is n unless the range ends
// at the end of the file. It returns the appended slice and the bytes
// read; ctx is checked between reads of the Reader's buffer.
func (h *Reader) HashRange(ctx context.Context, f *os.File, off, n int64, sums []byte) ([]byte, int64, error) {
	var done int64
	for done < n {
		if err := ctx.Err(); err != nil {
			return sums, done, err
		}
		b := h.buf[:min(int64(len(h.buf)), n-done)]
		got, err := f.ReadAt(b, off+done)
		if got < len(b) {
			if err == nil || err == io.EOF {
				err = ErrShrunk
			}
			return sums, done, err
		}
		sums = h.sum(b, sums)
		done += int64(got)
		if h.Progress != nil {
			h.Progress(int64(got), 0)
		}
	}
	return sums, done, nil
}
