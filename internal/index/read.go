package index

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"same/internal/blockhash"
	"same/internal/fiemap"
)

// Sums returns the packed block sums of one file. They stop at its last
// block that is not zero: the blocks after them are zero (see Tx.Put).
func (ix *Index) Sums(ctx context.Context, file int64) ([]byte, error) {
	st, err := ix.stmt(sumsQuery)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return sumsBy(ctx, st, file)
}

// sumsQuery selects the chunks of sums of file ?1. No query first for
// the last chunk, to size the result: SQLite read the chunk's row to
// answer it, and that cost as much again as the reading. Chunks of zero
// blocks are not stored: a gap is zero.
const sumsQuery = "SELECT chunk, hashes FROM blocks WHERE file = " + ownerOf + " ORDER BY chunk"

// SumsReader reads the sums of many files, one after another, in one
// read transaction: a query of its own costs each file SQLite's taking
// and leaving a transaction (the locks of the write-ahead log), which
// on a night's findsame cost more than reading the sums; read a chunk a
// query, the digests of 2.2 million lines took a quarter of findsame's
// CPU at 1.9 million files. It sees the index as it was at its first
// read. Its reads do not watch for the end of the context it was started
// with, each of them a short one: the watch of each (a goroutine of the
// driver's and one of database/sql's, SQLite's progress handler set and
// cleared) cost more than the read of a chunk. A caller reading many
// looks at its context between them. Close it when done.
type SumsReader struct {
	ctx       context.Context // without cancellation
	conn      *sql.Conn
	st, chunk *sql.Stmt
}

// SumsReader starts a SumsReader. It reads on a connection of its own, in
// a transaction begun by hand: database/sql watches the context of every
// query in a transaction of its making, whatever the query's own.
func (ix *Index) SumsReader(ctx context.Context) (*SumsReader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	conn, err := ix.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	r := &SumsReader{ctx: ctx, conn: conn}
	if r.st, err = conn.PrepareContext(ctx, sumsQuery); err == nil {
		r.chunk, err = conn.PrepareContext(ctx, chunkQuery)
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, "BEGIN DEFERRED") // takes no write lock
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return r, nil
}

// Sums returns the packed block sums of one file, as Index.Sums does.
func (r *SumsReader) Sums(file int64) ([]byte, error) {
	return sumsBy(r.ctx, r.st, file)
}

// ChunkTo returns chunk c of file's packed sums (nil if there is none), as
// Index.Chunk does, into buf's memory when it has room: findsame reads many
// chunks one after another and keeps one at a time.
func (r *SumsReader) ChunkTo(file int64, c int, buf []byte) ([]byte, error) {
	return chunkBy(r.ctx, r.chunk, file, c, buf)
}

