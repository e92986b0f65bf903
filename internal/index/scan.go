package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"same/internal/fsys"
)

// This file holds what hashfile needs to bring the index up to date
// without holding it in memory: the rows under a root in path order, a
// page at a time (Cursor), the row of an inode (FileByInode), and the
// scan generation with which a run marks the rows it found gone
// (NextScan, Tx.MarkGone, Tx.PruneGone).

// Listed is a file as a Cursor lists it: with the scan generation of the
// run that last found it gone from its path, 0 if none did.
type Listed struct {
	File
	Gone int64
}

// NextScan starts a scan generation and returns it: one more than the
// last run's.
func (ix *Index) NextScan(ctx context.Context) (int64, error) {
	var v string
	err := ix.db.QueryRowContext(ctx, `INSERT INTO meta(key, value) VALUES('scan_gen', '1')
		ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("start scan: %w", err)
	}
	return strconv.ParseInt(v, 10, 64)
}

// PathRange returns the bounds of the paths strictly below dir, an
// absolute clean path: lo < path < hi. ('0' follows '/'.)
func PathRange(dir string) (lo, hi string) {
	if dir == "/" {
		return "/", "0"
	}
	return dir + "/", dir + "0"
}

const listedColumns = `f.id, coalesce(f.path, ''), v.fsid, v.subvol, f.ino, f.size, f.mtime, f.ctime,
	coalesce(f.nocow, -1), coalesce(f.uid, -1), f.gone, f.changed, coalesce(f.items, 0) FROM files f JOIN volumes v ON v.id = f.vol`

func scanListed(r *row, rows *sql.Rows) (Listed, error) {
	if err := r.scan(rows, 13); err != nil {
		return Listed{}, err
	}
	l := Listed{File: r.file(), Gone: r.int64(10)}
	l.Changed, l.Items = r.int64(11), r.int64(12)
	return l, r.err
}

// cursorPage is how many rows a Cursor reads at a time at most: each
// page is a read of its own, so that no read stays open while the run
// writes (an open read would keep the WAL from being checkpointed).
const cursorPage = 1024

// cursorFirst is how many rows a Cursor reads first, and after each
// SkipUnder; each page after it reads twice as many, up to cursorPage. A
// walk that skips stretches of rows (a re-run on btrfs, between the
// directories that changed) uses a few rows after each skip: with a full
// page every time, a night on a snapshot host read 52,801 rows, and
// 12,088 with these, a row costing a lock and unlock of the connection
// for each of its columns.
const cursorFirst = 16

// cursorCache is the page cache of a Cursor's connection, in KiB: it
// reads each page of the index once, in order, so a small cache serves it
// as well as the 64 MiB the writer's connections have, which it would
// fill on a large index (and leave full in the pool). So does every
// connection of an index opened to be read (OpenExisting).
const cursorCache = 4096

// Cursor lists the files at or below a root, in the byte order of their
// paths, a page at a time: what it holds does not grow with the index.
// Each page is read when the last is done, so it shows what was
// committed by then. It is used by one goroutine, and must be closed.
type Cursor struct {
	ix     *Index
	conn   *sql.Conn // its own, with a small cache; nil until the first page
	ctx    context.Context
	root   string
	hi     string // paths below hi
	after  string // the next page starts after this path
	incl   bool   // ... or at it
	page   []Listed
	i      int
	size   int  // rows the next page reads
	done   bool // no page after this one
	err    error
	r      *row
	rootOK bool // the row at root itself was looked for
}

// Under returns a Cursor over the files at or below root, an absolute
// clean path.
func (ix *Index) Under(ctx context.Context, root string) *Cursor {
	lo, hi := PathRange(root)
	return &Cursor{ix: ix, ctx: ctx, root: root, hi: hi, after: lo, r: newRow(), size: cursorFirst}
}

// Peek returns the file the cursor is at, or false at the end or on an
// error (see Err).
func (c *Cursor) Peek() (Listed, bool) {
	for c.i >= len(c.page) {
		if c.done || c.err != nil {
			return Listed{}, false
		}
		c.fill()
	}
	return c.page[c.i], true
}

// Next moves past the file Peek returned.
func (c *Cursor) Next() { c.i++ }

// Close gives the cursor's connection back, with the cache it had.
func (c *Cursor) Close() {
	if c.conn == nil {
		return
	}
	c.conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA cache_size = %d", c.ix.cache))
	c.conn.Close()
	c.conn = nil
}

// betweenSkipQueries, set by tests, runs between SkipUnder's two queries.
var betweenSkipQueries func()

// begin starts a read transaction on the cursor's connection (a plain
// BEGIN: no write lock), which end ends.
func (c *Cursor) begin() error {
	if err := c.connect(); err != nil {
		return err
	}
	_, err := c.conn.ExecContext(c.ctx, "BEGIN")
	return err
}

// end ends the read transaction begin started.
func (c *Cursor) end() error {
	_, err := c.conn.ExecContext(context.Background(), "COMMIT") // also once ctx is done
	return err
}

// connect opens the cursor's connection, with a cache of its own.
func (c *Cursor) connect() error {
	if c.conn != nil {
		return nil
	}
	conn, err := c.ix.db.Conn(c.ctx)
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(c.ctx, fmt.Sprintf("PRAGMA cache_size = %d", -cursorCache)); err != nil {
		conn.Close()
		return err
	}
	c.conn = conn
	return nil
}

// query runs a query on the cursor's connection.
func (c *Cursor) query(q string, args ...any) (*sql.Rows, error) {
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c.conn.QueryContext(c.ctx, q, args...)
}

// SkipUnder moves the cursor past every row below dir, from the one Peek
// returns on, but not to before or beyond (if not ""). It returns how many
// of them are of volume v, not files named in check (by inode) and not
// marked gone (by a run that did not complete), and the others, in path
// order: a subvolume left unwalked costs two queries, not a row read for
// each of its files. The first only counts the rows below dir, from the
// index on paths alone; those returned are the rest of them. Both read
// the index as one transaction sees it, so the two agree.
func (c *Cursor) SkipUnder(dir string, v fsys.Volume, check []uint64, before string) (int64, []Listed, error) {
	at, ok := c.Peek()
	if !ok {
		return 0, nil, c.err
	}
	hi := SkipEnd(dir, before)
	// kept is true of the rows not returned (every column in it is NOT
	// NULL: it is never NULL itself, but where v has no row in volumes,
	// and then v has no file). (+f.vol: the rows are found by path, a
	// stretch of them, not all of the volume's by the index on (vol,
	// ino), which SQLite would choose.)
	const kept = "+f.vol = (SELECT id FROM volumes WHERE fsid = ?3 AND subvol = ?4) AND f.ino NOT IN (SELECT value FROM json_each(?5)) AND f.gone = 0"
	const in = " WHERE f.path >= ?1 AND f.path < ?2 AND "
	args := []any{at.Path, hi, v.FS, int64(v.Subvol), inoList(check)}
	if err := c.begin(); err != nil {
		return 0, nil, fmt.Errorf("read files: %w", err)
	}
	var all int64
	rows, err := c.query("SELECT count(*) FROM files WHERE path >= ?1 AND path < ?2", at.Path, hi)
	if err == nil {
		if rows.Next() {
			err = rows.Scan(&all)
		}
		if err == nil {
			err = rows.Err()
		}
		rows.Close()
	}
	if err == nil && betweenSkipQueries != nil {
		betweenSkipQueries()
	}
	if err == nil {
		rows, err = c.query("SELECT "+listedColumns+in+"NOT ("+kept+") ORDER BY f.path", args...)
	}
	if err != nil {
		c.end()
		return 0, nil, fmt.Errorf("read files: %w", err)
	}
	page := c.page
	c.page = nil
	c.read(rows)
	if err := c.end(); err != nil && c.err == nil {
		c.err = fmt.Errorf("read files: %w", err)
	}
	rest := c.page
	n := all - int64(len(rest))
	// The next page starts at hi, wherever this one ended, and is small.
	c.page, c.i, c.after, c.incl, c.done, c.size = page[:0], 0, hi, true, false, cursorFirst
	return n, rest, c.err
}

// SkipEnd returns where SkipUnder(dir, ..., before) stops: past the rows
// below dir, or at before if that comes first.
func SkipEnd(dir, before string) string {
	_, hi := PathRange(dir)
	if before != "" && before < hi {
		return before
	}
	return hi
}

// inoList returns inos as a JSON array for json_each: [] when there are
// none, not null. (Numbers always marshal.)
func inoList(inos []uint64) string {
	b, _ := json.Marshal(append([]uint64{}, inos...))
	return string(b)
}

// Again has the cursor read its rows again from the one Peek would
// return, so that it shows the rows committed since it read them.
func (c *Cursor) Again() {
	if c.err != nil {
		return
	}
	if c.i < len(c.page) {
		c.after, c.incl = c.page[c.i].Path, true
	}
	c.page, c.i, c.done = c.page[:0], 0, false
}

// Err is the error that ended the listing, if any.
func (c *Cursor) Err() error { return c.err }

// fill reads the next page.
func (c *Cursor) fill() {
	c.page, c.i = c.page[:0], 0
	if !c.rootOK {
		c.rootOK = true
		if c.root != "/" {
			rows, err := c.query("SELECT "+listedColumns+" WHERE f.path = ?", c.root)
			if err != nil {
				c.err = fmt.Errorf("read files: %w", err)
				return
			}
			c.read(rows)
			if c.err != nil || len(c.page) > 0 {
				return
			}
		}
	}
	op := ">"
	if c.incl {
		op = ">="
	}
	size := c.size
	c.size = min(2*size, cursorPage)
	rows, err := c.query("SELECT "+listedColumns+" WHERE f.path "+op+" ? AND f.path < ? ORDER BY f.path LIMIT ?",
		c.after, c.hi, size)
	if err != nil {
		c.err = fmt.Errorf("read files: %w", err)
		return
	}
	c.read(rows)
	if c.err == nil && len(c.page) < size {
		c.done = true
	}
	if n := len(c.page); n > 0 {
		c.after, c.incl = c.page[n-1].Path, false
	}
}

func (c *Cursor) read(rows *sql.Rows) {
	defer rows.Close()
	for rows.Next() {
		l, err := scanListed(c.r, rows)
		if err != nil {
			c.err = fmt.Errorf("read files: %w", err)
			return
		}
		c.page = append(c.page, l)
	}
	if err := rows.Err(); err != nil {
		c.err = fmt.Errorf("read files: %w", err)
	}
}

// Empty reports whether the index records no file.
func (ix *Index) Empty(ctx context.Context) (bool, error) {
	var any bool
	if err := ix.db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM files)").Scan(&any); err != nil {
		return false, fmt.Errorf("read files: %w", err)
	}
	return !any, nil
}

// HasFilesOn reports whether the index records a file of volume v.
func (ix *Index) HasFilesOn(ctx context.Context, v fsys.Volume) (bool, error) {
	var has bool
	err := ix.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM files
		WHERE vol = (SELECT id FROM volumes WHERE fsid = ? AND subvol = ?))`, v.FS, int64(v.Subvol)).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("read files: %w", err)
	}
	return has, nil
}

