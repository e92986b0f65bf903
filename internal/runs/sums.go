package runs

import (
	"context"
	"hash"

	"same/internal/blockhash"
	"same/internal/index"
)

// sumReader reads the sums of ranges of files, a chunk of the index at a
// time, keeping the chunk it read last: bridge and lines ask along runs,
// in order, and reading a file's sums whole for each run (or each file
// paired with it) made them grow with the files' sizes, not the runs'.
//
// Files whose sums are held in memory already (regroup read them whole:
// after a small change, most destinations) are read from there.
type sumReader struct {
	ctx   context.Context
	ix    *index.Index
	rd    *index.SumsReader // opened at the first chunk read from the index
	held  heldSums
	id    int64 // the file of chunk, or -1
	c     int
	chunk []byte
	buf   []byte // what the index last read into
}

// heldSums are the sums of files by id, as index.Sums gives them.
type heldSums map[int64][]byte

func newSumReader(ctx context.Context, ix *index.Index, held heldSums) *sumReader {
	return &sumReader{ctx: ctx, ix: ix, held: held, id: -1}
}

// load makes chunk c of file id the one held. A chunk the index does not
// hold is of zero blocks.
func (r *sumReader) load(id int64, c int) error {
	if r.id == id && r.c == c {
		return nil
	}
	if sums, ok := r.held[id]; ok {
		const chunkBytes = index.ChunkBlocks * blockhash.SumSize
		lo := min(len(sums), c*chunkBytes)
		r.id, r.c, r.chunk = id, c, sums[lo:min(len(sums), lo+chunkBytes)]
		return nil
	}
	if r.rd == nil {
		rd, err := r.ix.SumsReader(r.ctx)
		if err != nil {
			return err
		}
		r.rd = rd
	}
	b, err := r.rd.ChunkTo(id, c, r.buf)
	if err != nil {
		return err
	}
	r.id, r.c, r.chunk, r.buf = id, c, b, b
	return nil
}

// close ends the read of the index, if one began.
func (r *sumReader) close() {
	if r.rd != nil {
		r.rd.Close()
		r.rd = nil
	}
}

// zero reports whether blocks [from, from+n) of file id are all zero.
func (r *sumReader) zero(id, from, n int64) (bool, error) {
	for b := from; b < from+n; {
		c := int(b / index.ChunkBlocks)
		if err := r.load(id, c); err != nil {
			return false, err
		}
		end := min(from+n, int64(c+1)*index.ChunkBlocks)
		held := int64(len(r.chunk) / blockhash.SumSize)
		for i := b - int64(c)*index.ChunkBlocks; i < end-int64(c)*index.ChunkBlocks && i < held; i++ {
			if blockhash.At(r.chunk, int(i)) != blockhash.Zero {
				return false, nil
			}
		}
		b = end
	}
	return true, nil
}

// zeroSums are the sums hash writes for blocks the index does not hold,
// a piece at a time. Declared in hash, the array escaped (h.Write takes
// a slice of it through an interface) and was allocated for every line:
// 4 KiB each, 9 GB for 2.2 million lines, collected at a tenth.
var zeroSums [4096]byte

// hash writes the sums of blocks [first, first+n) of file id to h, zero
// sums for blocks the index does not hold (see index.Sums).
func (r *sumReader) hash(h hash.Hash, id, first, n int64) error {
	for b := first; b < first+n; {
		c := int(b / index.ChunkBlocks)
		if err := r.load(id, c); err != nil {
			return err
		}
		base := int64(c) * index.ChunkBlocks
		end := min(first+n, base+index.ChunkBlocks)
		lo, hi := (b-base)*blockhash.SumSize, (end-base)*blockhash.SumSize
		if have := int64(len(r.chunk)); lo < have {
			h.Write(r.chunk[lo:min(hi, have)])
			lo = min(hi, have)
		}
		for lo < hi {
			k := min(hi-lo, int64(len(zeroSums)))
			h.Write(zeroSums[:k])
			lo += k
		}
		b = end
	}
	return nil
}
