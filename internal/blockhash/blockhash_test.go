package blockhash

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

func TestHash(t *testing.T) {
	const bs = 4096
	a := bytes.Repeat([]byte("a"), bs)
	zero := make([]byte, bs)
	tail := []byte("tail")
	sum := func(b []byte) uint64 { d := sha256.Sum256(b); return binary.LittleEndian.Uint64(d[:]) }
	tests := []struct {
		name string
		data []byte
		want []uint64
	}{
		{"empty", nil, nil},
		{"one block", a, []uint64{sum(a)}},
		{"zero block", zero, []uint64{Zero}},
		{"partial tail", append(append([]byte{}, a...), tail...), []uint64{sum(a), sum(tail)}},
		{"zero then data", append(append([]byte{}, zero...), a...), []uint64{Zero, sum(a)}},
		{"spans buffers", bytes.Repeat(a, 300), func() []uint64 {
			w := make([]uint64, 300)
			for i := range w {
				w[i] = sum(a)
			}
			return w
		}()},
	}
	r, err := NewReader(bs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sums, n, err := r.Hash(bytes.NewReader(tt.data), nil)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tt.data)) {
				t.Errorf("Hash read %d bytes; want %d", n, len(tt.data))
			}
			var got []uint64
			for i := 0; i < len(sums)/SumSize; i++ {
				got = append(got, At(sums, i))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Hash = %x; want %x", got, tt.want)
			}
		})
	}
}

func TestCheckBlockSize(t *testing.T) {
	for _, tt := range []struct {
		bs int
		ok bool
	}{{4096, true}, {131072, true}, {16 << 20, true}, {2048, false}, {5000, false}, {32 << 20, false}} {
		if err := CheckBlockSize(tt.bs); (err == nil) != tt.ok {
			t.Errorf("CheckBlockSize(%d) = %v; want ok=%v", tt.bs, err, tt.ok)
		}
	}
}

// BenchmarkSum measures single-core block hashing; compare with
// BenchmarkStdlib, which is the SHA-NI limit where the CPU has it.
func BenchmarkSum(b *testing.B) {
	for _, bs := range []int{4096, 131072} {
		buf := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, bs/8)
		b.Run(fmt.Sprint(bs), func(b *testing.B) {
			b.SetBytes(int64(bs))
			for b.Loop() {
				Sum(buf)
			}
		})
	}
}

func BenchmarkStdlib(b *testing.B) {
	for _, bs := range []int{4096, 131072} {
		buf := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, bs/8)
		b.Run(fmt.Sprint(bs), func(b *testing.B) {
			b.SetBytes(int64(bs))
			for b.Loop() {
				sha256.Sum256(buf)
			}
		})
	}
}

func BenchmarkHashParallel(b *testing.B) {
	const bs = 131072
	buf := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, bs/8)
	b.SetBytes(bs)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			Sum(buf)
		}
	})
}