// Close ends the read transaction.
func (r *SumsReader) Close() error {
	_, err := r.conn.ExecContext(r.ctx, "ROLLBACK")
	if err != nil {
		// Not given back to the pool with its transaction open: a bad
		// connection is closed.
		r.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	if e := r.close(); err == nil {
		err = e
	}
	return err
}

// close closes r's statements and gives back its connection.
func (r *SumsReader) close() error {
	for _, st := range []*sql.Stmt{r.st, r.chunk} {
		if st != nil {
			st.Close()
		}
	}
	return r.conn.Close()
}

// sumsBy reads the sums of file with st, a sumsQuery.
func sumsBy(ctx context.Context, st *sql.Stmt, file int64) ([]byte, error) {
	const chunkBytes = ChunkBlocks * blockhash.SumSize
	rows, err := st.QueryContext(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	defer rows.Close()
	var sums []byte
	for rows.Next() {
		var chunk int
		var part sql.RawBytes
		if err := rows.Scan(&chunk, &part); err != nil {
			return nil, fmt.Errorf("read blocks: %w", err)
		}
		at := chunk * chunkBytes
		if chunk < 0 || at < len(sums) || len(part) > chunkBytes {
			return nil, fmt.Errorf("read blocks: chunk %d of file %d is out of place", chunk, file)
		}
		end := at + len(part)
		if end > cap(sums) {
			// Doubled, so that a file of many chunks is copied a few
			// times, not once a chunk.
			grown := make([]byte, len(sums), max(end, 2*cap(sums)))
			copy(grown, sums)
			sums = grown
		}
		sums = sums[:end] // the gap before at, zero
		copy(sums[at:], part)
	}
	return sums, rows.Err()
}

// ownerOf is the SQL for the row whose blocks hold the sums of file ?1.
const ownerOf = "(SELECT coalesce(blocks_of, id) FROM files WHERE id = ?1)"

// ScanSums calls fn for every chunk of block sums in the index, in order
// of files[0], the row that holds them, and chunk, with the files whose
// sums they are: files[0] and the rows that share them (files.blocks_of,
// in id order). first is the index of the chunk's first block in its
// files. Chunks of zero blocks, and the zero blocks at the end of a file,
// may be missing (see Tx.Put). files and sums are only valid during the
// call. It reads in one statement, so in one snapshot of the index: sums
// that pass from a row to another meanwhile are not seen twice, or
// missed.
func (ix *Index) ScanSums(ctx context.Context, fn func(files []int64, first int, sums []byte) error) error {
	rows, err := ix.db.QueryContext(ctx, `SELECT b.file, b.chunk, b.hashes,
		(SELECT group_concat(id) FROM files WHERE blocks_of = b.file)
		FROM blocks b ORDER BY b.file, b.chunk`)
	if err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	defer rows.Close()
	files := make([]int64, 1)
	for rows.Next() {
		var file int64
		var chunk int
		var sums sql.RawBytes // no copy: fn may not keep sums anyway
		var sharers sql.NullString
		if err := rows.Scan(&file, &chunk, &sums, &sharers); err != nil {
			return fmt.Errorf("read blocks: %w", err)
		}
		files = append(files[:0], file)
		for rest := sharers.String; rest != ""; {
			var id string
			id, rest, _ = strings.Cut(rest, ",")
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				return fmt.Errorf("read blocks: file %d shared by %q", file, sharers.String)
			}
			files = append(files, n)
		}
		slices.Sort(files[1:])
		if err := fn(files, chunk*ChunkBlocks, sums); err != nil {
			return err
		}
	}
	return rows.Err()
}

// StoredSums returns the number of block sums the files of the index
// hold: those stored, each counted once for every file that shares it.
func (ix *Index) StoredSums(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	err := ix.db.QueryRowContext(ctx, `SELECT sum(length(b.hashes) * (1 + coalesce(s.n, 0))) FROM blocks b
		LEFT JOIN (SELECT blocks_of, count(*) n FROM files WHERE blocks_of IS NOT NULL GROUP BY blocks_of) s ON s.blocks_of = b.file`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read blocks: %w", err)
	}
	return n.Int64 / blockhash.SumSize, nil
}

// ScanExtents calls fn for every extent row in the index, under the file
// that holds it: a file that refers to another's (files.extents_of, see
// ExtentRefs) has none of its own. readers readers
// (at least one), each on a connection of its own, read alternate ranges
// of file ids (filesRange at a time), each in a read of its own, and call
// fn with their number (from 0), at once: a file's extents all come to
// one reader, and each reader's come in (file, logical) order; files
// recorded after it started may be left out. As for
// Files, the driver's work for each column is most of the cost of a row,
// and two cores share it. A file written meanwhile is read as it is
// before or after that write. The first error fn or a reader returns
// stops them all, and is returned.
func (ix *Index) ScanExtents(ctx context.Context, readers int, fn func(reader int, file int64, e fiemap.Extent) error) error {
	maxID := ix.MaxFileID(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readers = max(readers, 1)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for lo := int64(r) * filesRange; lo <= maxID; lo += int64(readers) * filesRange {
				err := ix.scanExtents(ctx, "FROM extents e WHERE file >= ? AND file < ? ORDER BY file, logical", func(file int64, e fiemap.Extent) error {
					return fn(r, file, e)
				}, lo, lo+filesRange)
				if err != nil {
					errs[r] = err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// ScanPartDiskExtents calls fn for every recorded reference to a btrfs
// disk extent whose key is known (fiemap.Extent's DiskStart, DiskLen and
// Gen) and that no reference refers to whole (from the start of its data
// to its length or beyond): the extents that may hold data no file refers
// to. The references to one disk extent come one after another, those of
// the files that refer to another's extents (files.extents_of) with
// them. Most extents are referred to whole; SQLite leaves them out.
func (ix *Index) ScanPartDiskExtents(ctx context.Context, fn func(file int64, e fiemap.Extent) error) error {
	return ix.scanExtents(ctx, `FROM (WITH p AS MATERIALIZED (SELECT e.* FROM (SELECT disk_start ds, disk_len dl, gen g FROM extents WHERE gen != 0
			GROUP BY disk_start, disk_len, gen HAVING max(ext_off = 0 AND length >= disk_len) = 0) k
		CROSS JOIN extents e ON e.disk_start = k.ds AND e.disk_len = k.dl AND e.gen = k.g AND e.gen != 0)
		SELECT * FROM p UNION ALL
		SELECT f.id, p.logical, p.physical, p.length, `+sharedFlags("p")+`, p.disk_start, p.disk_len, p.gen, p.ext_off
			FROM p JOIN files f ON f.extents_of = p.file) e
		ORDER BY e.disk_start, e.disk_len, e.gen`, fn)
}

// SharedAlone calls fn with the id of each file that has a recorded
// extent flagged shared (FIEMAP's SHARED) whose disk extent no other file
// of the index refers to (btrfs, where the key is known): the flag is as
// of when the file was recorded, and the other references may have gone
// since without the file changing (a snapshot's file, once the file it
// was taken of is rewritten or deleted), or lie outside the index. A file
// that refers to the extent twice is listed too; one whose extents
// others refer to (files.extents_of) is not. The scan of the references
// reads the index on their keys alone.
func (ix *Index) SharedAlone(ctx context.Context, fn func(file int64) error) error {
	rows, err := ix.db.QueryContext(ctx, `SELECT DISTINCT e.file FROM (SELECT disk_start ds, disk_len dl, gen g FROM extents
			WHERE gen != 0 GROUP BY disk_start, disk_len, gen HAVING min(file) = max(file)) k
		CROSS JOIN extents e ON e.disk_start = k.ds AND e.disk_len = k.dl AND e.gen = k.g AND e.gen != 0
		WHERE e.flags & ? != 0 AND NOT EXISTS (SELECT 1 FROM files r WHERE r.extents_of = e.file)`, fiemap.FlagShared)
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("read extents: %w", err)
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	return nil
}

// Extents returns the recorded extents of file id, in file order: its
// own, or those of the row it refers to (files.extents_of), flagged
// shared where stored apart from the file.
func (ix *Index) Extents(ctx context.Context, id int64) ([]fiemap.Extent, error) {
	var out []fiemap.Extent
	err := ix.scanExtents(ctx, `FROM (SELECT f.id file, x.logical, x.physical, x.length,
			CASE WHEN f.extents_of IS NULL THEN x.flags ELSE `+sharedFlags("x")+` END flags, x.disk_start, x.disk_len, x.gen, x.ext_off
		FROM files f JOIN extents x ON x.file = coalesce(f.extents_of, f.id) WHERE f.id = ?) e ORDER BY e.logical`, func(_ int64, e fiemap.Extent) error {
		out = append(out, e)
		return nil
	}, id)
	return out, err
}

// ExtentRefs calls fn with each file that refers to another's extents
// (files.extents_of) and that other, in no order. Read through the
// reference, the extents stored apart from the file are flagged shared
// (see Shared).
func (ix *Index) ExtentRefs(ctx context.Context, fn func(file, of int64) error) error {
	rows, err := ix.db.QueryContext(ctx, "SELECT id, extents_of FROM files INDEXED BY files_extents_of WHERE extents_of IS NOT NULL")
	if err != nil {
		return fmt.Errorf("read files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, of int64
		if err := rows.Scan(&id, &of); err != nil {
			return fmt.Errorf("read files: %w", err)
		}
		if err := fn(id, of); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read files: %w", err)
	}
	return nil
}

// A Watch tells whether another connection committed a write to the
// index since it was made: a reader that reads in several transactions
// (findsame's extents and the references to them) knows whether they
// may disagree.
type Watch struct {
	conn *sql.Conn
	v    int64
}

// Watch starts a Watch on a connection of its own.
func (ix *Index) Watch(ctx context.Context) (*Watch, error) {
	conn, err := ix.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch the index: %w", err)
	}
	w := &Watch{conn: conn}
	if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&w.v); err != nil {
		conn.Close()
		return nil, fmt.Errorf("watch the index: %w", err)
	}
	return w, nil
}

// Changed reports whether another connection committed a write since
// the Watch was made.
func (w *Watch) Changed(ctx context.Context) (bool, error) {
	var v int64
	if err := w.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return false, fmt.Errorf("watch the index: %w", err)
	}
	return v != w.v, nil
}

// Close ends the Watch.
func (w *Watch) Close() error { return w.conn.Close() }

// Shared returns a recorded extent as read through a reference to
// another file's (files.extents_of): flagged shared where it is stored
// on disk apart from the file (storedApart; sharedFlags in SQL).
func Shared(e fiemap.Extent) fiemap.Extent {
	if storedApart(e) {
		e.Flags |= fiemap.FlagShared
	}
	return e
}

// extentColumns are the columns of the extents table (aliased e) that
// extentRows reads.
const extentColumns = "e.file, e.logical, e.physical, e.length, e.flags, e.disk_start, e.disk_len, e.gen, e.ext_off"

// scanExtents calls fn for every row of the extents table that the query
// tail (FROM ...) selects, in its order.
func (ix *Index) scanExtents(ctx context.Context, from string, fn func(file int64, e fiemap.Extent) error, args ...any) error {
	st, err := ix.stmt("SELECT " + extentColumns + " " + from)
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	return extentRows(rows, fn)
}

// extentRows calls fn for each of rows, which select extentColumns, and
// closes them.
func extentRows(rows *sql.Rows, fn func(file int64, e fiemap.Extent) error) error {
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

// Piece is a range of an indexed file that refers to a piece of a disk
// extent (see fiemap.Extent), and the sums recorded for it.
type Piece struct {
	File    int64
	Logical int64 // where the piece lies in File
	Offset  int64 // where it lies in the disk extent's data
	Length  int64
	Size    int64 // File's size
}

// Pieces returns recorded pieces of disk extent (start, length, gen) of
// the filesystem whose ID is fs (a key names an extent only within its
// filesystem), in files without the NOCOW attribute (whose extents are
// overwritten in place), that hold the extent's data at offset at: some
// of those that begin nearest before it or, when none of those does,
// some of those that begin first in the extent (a file's whole extent,
// from which others took pieces), so that its cost does not grow with the
// extent's pieces. Missing one costs a read, never a wrong sum.
func (ix *Index) Pieces(ctx context.Context, fs string, start, length, gen, at int64) ([]Piece, error) {
	near, err := ix.pieces(ctx, piecesNear, fs, start, length, gen, at)
	if err != nil || len(near) == 0 {
		return nil, err // none begins before it
	}
	if out := holding(near, at); len(out) > 0 {
		return out, nil
	}
	first, err := ix.pieces(ctx, piecesFirst, fs, start, length, gen, at)
	return holding(first, at), err
}

// holding returns those of ps that hold the data at offset at.
func holding(ps []Piece, at int64) []Piece {
	return slices.DeleteFunc(ps, func(p Piece) bool { return p.Offset+p.Length <= at })
}

func (ix *Index) pieces(ctx context.Context, query, fs string, start, length, gen, at int64) ([]Piece, error) {
	st, err := ix.stmt(query)
	if err != nil {
		return nil, fmt.Errorf("read extents: %w", err)
	}
	rows, err := st.QueryContext(ctx, start, length, gen, at, fiemap.FlagUnwritten|fiemap.FlagDataInline, fs)
	if err != nil {
		return nil, fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	var out []Piece
	for rows.Next() {
		var p Piece
		if err := rows.Scan(&p.File, &p.Logical, &p.Offset, &p.Length, &p.Size); err != nil {
			return nil, fmt.Errorf("read extents: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Referrers returns the files of the index that refer to disk extent
// (start, length, gen) of the filesystem whose ID is fs: those with
// extents of their own in it, and those that refer to theirs
// (files.extents_of), in no order.
func (ix *Index) Referrers(ctx context.Context, fs string, start, length, gen int64) ([]int64, error) {
	st, err := ix.stmt(referrersQuery)
	if err != nil {
		return nil, fmt.Errorf("read extents: %w", err)
	}
	rows, err := st.QueryContext(ctx, start, length, gen, fs)
	if err != nil {
		return nil, fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read extents: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read extents: %w", err)
	}
	return out, nil
}

// referrersQuery is Referrers' statement: the extent's rows by the index
// extents_piece, their files on the filesystem, and the files that refer
// to those by files_extents_of. Left to itself, the planner scanned every
// file for the last (a quarter of a second a query on 1.6 million files).
const referrersQuery = `WITH o AS (SELECT DISTINCT e.file FROM extents e
		JOIN files f ON f.id = e.file JOIN volumes v ON v.id = f.vol
		WHERE e.disk_start = ?1 AND e.disk_len = ?2 AND e.gen = ?3 AND e.gen != 0 AND v.fsid = ?4)
	SELECT file FROM o UNION SELECT r.id FROM o CROSS JOIN files r INDEXED BY files_extents_of ON r.extents_of = o.file AND r.extents_of IS NOT NULL`

// HasPieces reports whether the index records a piece of a disk extent
// of known key (see Pieces) on the filesystem whose ID is fs.
func (ix *Index) HasPieces(ctx context.Context, fs string) (bool, error) {
	var n int
	err := ix.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM volumes v
		JOIN files f ON f.vol = v.id JOIN extents e ON e.file = f.id
		WHERE v.fsid = ? AND e.gen != 0)`, fs).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read extents: %w", err)
	}
	return n != 0, nil
}

// piecesNear and piecesFirst are the statements of Pieces: bounded walks
// of the index extents_piece over the pieces that begin at or before the
// offset, back from it and from the extent's start.
const (
	piecesNear  = piecesOf + "ORDER BY ext_off DESC LIMIT 8)" + piecesHold
	piecesFirst = piecesOf + "ORDER BY ext_off LIMIT 4)" + piecesHold
	piecesOf    = `SELECT p.file, p.logical, p.ext_off, p.length, f.size
	FROM (SELECT file, logical, ext_off, length, flags FROM extents
		WHERE disk_start = ?1 AND disk_len = ?2 AND gen = ?3 AND gen != 0 AND ext_off <= ?4 `
	piecesHold = ` p
	JOIN files f ON f.id = p.file JOIN volumes v ON v.id = f.vol
	WHERE f.nocow = 0 AND p.flags & ?5 = 0 AND v.fsid = ?6`
)

// stmt returns query prepared, once for the life of the index: the tools
// ask some queries once per file (Pieces, Chunk, FileByInode), and
// parsing the statement each time cost more than running it (100,000
// small files, cold: 12.8 s of 42 s of CPU in sqlite3Prepare for Pieces
// alone).
func (ix *Index) stmt(query string) (*sql.Stmt, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if st, ok := ix.stmts[query]; ok {
		return st, nil
	}
	st, err := ix.db.Prepare(query)
	if err != nil {
		return nil, err
	}
	if ix.stmts == nil {
		ix.stmts = make(map[string]*sql.Stmt)
	}
	ix.stmts[query] = st
	return st, nil
}

const chunkQuery = "SELECT hashes FROM blocks WHERE file = " + ownerOf + " AND chunk = ?2"

// Chunk returns chunk c of file's packed sums (nil if there is none).
func (ix *Index) Chunk(ctx context.Context, file int64, c int) ([]byte, error) {
	st, err := ix.stmt(chunkQuery)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	var b []byte
	err = st.QueryRowContext(ctx, file, c).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return b, nil
}

// chunkBy reads chunk c of file's packed sums into buf's memory with st,
// a chunkQuery.
func chunkBy(ctx context.Context, st *sql.Stmt, file int64, c int, buf []byte) ([]byte, error) {
	rows, err := st.QueryContext(ctx, file, c)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var b sql.RawBytes
	if err := rows.Scan(&b); err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return append(buf[:0], b...), rows.Err()
}

// FlaggedFiles calls fn for each recorded extent that is compressed
// (fiemap.FlagEncoded, on btrfs) or inline (fiemap.FlagDataInline), with
// the file that has it and which of the two flags it has: a file may come
// more than once. It reads the index extents_flagged, not every extent.
func (ix *Index) FlaggedFiles(ctx context.Context, fn func(file int64, flags uint32) error) error {
	// The WHERE term is the index's, word for word (schema
	// 010_flagged_extents.sql): 520 is FlagEncoded|FlagDataInline.
	rows, err := ix.db.QueryContext(ctx, `SELECT file, flags & 520 FROM extents INDEXED BY extents_flagged WHERE flags & 520 != 0
		UNION ALL SELECT f.id, e.flags & 520 FROM extents e INDEXED BY extents_flagged JOIN files f ON f.extents_of = e.file
			WHERE e.flags & 520 != 0`)
	if err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, flags int64
		if err := rows.Scan(&id, &flags); err != nil {
			return fmt.Errorf("read extents: %w", err)
		}
		if err := fn(id, uint32(flags)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read extents: %w", err)
	}
	return nil
}