// FileByInode returns the file recorded for inode ino of volume v, if any.
func (ix *Index) FileByInode(ctx context.Context, v fsys.Volume, ino uint64) (Listed, bool, error) {
	st, err := ix.stmt("SELECT " + listedColumns + " WHERE v.fsid = ? AND v.subvol = ? AND f.ino = ?")
	if err != nil {
		return Listed{}, false, fmt.Errorf("read files: %w", err)
	}
	rows, err := st.QueryContext(ctx, v.FS, int64(v.Subvol), int64(ino))
	if err != nil {
		return Listed{}, false, fmt.Errorf("read files: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return Listed{}, false, rows.Err()
	}
	l, err := scanListed(newRow(), rows)
	if err != nil {
		return Listed{}, false, fmt.Errorf("read files: %w", err)
	}
	return l, true, nil
}

// InodePath is where the index has an inode of a volume.
type InodePath struct {
	Path string
	Ino  uint64
}

// InodePaths returns where the index has each of inos of volume v that
// it holds, in path order.
func (ix *Index) InodePaths(ctx context.Context, v fsys.Volume, inos []uint64) ([]InodePath, error) {
	return inodePaths(ctx, ix.db, v, inos)
}

// InodePaths is Index.InodePaths in the transaction: with what it wrote.
func (t *Tx) InodePaths(v fsys.Volume, inos []uint64) ([]InodePath, error) {
	return inodePaths(context.Background(), t.tx, v, inos)
}

func inodePaths(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, v fsys.Volume, inos []uint64) ([]InodePath, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.path, f.ino FROM files f
		WHERE f.vol = (SELECT id FROM volumes WHERE fsid = ?1 AND subvol = ?2) AND f.path IS NOT NULL
		AND f.ino IN (SELECT value FROM json_each(?3)) ORDER BY f.path`, v.FS, int64(v.Subvol), inoList(inos))
	if err != nil {
		return nil, fmt.Errorf("read files: %w", err)
	}
	defer rows.Close()
	var out []InodePath
	for rows.Next() {
		var p InodePath
		var ino int64
		if err := rows.Scan(&p.Path, &ino); err != nil {
			return nil, fmt.Errorf("read files: %w", err)
		}
		p.Ino = uint64(ino)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read files: %w", err)
	}
	return out, nil
}

// Dir is what a walk recorded of a directory (see Tx.PutDir).
type Dir struct {
	Ctime int64  // nanoseconds
	Gen   uint64 // of its subvolume, when the walk began
}

// Dirs returns what walks recorded of those of directories inos of
// volume v that they recorded.
func (ix *Index) Dirs(ctx context.Context, v fsys.Volume, inos []uint64) (map[uint64]Dir, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT d.ino, d.ctime, d.gen FROM dirs d
		WHERE d.vol = (SELECT id FROM volumes WHERE fsid = ?1 AND subvol = ?2)
		AND d.ino IN (SELECT value FROM json_each(?3))`, v.FS, int64(v.Subvol), inoList(inos))
	if err != nil {
		return nil, fmt.Errorf("read directories: %w", err)
	}
	defer rows.Close()
	out := make(map[uint64]Dir)
	for rows.Next() {
		var ino, ctime, gen int64
		if err := rows.Scan(&ino, &ctime, &gen); err != nil {
			return nil, fmt.Errorf("read directories: %w", err)
		}
		out[uint64(ino)] = Dir{Ctime: ctime, Gen: uint64(gen)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read directories: %w", err)
	}
	return out, nil
}

// KnownUnder returns how many files the last complete run met under the
// given roots, as far as recorded (see Tx.PutRoot).
func (ix *Index) KnownUnder(ctx context.Context, roots []string) (int64, error) {
	var total int64
	for _, r := range roots {
		var n int64
		err := ix.db.QueryRowContext(ctx, "SELECT files FROM roots WHERE path = ?", r).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read roots: %w", err)
		}
		total += n
	}
	return total, nil
}

