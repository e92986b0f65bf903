package index

import (
	"database/sql"
	"fmt"

	"same/internal/fsys"
)

// row reads the columns of a result row as the driver gives them. A Scan
// into *any takes the driver's value as it is; a Scan into *int64 goes
// through reflection, and into *uint64 through formatting the number and
// parsing it again, which took a third of the time to load a large index.
type row struct {
	v    [13]any
	ptrs [13]any
	err  error // the first column of an unexpected type
}

func newRow() *row {
	r := new(row)
	for i := range r.v {
		r.ptrs[i] = &r.v[i]
	}
	return r
}

// scan reads the next row's first n columns.
func (r *row) scan(rows *sql.Rows, n int) error {
	return rows.Scan(r.ptrs[:n]...)
}

// int64 returns column i, an integer.
func (r *row) int64(i int) int64 {
	v, ok := r.v[i].(int64)
	if !ok && r.err == nil {
		r.err = fmt.Errorf("column %d is %T, not an integer", i, r.v[i])
	}
	return v
}

// text returns column i, text.
func (r *row) text(i int) string {
	switch v := r.v[i].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	if r.err == nil {
		r.err = fmt.Errorf("column %d is %T, not text", i, r.v[i])
	}
	return ""
}

// file reads a File from the first ten columns, in the order of
// listedColumns: id, path, fsid, subvol, ino, size, mtime, ctime, nocow,
// uid.
func (r *row) file() File {
	return File{ID: r.int64(0), Path: r.text(1), NoCOW: int8(r.int64(8)), UID: r.int64(9),
		Identity: fsys.Identity{
			Vol: fsys.Volume{FS: r.text(2), Subvol: uint64(r.int64(3))},
			Ino: uint64(r.int64(4)), Size: r.int64(5), Mtime: r.int64(6), Ctime: r.int64(7),
		}}
}
