package index

import (
	"context"
	"database/sql"
	"fmt"

	"same/internal/blockhash"
	"same/internal/fiemap"
)

// Sums returns the packed block sums of one file. They stop at its last
// block that is not zero: the blocks after them are zero (see Tx.Put).
func (ix *Index) Sums(ctx context.Context, file int64) ([]byte, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT chunk, hashes FROM blocks WHERE file = ? ORDER BY chunk", file)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	defer rows.Close()
	var sums []byte
	for rows.Next() {
		var chunk int
		var part []byte
		if err := rows.Scan(&chunk, &part); err != nil {
			return nil, fmt.Errorf("read blocks: %w", err)
		}
		if at := chunk * ChunkBlocks * blockhash.SumSize; len(sums) < at {
			sums = append(sums, make([]byte, at-len(sums))...) // zero chunks are not stored
		}
		sums = append(sums, part...)
	}
	return sums, rows.Err()
}

// ScanSums calls fn for every chunk of block sums in the index, in (file,
// chunk) order; first is the index of the chunk's first block in its file.
// Chunks of zero blocks, and the zero blocks at the end of a file, may be
// missing (see Tx.Put).
// sums is only valid during the call.
func (ix *Index) ScanSums(ctx context.Context, fn func(file int64, first int, sums []byte) error) error {
	rows, err := ix.db.QueryContext(ctx, "SELECT file, chunk, hashes FROM blocks ORDER BY file, chunk")
	if err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var file int64
		var chunk int
		var sums sql.RawBytes // no copy: fn may not keep sums anyway
		if err := rows.Scan(&file, &chunk, &sums); err != nil {
			return fmt.Errorf("read blocks: %w", err)
		}
		if err := fn(file, chunk*ChunkBlocks, sums); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanExtents calls fn for every extent in the index, in (file, logical)
// order.
func (ix *Index) ScanExtents(ctx context.Context, fn func(file int64, e fiemap.Extent) error) error {
	rows, err := ix.db.QueryContext(ctx, "SELECT file, logical, physical, length, flags, disk_start, disk_len FROM extents ORDER BY file, logical")
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	r := newRow()
	for rows.Next() {
		if err := r.scan(rows, 7); err != nil {
			return fmt.Errorf("read extents: %w", err)
		}
		e := fiemap.Extent{Logical: r.int64(1), Physical: r.int64(2), Length: r.int64(3),
			Flags: uint32(r.int64(4)), DiskStart: r.int64(5), DiskLen: r.int64(6)}
		if r.err != nil {
			return fmt.Errorf("read extents: %w", r.err)
		}
		if err := fn(r.int64(0), e); err != nil {
			return err
		}
	}
	return rows.Err()
}
