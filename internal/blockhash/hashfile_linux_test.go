package blockhash

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// HashFile gives the Sums Hash gives, on both sides of aheadMin and across
// windows, with a partial last block.
func TestHashFileMatchesHash(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 5000, aheadMin - 1, aheadMin, aheadWindow, aheadWindow + 3*4096 + 17, 2*aheadWindow + 5<<20} {
		for _, bs := range []int{4096, 128 << 10} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			if size > 3*bs {
				clear(data[bs : 2*bs]) // a zero block
			}
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, _ := NewReader(bs)
			want, _, err := r.Hash(bytes.NewReader(data), nil)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			got, n, err := r.HashFile(context.Background(), f, int64(size), nil)
			f.Close()
			if err != nil || n != int64(size) || !bytes.Equal(got, want) {
				t.Errorf("size %d, block %d: HashFile = %d sums, %d bytes, %v; want %d sums, %d bytes", size, bs, len(got)/SumSize, n, err, len(want)/SumSize, size)
			}
		}
	}
}

// A file that shrinks while it is read gives ErrShrunk (the caller's
// second fstat would tell too).
func TestHashFileShrunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _ := NewReader(4096)
	r.Progress = func(int64, int64) {
		if err := os.Truncate(path, 1<<20+4096); err != nil {
			t.Fatal(err)
		}
	}
	if _, n, err := r.HashFile(context.Background(), f, 3<<20, nil); !errors.Is(err, ErrShrunk) || n != 1<<20 {
		t.Fatalf("HashFile of a file that shrank: %d bytes, %v; want 1048576 bytes, ErrShrunk", n, err)
	}
}

// Holes are zero blocks, never read; zero blocks at the end are left out.
// A 1 TiB file holding 4 MiB of data is hashed without reading its holes
// (reading them would take minutes), and its Sums stop at its last data
// block.
func TestHashFileSparse(t *testing.T) {
	const bs = 4096
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	type piece struct {
		off  int64
		data []byte
	}
	tests := []struct {
		name   string
		size   int64
		pieces []piece
	}{
		{"all hole", 1 << 40, nil},
		{"data then hole", 1 << 40, []piece{{0, random(3 << 20)}, {5 << 30, random(1 << 20)}}},
		{"hole then data", 64 << 20, []piece{{40 << 20, random(3*bs + 100)}}},
		{"data in a block partly hole", 3*bs + 10, []piece{{bs + 100, []byte("x")}}},
		{"written zeros at the end", 2<<20 + 5, []piece{{0, random(bs)}, {bs, make([]byte, 2<<20+5-bs)}}},
		{"partial tail of data", 1<<20 + 17, []piece{{1 << 20, random(17)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sparse")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tt.size); err != nil {
				t.Skipf("cannot make a %d-byte sparse file here: %v", tt.size, err)
			}
			want := make(map[int64]uint64) // block -> Sum, where not zero
			for _, p := range tt.pieces {
				if _, err := f.WriteAt(p.data, p.off); err != nil {
					t.Fatal(err)
				}
			}
			last := int64(-1)
			for _, p := range tt.pieces {
				for b := p.off / bs; b*bs < p.off+int64(len(p.data)); b++ {
					blk := make([]byte, min(bs, tt.size-b*bs))
					if _, err := f.ReadAt(blk, b*bs); err != nil {
						t.Fatal(err)
					}
					if s := Sum(blk); s != Zero {
						want[b] = s
						last = max(last, b)
					}
				}
			}
			r, _ := NewReader(bs)
			var covered, read int64
			r.Progress = func(n, skipped int64) { covered += n + skipped; read += n }
			prefix := []byte("12345678")
			sums, n, err := r.HashFile(context.Background(), f, tt.size, prefix)
			if err != nil || n != tt.size || covered != tt.size {
				t.Fatalf("HashFile = %d bytes (progress %d), %v; want %d", n, covered, err, tt.size)
			}
			if read > 8<<20 {
				t.Errorf("HashFile read %d bytes; want only the data, at most 8 MiB", read)
			}
			if !bytes.Equal(sums[:SumSize], prefix) {
				t.Fatalf("HashFile changed the Sums it appends to")
			}
			sums = sums[SumSize:]
			if got := int64(len(sums) / SumSize); got != last+1 {
				t.Fatalf("HashFile gave %d Sums; want %d (up to the last data block)", got, last+1)
			}
			for b := range last + 1 {
				if got := At(sums, int(b)); got != want[b] {
					t.Errorf("Sum of block %d = %#x; want %#x", b, got, want[b])
				}
			}
		})
	}
}

// A cancelled context stops HashFile between reads: after the first read
// of a file of four windows, it returns with that read hashed.
func TestHashFileCancel(t *testing.T) {
	const windows = 4
	path := filepath.Join(t.TempDir(), "f")
	data := make([]byte, windows*aheadWindow)
	for i := 0; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], uint64(i)|1)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, hole := range []bool{false, true} {
		t.Run(fmt.Sprint("hole first=", hole), func(t *testing.T) {
			size := int64(len(data))
			if hole {
				// The same file behind a hole, so cancelling also works
				// after a skipped hole.
				p := filepath.Join(t.TempDir(), "g")
				g, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				if _, err := g.WriteAt(data, 1<<30); err != nil {
					t.Fatal(err)
				}
				f, size = g, 1<<30+int64(len(data))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, _ := NewReader(4096)
			calls := 0
			r.Progress = func(int64, int64) {
				calls++
				cancel()
			}
			_, n, err := r.HashFile(ctx, f, size, nil)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("HashFile after cancel = %v; want context.Canceled", err)
			}
			if calls != 1 || n >= size {
				t.Errorf("HashFile covered %d of %d bytes in %d steps after cancel; want 1 step", n, size, calls)
			}
		})
	}
}
