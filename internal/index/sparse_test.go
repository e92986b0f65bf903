package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	"same/internal/blockhash"
	"same/internal/fsys"
)

// Chunks of zero sums are not stored, and Sums puts them back; the zero
// sums at the end of a file are neither stored nor given back.
func TestSparseSums(t *testing.T) {
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.UseBlockSize(4096); err != nil {
		t.Fatal(err)
	}
	// Chunk 0 holds a sum at its start, chunk 1 is all zero, chunk 2 holds
	// a sum in its middle and zeros after it.
	sums := make([]byte, 3*ChunkBlocks*blockhash.SumSize)
	binary.LittleEndian.PutUint64(sums, 7)
	binary.LittleEndian.PutUint64(sums[(2*ChunkBlocks+10)*blockhash.SumSize:], 9)
	tx, err := ix.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, err := tx.Put(File{Path: "/f", Identity: fsys.Identity{Vol: fsys.Volume{FS: "f1"}, Ino: 2, Size: 1 << 40}}, sums, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var chunks []int
	err = ix.ScanSums(context.Background(), func(_ []int64, first int, _ []byte) error {
		chunks = append(chunks, first/ChunkBlocks)
		return nil
	})
	if err != nil || len(chunks) != 2 || chunks[0] != 0 || chunks[1] != 2 {
		t.Errorf("chunks stored: %v, %v; want [0 2]", chunks, err)
	}
	got, err := ix.Sums(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sums[:len(got)]) || !bytes.Equal(sums[len(got):], make([]byte, len(sums)-len(got))) {
		t.Errorf("Sums gave %d bytes that are not the sums put, up to zeros at the end", len(got))
	}
	if want := (2*ChunkBlocks + 11) * blockhash.SumSize; len(got) < want {
		t.Errorf("Sums gave %d bytes; want at least %d", len(got), want)
	}
}
