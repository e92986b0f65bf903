package blockhash

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// HashFile gives the Sums Hash gives, on both sides of mapMin and across
// windows, with a partial last block.
func TestHashFileMatchesHash(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 5000, mapMin - 1, mapMin, mapWindow, mapWindow + 3*4096 + 17} {
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
			got, n, err := r.HashFile(f, int64(size), nil)
			f.Close()
			if err != nil || n != int64(size) || !bytes.Equal(got, want) {
				t.Errorf("size %d, block %d: HashFile = %d sums, %d bytes, %v; want %d sums, %d bytes", size, bs, len(got)/SumSize, n, err, len(want)/SumSize, size)
			}
		}
	}
}

// A page past the end of a file that shrank raises SIGBUS when touched;
// sumMapped turns it into ErrShrunk instead of a crash.
func TestSumMappedShrunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 3*4096), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, 3*4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	r, _ := NewReader(4096)
	if _, err := r.sumMapped(m, nil); !errors.Is(err, ErrShrunk) {
		t.Fatalf("sumMapped of a truncated mapping: %v; want ErrShrunk", err)
	}
}
