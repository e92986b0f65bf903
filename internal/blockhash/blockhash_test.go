package blockhash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
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

// HashRange gives the sums Hash gives for the same bytes, whole blocks or
// up to the end of the file, and says when the file is shorter.
func TestHashRange(t *testing.T) {
	const bs = 4096
	data := make([]byte, 3<<20+100)
	for i := range data {
		data[i] = byte(i * 7 / 13)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(bs)
	if err != nil {
		t.Fatal(err)
	}
	for _, rg := range []struct{ off, n int64 }{{0, 2 * bs}, {bs, 3<<20 - bs}, {3 << 20, 100}, {1 << 20, int64(len(data)) - 1<<20}} {
		got, n, err := r.HashRange(context.Background(), f, rg.off, rg.n, nil)
		want, _, _ := r.Hash(bytes.NewReader(data[rg.off:rg.off+rg.n]), nil)
		if err != nil || n != rg.n || !bytes.Equal(got, want) {
			t.Errorf("HashRange(%d, %d) = %d sums, %d bytes, %v; want %d sums, %d bytes", rg.off, rg.n, len(got)/SumSize, n, err, len(want)/SumSize, rg.n)
		}
	}
	if _, _, err := r.HashRange(context.Background(), f, 3<<20, 2*bs, nil); err != ErrShrunk {
		t.Errorf("HashRange past EOF: %v; want %v", err, ErrShrunk)
	}
}