// CountGone returns how many files PruneGone would remove for scan gen.
func (ix *Index) CountGone(ctx context.Context, gen int64) (int64, error) {
	var n int64
	if err := ix.db.QueryRowContext(ctx, "SELECT count(*) FROM files WHERE "+goneWhere, gen).Scan(&n); err != nil {
		return 0, fmt.Errorf("read files: %w", err)
	}
	return n, nil
}

// goneWhere selects the files that scan ?1 found gone, and those that
// have no path. (gone != 0 lets SQLite use the partial index files_gone.)
const goneWhere = "(gone = ?1 AND gone != 0) OR path IS NULL"

// MarkGone records that scan gen found file id gone from path: unless
// the file holds another path by now (renamed in this run).
func (t *Tx) MarkGone(id int64, path string, gen int64) error {
	_, err := t.exec("UPDATE files SET gone = ? WHERE id = ? AND path = ?", gen, id, path)
	return err
}

// Unmark clears what MarkGone recorded of file id.
func (t *Tx) Unmark(id int64) error {
	_, err := t.exec("UPDATE files SET gone = 0 WHERE id = ? AND gone != 0", id)
	return err
}

// KeepUnder clears the marks scan gen left below dir (or on dir itself):
// files that could not be looked at are kept.
func (t *Tx) KeepUnder(dir string, gen int64) error {
	lo, hi := PathRange(dir)
	_, err := t.exec("UPDATE files SET gone = 0 WHERE gone = ?1 AND gone != 0 AND (path = ?2 OR path > ?3 AND path < ?4)", gen, dir, lo, hi)
	return err
}

