package blockhash

import (
	"encoding/binary"
	"sync"
	"time"

	sha256 "github.com/minio/sha256-simd"
)

// lanes hashes 16 blocks of one size at once, each in a lane of the
// CPU's AVX-512 registers: on CPUs that have them, several times faster
// a core than SHA-NI hashing one block after another (see useLanes).
// Blocks wait in a batch until 16 are there or the caller flushes.
type lanes struct {
	bs      int
	init    [512]byte  // SHA-256's initial state in every lane
	state   [512]byte  // the lanes' state during a batch
	mask    []uint64   // every lane in every round of a block
	pad     [16][]byte // the padding block of a bs-byte message, per lane
	padMask []uint64
	in      [16][]byte
	at      [16]int // where each block's Sum goes in the caller's sums
	n       int
}

// minLanes is the fewest blocks worth hashing in lanes: a batch takes as
// long whatever its number of blocks, about as long as 6 blocks one
// after another.
const minLanes = 8

func newLanes(bs int) *lanes {
	l := &lanes{bs: bs, mask: make([]uint64, bs/64), padMask: []uint64{0xffff}}
	h0 := [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}
	for w, v := range h0 {
		for i := range 16 {
			binary.LittleEndian.PutUint32(l.init[(i+16*w)*4:], v)
		}
	}
	for i := range l.mask {
		l.mask[i] = 0xffff
	}
	pad := make([]byte, 64)
	pad[0] = 0x80
	binary.BigEndian.PutUint64(pad[56:], uint64(bs)*8)
	for i := range l.pad {
		l.pad[i] = pad
	}
	return l
}

// add queues block b, whose Sum goes at sums[at:], hashing the batch
// into sums when it is full. b must be bs bytes, not all zero.
func (l *lanes) add(b []byte, at int, sums []byte) {
	l.in[l.n], l.at[l.n] = b, at
	if l.n++; l.n == 16 {
		l.flush(sums)
	}
}

// flush hashes the blocks queued into sums: in lanes if there are
// enough of them, else one after another.
func (l *lanes) flush(sums []byte) {
	if l.n < minLanes {
		for k := range l.n {
			binary.LittleEndian.PutUint64(sums[l.at[k]:], Sum(l.in[k]))
		}
	} else {
		for k := l.n; k < 16; k++ {
			l.in[k] = l.in[0] // hashed again, and not used
		}
		out := runLanes(l, &l.in)
		for k := range l.n {
			copy(sums[l.at[k]:], out[k][:SumSize])
		}
	}
	clear(l.in[:])
	l.n = 0
}

// useLanes reports whether hashing in lanes is faster here than one block
// after another: where the CPU has AVX-512 and, timed once at 4 KiB, the
// lanes hash at least a tenth faster (so on CPUs where wide registers
// slow the clock or run at half width, SHA-NI stays).
var useLanes = sync.OnceValue(func() bool {
	if !hasLanes {
		return false
	}
	const bs = 4096
	l := newLanes(bs)
	var in [16][]byte
	buf := make([]byte, 16*bs)
	for i := range buf {
		buf[i] = byte(i*7 + i>>12)
	}
	for i := range in {
		in[i] = buf[i*bs : (i+1)*bs]
	}
	best := func(f func()) time.Duration {
		var low time.Duration
		for range 5 {
			t := time.Now()
			f()
			if d := time.Since(t); low == 0 || d < low {
				low = d
			}
		}
		return low
	}
	var lanesTime, oneTime time.Duration
	for range 3 { // in turn, so that a busy moment costs both alike
		lanesTime = best(func() { runLanes(l, &in) })
		oneTime = best(func() {
			for _, b := range in {
				sha256.Sum256(b)
			}
		})
		if lanesTime*10 < oneTime*9 {
			return true
		}
	}
	return false
})
