package index

import (
	"context"
	"fmt"

	"same/internal/fiemap"
)

// ScanDiskExtents calls fn for every recorded reference to a btrfs disk
// extent whose key is known (fiemap.Extent's DiskStart, DiskLen and Gen),
// the references to one disk extent one after another.
func (ix *Index) ScanDiskExtents(ctx context.Context, fn func(file int64, e fiemap.Extent) error) error {
	rows, err := ix.db.QueryContext(ctx, `SELECT file, logical, physical, length, flags, disk_start, disk_len, gen, ext_off
		FROM extents WHERE gen != 0 ORDER BY disk_start, disk_len, gen`)
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	r := newRow()
	for rows.Next() {
		if err := r.scan(rows, 9); err != nil {
			return fmt.Errorf("read extents: %w", err)
		}
		e := fiemap.Extent{Logical: r.int64(1), Physical: r.int64(2), Length: r.int64(3),
			Flags: uint32(r.int64(4)), DiskStart: r.int64(5), DiskLen: r.int64(6), Gen: r.int64(7), Offset: r.int64(8)}
		if r.err != nil {
			return fmt.Errorf("read extents: %w", r.err)
		}
		if err := fn(r.int64(0), e); err != nil {
			return err
		}
	}
	return rows.Err()
}