// KeepUnmet clears the marks scan gen left on the files of filesystems
// other than met (UUIDs, as fsys.Volume.FS): those the walk did not meet
// at all are not mounted where it went, and their files are not gone
// for that. Files of an older index's devices (see Legacy), which have
// no such name, are not kept. It returns how many it kept.
func (t *Tx) KeepUnmet(gen int64, met []string) (int64, error) {
	list, err := json.Marshal(met)
	if err != nil {
		return 0, err
	}
	res, err := t.exec(`UPDATE files SET gone = 0 WHERE gone = ?1 AND gone != 0
		AND vol IN (SELECT id FROM volumes WHERE fsid NOT LIKE 'dev:%' AND fsid NOT IN (SELECT value FROM json_each(?2)))`, gen, string(list))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Distrust forgets the owner (UIDUnknown) of the files at or below path,
// so that the next run looks at each rather than take it as its row has
// it: a run could not read them, and records its walk all the same (see
// scan).
func (t *Tx) Distrust(path string) error {
	lo, hi := PathRange(path)
	_, err := t.exec("UPDATE files SET uid = NULL WHERE uid IS NOT NULL AND (path = ?1 OR path > ?2 AND path < ?3)", path, lo, hi)
	return err
}

// PruneGone removes up to limit files, with all recorded of them, that
// scan gen found gone, or that have no path (another file took theirs and
// they were not met under a new one), and returns how many it removed.
func (t *Tx) PruneGone(gen int64, limit int) (int, error) {
	rows, err := t.tx.Query("SELECT id FROM files WHERE "+goneWhere+" LIMIT ?2", gen, limit)
	if err != nil {
		return 0, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := t.Delete(id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}
