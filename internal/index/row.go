package index

import (
	"database/sql"
	"fmt"
)

// row reads the columns of a result row as the driver gives them. A Scan
// into *any takes the driver's value as it is; a Scan into *int64 goes
// through reflection, and into *uint64 through formatting the number and
// parsing it again, which took a third of the time to load a large index.
type row struct {
	v    [12]any
	ptrs [12]any
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
