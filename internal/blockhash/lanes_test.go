package blockhash

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestLanes: hashed in lanes, and one block after another, the Sums are
// SHA-256's, block for block, whatever the number of blocks (batches
// full or not, fewer than minLanes), the zero blocks among them and a
// partial last block, at 4 KiB and at 128 KiB.
func TestLanes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mode := range []string{"lanes", "one"} {
		for _, bs := range []int{4096, 131072} {
			for _, n := range []int{1, 7, 8, 15, 16, 17, 31, 33, 300} {
				t.Run(fmt.Sprintf("%s/%d/%d", mode, bs, n), func(t *testing.T) {
					if mode == "lanes" && !hasLanes {
						t.Skip("this CPU has no AVX-512")
					}
					data := make([]byte, n*bs+bs/3)
					for i := range n {
						if i%5 != 3 { // every fifth block zero
							for j := i * bs; j < (i+1)*bs; j += 8 {
								binary.LittleEndian.PutUint64(data[j:], rng.Uint64())
							}
						}
					}
					copy(data[n*bs:], "a partial last block")
					r := &Reader{bs: bs, buf: make([]byte, 1<<20/bs*bs+bs)}
					if mode == "lanes" {
						r.lanes = newLanes(bs)
					}
					got, _, err := r.Hash(bytes.NewReader(data), []byte("before"))
					if err != nil {
						t.Fatal(err)
					}
					want := []byte("before")
					for off := 0; off < len(data); off += bs {
						b := data[off:min(off+bs, len(data))]
						s := Zero
						if !isZero(b) {
							d := sha256.Sum256(b)
							s = binary.LittleEndian.Uint64(d[:])
						}
						want = binary.LittleEndian.AppendUint64(want, s)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("Sums differ from SHA-256's:\n got %x\nwant %x", got, want)
					}
				})
			}
		}
	}
}

// BenchmarkReader hashes 4 MiB of data, no block zero, one block after
// another and in lanes (where the CPU has them): single-core throughput.
func BenchmarkReader(b *testing.B) {
	for _, bs := range []int{4096, 131072} {
		data := make([]byte, 4<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>12 + 1)
		}
		for _, mode := range []string{"one", "lanes"} {
			b.Run(fmt.Sprintf("%s/%d", mode, bs), func(b *testing.B) {
				r := &Reader{bs: bs, buf: make([]byte, 1<<20)}
				if mode == "lanes" {
					if !useLanes() {
						b.Skip("lanes are not used on this CPU")
					}
					var err error
					if r, err = NewReader(bs); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(len(data)))
				sums := make([]byte, 0, len(data)/bs*SumSize)
				for b.Loop() {
					sums, _, _ = r.Hash(bytes.NewReader(data), sums[:0])
				}
			})
		}
	}
}
