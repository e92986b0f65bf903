//go:build amd64

package blockhash

import (
	_ "unsafe" // go:linkname

	"github.com/klauspost/cpuid/v2"
	_ "github.com/minio/sha256-simd" // blockAvx512, below
)

// blockAvx512 is sha256-simd's SHA-256 of 16 messages at once in AVX-512
// registers, one lane each, which it exports only behind a server of
// goroutines and channels that costs more than the hashing of a 4 KiB
// block. It runs input[i] through lane i from the state in digests
// (word w of lane i as a little-endian uint32 at (i+16w)*4), 64 bytes a
// round, a lane taking part in a round where that round's mask has its
// bit; it leaves the new state in digests and returns each lane's as
// SHA-256 writes a digest. The inputs must be whole 64-byte blocks, so
// the padding is a second call.
//
//go:linkname blockAvx512 github.com/minio/sha256-simd.blockAvx512
func blockAvx512(digests *[512]byte, input [16][]byte, mask []uint64) [16][32]byte

// hasLanes says the CPU has what blockAvx512 needs (sha256-simd's own
// test).
var hasLanes = cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ, cpuid.AVX512BW, cpuid.AVX512VL)

func runLanes(l *lanes, in *[16][]byte) [16][32]byte {
	l.state = l.init // in l, which is on the heap already: no allocation
	blockAvx512(&l.state, *in, l.mask)
	return blockAvx512(&l.state, l.pad, l.padMask)
}
