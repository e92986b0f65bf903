package index

import (
	"context"
	"database/sql"
	"fmt"

	"same/internal/blockhash"
	"same/internal/fiemap"
)

// Tx is one write transaction. hashfile keeps one open at a time and
// commits it every few hundred files or megabytes of sums.
type Tx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

// Begin starts a write transaction.
func (ix *Index) Begin(ctx context.Context) (*Tx, error) {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{tx: tx, stmts: make(map[string]*sql.Stmt)}, nil
}

// stmt returns query prepared once for the transaction: parsing it again
// for every file cost a sixth of a first run on many small files.
func (t *Tx) stmt(query string) (*sql.Stmt, error) {
	st, ok := t.stmts[query]
	if !ok {
		var err error
		if st, err = t.tx.Prepare(query); err != nil {
			return nil, err
		}
		t.stmts[query] = st
	}
	return st, nil
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// Commit commits the transaction.
func (t *Tx) Commit() error {
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Rollback abandons the transaction.
func (t *Tx) Rollback() error { return t.tx.Rollback() }

// claim frees f.Path from any other inode that held it (that inode keeps
// its row with no path until it is seen under another name, or is pruned)
// and records f's identity. It returns f's row id.
func (t *Tx) claim(f File) (int64, error) {
	if _, err := t.exec("UPDATE files SET path = NULL WHERE path = ? AND NOT (dev = ? AND ino = ?)",
		f.Path, int64(f.Dev), int64(f.Ino)); err != nil {
		return 0, err
	}
	st, err := t.stmt(`INSERT INTO files(path, dev, ino, size, mtime, ctime) VALUES(?, ?, ?, ?, ?, ?)
		ON CONFLICT(dev, ino) DO UPDATE SET path = excluded.path, size = excluded.size,
			mtime = excluded.mtime, ctime = excluded.ctime
		RETURNING id`)
	if err != nil {
		return 0, err
	}
	var id int64
	err = st.QueryRow(f.Path, int64(f.Dev), int64(f.Ino), f.Size, f.Mtime, f.Ctime).Scan(&id)
	return id, err
}

// Put records a freshly hashed file: its identity, its packed block sums
// and its extents, replacing whatever the index held for that inode. sums
// may stop before the file's last block: the blocks after them are zero
// (blockhash.HashFile leaves out the zero blocks at the end of a file). A
// chunk of sums that are all zero is not stored: a sparse file costs what
// its data costs.
func (t *Tx) Put(f File, sums []byte, extents []fiemap.Extent) (int64, error) {
	id, err := t.claim(f)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	if err := t.clear(id); err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	if err := t.SetNoCOW(id, f.NoCOW); err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	const chunkBytes = ChunkBlocks * blockhash.SumSize
	for c := 0; c*chunkBytes < len(sums); c++ {
		part := sums[c*chunkBytes : min((c+1)*chunkBytes, len(sums))]
		if allZero(part) {
			continue
		}
		if _, err := t.exec("INSERT INTO blocks(file, chunk, hashes) VALUES(?, ?, ?)", id, c, part); err != nil {
			return 0, fmt.Errorf("record blocks of %s: %w", f.Path, err)
		}
	}
	for _, e := range extents {
		if _, err := t.exec("INSERT OR REPLACE INTO extents(file, logical, physical, length, flags, disk_start, disk_len) VALUES(?, ?, ?, ?, ?, ?, ?)",
			id, e.Logical, e.Physical, e.Length, e.Flags, e.DiskStart, e.DiskLen); err != nil {
			return 0, fmt.Errorf("record extents of %s: %w", f.Path, err)
		}
	}
	return id, nil
}

// SetNoCOW records whether file id has the NOCOW attribute.
func (t *Tx) SetNoCOW(id int64, nocow int8) error {
	var v any // NULL: unknown
	if nocow != NoCOWUnknown {
		v = int64(nocow)
	}
	_, err := t.exec("UPDATE files SET nocow = ? WHERE id = ?", v, id)
	return err
}

// Rename records a new path (and ctime, which a rename updates) for an
// inode whose data is unchanged.
func (t *Tx) Rename(f File) error {
	if _, err := t.claim(f); err != nil {
		return fmt.Errorf("rename to %s: %w", f.Path, err)
	}
	return nil
}

// Delete removes a file and everything recorded of it.
func (t *Tx) Delete(id int64) error {
	if err := t.clear(id); err != nil {
		return err
	}
	_, err := t.exec("DELETE FROM files WHERE id = ?", id)
	return err
}

func (t *Tx) clear(id int64) error {
	if _, err := t.exec("DELETE FROM blocks WHERE file = ?", id); err != nil {
		return err
	}
	_, err := t.exec("DELETE FROM extents WHERE file = ?", id)
	return err
}

// PutDevice records a filesystem's type, block size and ID.
func (t *Tx) PutDevice(d Device) error {
	_, err := t.exec("INSERT OR REPLACE INTO devices(dev, fstype, fsblock, fsid) VALUES(?, ?, ?, ?)",
		int64(d.Dev), d.FSType, d.BlockSize, d.FSID)
	return err
}

var zeros [64 << 10]byte

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if string(b[:n]) != string(zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
