package index

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/fsys"
)

// Tx is one write transaction. hashfile keeps one open at a time and
// commits it every few hundred files or megabytes of sums.
type Tx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	vols  map[fsys.Volume]int64 // row ids of volumes looked up
	// seq is the transaction's write sequence number (meta write_seq),
	// taken when it first changes a file; 0 until then.
	seq int64
}

// Begin starts a write transaction.
func (ix *Index) Begin(ctx context.Context) (*Tx, error) {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{tx: tx, stmts: make(map[string]*sql.Stmt), vols: make(map[fsys.Volume]int64)}, nil
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

// changed returns the transaction's write sequence number, taking the
// next one the first time: every row the transaction changes records it
// (files.changed), so that a reader that noted write_seq (see
// Index.WriteSeq) knows which rows changed after.
func (t *Tx) changed() (int64, error) {
	if t.seq != 0 {
		return t.seq, nil
	}
	st, err := t.stmt(`INSERT INTO meta(key, value) VALUES('write_seq', '1')
		ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING CAST(value AS INTEGER)`)
	if err != nil {
		return 0, err
	}
	if err := st.QueryRow().Scan(&t.seq); err != nil {
		return 0, fmt.Errorf("write sequence: %w", err)
	}
	return t.seq, nil
}

// update sets columns of file id (set: assignments, each followed by
// ", ", with their args) and records that it changed in this
// transaction: its changed, its sums_seq (see SetExtents), and no clone
// any more.
func (t *Tx) update(id int64, set string, args ...any) error {
	return t.write(id, set+"sums_seq = NULL, ", args...)
}

// write is update, set naming sums_seq.
func (t *Tx) write(id int64, set string, args ...any) error {
	seq, err := t.changed()
	if err != nil {
		return err
	}
	_, err = t.exec("UPDATE files SET "+set+"changed = ?, clone_of = NULL, clone_seq = NULL WHERE id = ?", append(args, seq, id)...)
	return err
}

// Rollback abandons the transaction.
func (t *Tx) Rollback() error { return t.tx.Rollback() }

// volID returns the row id of volume v, adding it if it is new.
func (t *Tx) volID(v fsys.Volume) (int64, error) {
	if id, ok := t.vols[v]; ok {
		return id, nil
	}
	st, err := t.stmt(`INSERT INTO volumes(fsid, subvol, fstype, fsblock) VALUES(?, ?, 0, 0)
		ON CONFLICT(fsid, subvol) DO UPDATE SET fsid = fsid RETURNING id`)
	if err != nil {
		return 0, err
	}
	var id int64
	if err := st.QueryRow(v.FS, int64(v.Subvol)).Scan(&id); err != nil {
		return 0, err
	}
	t.vols[v] = id
	return id, nil
}

// claim frees f.Path from any other inode that held it (that inode keeps
// its row with no path until it is seen under another name, or is pruned)
// and records f's identity, clearing any mark that it was gone (see
// MarkGone), and, when whole, f.NoCOW and items (the ItemsDigest of the
// extents recorded with it) too, and then that it holds no other row's
// sums or extents (files.blocks_of, files.extents_of). It returns f's
// row id, whether other rows share the sums or the extents it holds (see
// clear), and whether the row is new (it holds nothing to clear).
func (t *Tx) claim(f File, whole bool, items int64) (id int64, sharers, fresh bool, err error) {
	vol, uid, seq, err := t.rowOf(f)
	if err != nil {
		return 0, false, false, err
	}
	// The NOCOW attribute and the digest, when given, are set by the
	// same statement: one statement less for every file recorded.
	set, v, d := "", any(nil), any(nil)
	if whole {
		set = ", nocow = excluded.nocow, items = excluded.items, blocks_of = NULL, extents_of = NULL"
		if f.NoCOW != NoCOWUnknown {
			v = int64(f.NoCOW) // else NULL: unknown
		}
		if items != 0 {
			d = items
		}
	}
	// A file the index has no row of, at a path no row has (every file
	// of a first run), gets a new row, whose id no row refers to and no
	// sums or extents are recorded for: its id is the one inserted, with
	// no look after, and nothing to clear. Where a row has the inode or
	// the path, nothing is inserted (OR IGNORE): the path is freed and
	// the inode's row written as below.
	ins, err := t.stmt(`INSERT OR IGNORE INTO files(path, vol, ino, size, mtime, ctime, uid, changed, nocow, items) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, false, false, err
	}
	res, err := ins.Exec(f.Path, vol, int64(f.Ino), f.Size, f.Mtime, f.Ctime, uid, seq, v, d)
	if err != nil {
		return 0, false, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, false, false, err
	} else if n == 1 {
		id, err := res.LastInsertId()
		return id, false, true, err
	}
	if err := t.freePath(f, vol); err != nil {
		return 0, false, false, err
	}
	st, err := t.stmt(`INSERT INTO files(path, vol, ino, size, mtime, ctime, uid, changed, nocow, items) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(vol, ino) DO UPDATE SET path = excluded.path, size = excluded.size,
			mtime = excluded.mtime, ctime = excluded.ctime, uid = coalesce(excluded.uid, uid), gone = 0,
			changed = excluded.changed, sums_seq = NULL, clone_of = NULL, clone_seq = NULL` + set)
	if err != nil {
		return 0, false, false, err
	}
	if _, err := st.Exec(f.Path, vol, int64(f.Ino), f.Size, f.Mtime, f.Ctime, uid, seq, v, d); err != nil {
		return 0, false, false, err
	}
	// The row looked up by its key after, not RETURNING, which opens an
	// ephemeral table (a pager of its own) for each row: a third of the
	// cost of recording a file that is not read.
	q, err := t.stmt(`SELECT id, EXISTS (SELECT 1 FROM files s WHERE s.blocks_of = f.id)
		OR EXISTS (SELECT 1 FROM files s WHERE s.extents_of = f.id) FROM files f WHERE vol = ? AND ino = ?`)
	if err != nil {
		return 0, false, false, err
	}
	err = q.QueryRow(vol, int64(f.Ino)).Scan(&id, &sharers)
	return id, sharers, false, err
}

// takePath frees f.Path from any other inode that held it (see claim),
// and returns what a row of f is written with (see rowOf).
func (t *Tx) takePath(f File) (vol int64, uid any, seq int64, err error) {
	if vol, uid, seq, err = t.rowOf(f); err != nil {
		return 0, nil, 0, err
	}
	return vol, uid, seq, t.freePath(f, vol)
}

// rowOf returns what a row of f is written with: its volume's id, its
// owner (NULL when unknown) and the transaction's write sequence number.
func (t *Tx) rowOf(f File) (vol int64, uid any, seq int64, err error) {
	if vol, err = t.volID(f.Vol); err != nil {
		return 0, nil, 0, err
	}
	if f.UID != UIDUnknown {
		uid = f.UID
	}
	seq, err = t.changed()
	return vol, uid, seq, err
}

// freePath frees f.Path, on volume id vol, from any other inode that
// held it: that inode keeps its row with no path.
func (t *Tx) freePath(f File, vol int64) error {
	_, err := t.exec("UPDATE files SET path = NULL WHERE path = ? AND NOT (vol = ? AND ino = ?)", f.Path, vol, int64(f.Ino))
	return err
}

// Put records a freshly hashed file: its identity, its packed block sums
// and its extents, replacing whatever the index held for that inode. sums
// may stop before the file's last block: the blocks after them are zero
// (blockhash.HashFile leaves out the zero blocks at the end of a file). A
// chunk of sums that are all zero is not stored: a sparse file costs what
// its data costs.
//
// A file of more than 16 KiB with the same extents as one recorded before
// (a file of a snapshot, a reflinked copy: the same digest of its items,
// and size) whose sums are the same, byte for byte, shares them
// (files.blocks_of) instead of holding a copy.
func (t *Tx) Put(f File, sums []byte, extents []fiemap.Extent) (int64, error) {
	digest := ItemsDigest(extents)
	id, err := t.replace(f, digest)
	if err != nil {
		return 0, err
	}
	owner, err := t.sameSums(id, f.Size, digest, sums, extents)
	if err != nil {
		return 0, fmt.Errorf("record blocks of %s: %w", f.Path, err)
	}
	if owner != 0 {
		if _, err := t.exec("UPDATE files SET blocks_of = ? WHERE id = ?", owner, id); err != nil {
			return 0, fmt.Errorf("record blocks of %s: %w", f.Path, err)
		}
	}
	for c, part := storedChunk(sums, 0); owner == 0 && part != nil; c, part = storedChunk(sums, c+1) {
		if _, err := t.exec("INSERT INTO blocks(file, chunk, hashes) VALUES(?, ?, ?)", id, c, part); err != nil {
			return 0, fmt.Errorf("record blocks of %s: %w", f.Path, err)
		}
	}
	if err := t.putExtents(id, extents); err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	return id, nil
}

const chunkBytes = ChunkBlocks * blockhash.SumSize

// storedChunk returns the first chunk of sums, from chunk c on, that Put
// stores (not all zero), and its number; nil when there is none.
func storedChunk(sums []byte, c int) (int, []byte) {
	for ; c*chunkBytes < len(sums); c++ {
		if part := sums[c*chunkBytes : min((c+1)*chunkBytes, len(sums))]; !allZero(part) {
			return c, part
		}
	}
	return c, nil
}

// shareMin is the size a file must exceed for Put to look for another
// whose sums it can share: that of the index files_items.
const shareMin = 16384

// sameSums returns the row holding sums equal to sums (as Put would store
// them) of another file recorded with the same extents (digest) and size,
// or 0. Only files larger than shareMin whose extents are all at known
// places (those of btrfs's tree search, or FIEMAP's with a physical
// address) and shared are looked up: a file with the same extents shares
// every one of them.
func (t *Tx) sameSums(id, size, digest int64, sums []byte, extents []fiemap.Extent) (int64, error) {
	if len(sums) == 0 || len(extents) == 0 || size <= shareMin {
		return 0, nil
	}
	for _, e := range extents {
		if !storedApart(e) || e.Flags&fiemap.FlagShared == 0 {
			return 0, nil
		}
	}
	// The WHERE term holds the one of the index files_items (schema
	// 011_shared_sums.sql).
	st, err := t.stmt(fmt.Sprintf("SELECT coalesce(blocks_of, id) FROM files INDEXED BY files_items WHERE items = ? AND size = ? AND items IS NOT NULL AND size > %d AND id != ? LIMIT 1", shareMin))
	if err != nil {
		return 0, err
	}
	var owner int64
	switch err := st.QueryRow(digest, size, id).Scan(&owner); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, err
	}
	chunks, err := t.stmt("SELECT chunk, hashes FROM blocks WHERE file = ? ORDER BY chunk")
	if err != nil {
		return 0, err
	}
	rows, err := chunks.Query(owner)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	c, part := storedChunk(sums, 0) // the next chunk Put would store
	for rows.Next() {
		var chunk int
		var hashes sql.RawBytes
		if err := rows.Scan(&chunk, &hashes); err != nil {
			return 0, err
		}
		if part == nil || chunk != c || !bytes.Equal(part, hashes) {
			return 0, rows.Err()
		}
		c, part = storedChunk(sums, c+1)
	}
	if err := rows.Err(); err != nil || part != nil {
		return 0, err
	}
	return owner, nil
}

// SetExtents replaces the recorded extents of file id, mapped again
// while its data (and so its sums) stayed the same: its sums_seq keeps
// the changed of the last transaction that changed anything else of it.
func (t *Tx) SetExtents(id int64, extents []fiemap.Extent) error {
	if err := t.dropExtents(id, true); err != nil {
		return fmt.Errorf("record extents: %w", err)
	}
	if err := t.write(id, "items = ?, extents_of = NULL, sums_seq = coalesce(sums_seq, changed), ", ItemsDigest(extents)); err != nil {
		return fmt.Errorf("record extents: %w", err)
	}
	return t.putExtents(id, extents)
}

// replace records f's identity and NOCOW attribute, and items, the
// ItemsDigest of the extents to be recorded with it (0: not known), and
// clears what the index held of that inode's blocks and extents; it
// returns f's row id.
func (t *Tx) replace(f File, items int64) (int64, error) {
	id, sharers, fresh, err := t.claim(f, true, items)
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	if fresh {
		return id, nil
	}
	if err := t.clear(id, sharers); err != nil {
		return 0, fmt.Errorf("record %s: %w", f.Path, err)
	}
	return id, nil
}

// Copy records f, met in a btrfs snapshot, with the sums and extents of
// row from (sharing them, files.blocks_of and files.extents_of: not a
// copy), and as a
// clone of it (File.CloneOf): the file of the same
// inode in the subvolume the snapshot was taken from, recorded as the
// snapshot holds it (the caller knows that its extent items are those of
// the row as of its File.Changed fromChanged). Where the row changed
// since but its data did not (its extents were recorded again), f takes
// its sums and the extent items given, if any (the snapshot's own), and
// is no clone. It reports false and records nothing when from no longer
// has f's size, mtime and ctime or is not known to be without NOCOW,
// whose data may change under unchanged items, or when it changed and no
// items are given; f's NOCOW attribute is recorded as given (unset).
func (t *Tx) Copy(from, fromChanged int64, f File, items []fiemap.Extent) (bool, error) {
	if ok, err := t.copyNew(from, fromChanged, f); err != nil || ok {
		return ok, err
	}
	st, err := t.stmt("SELECT changed, coalesce(items, 0) FROM files WHERE id = ? AND size = ? AND mtime = ? AND ctime = ? AND nocow = 0")
	if err != nil {
		return false, fmt.Errorf("record %s: %w", f.Path, err)
	}
	var changed, digest int64
	switch err := st.QueryRow(from, f.Size, f.Mtime, f.Ctime).Scan(&changed, &digest); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	clone := changed == fromChanged
	if !clone && items == nil {
		return false, nil
	}
	if !clone {
		digest = ItemsDigest(items)
	}
	id, err := t.replace(f, digest)
	if err != nil {
		return false, err
	}
	// f shares the sums of from, or of the row from shares them with
	// (read after replace, which may have passed them on to from); as a
	// clone, it is one of from as it is: its changed was read above, in
	// this transaction.
	var cloneOf, cloneSeq any // NULL: no clone
	if clone {
		cloneOf, cloneSeq = from, fromChanged
	}
	if _, err := t.exec(`UPDATE files SET blocks_of = (SELECT coalesce(blocks_of, id) FROM files WHERE id = ?1),
		clone_of = ?2, clone_seq = ?3 WHERE id = ?4`, from, cloneOf, cloneSeq, id); err != nil {
		return false, fmt.Errorf("record %s: %w", f.Path, err)
	}
	if !clone {
		if err := t.putExtents(id, items); err != nil {
			return false, fmt.Errorf("record %s: %w", f.Path, err)
		}
		return true, nil
	}
	if err := t.referExtents(id, from); err != nil {
		return false, fmt.Errorf("record extents of %s: %w", f.Path, err)
	}
	return true, nil
}

// copyNew is Copy's way for the file of a new snapshot: a clone of from
// as it is (fromChanged) whose inode has no row yet, recorded in one
// statement with its sums and extents (by reference). It reports false, having recorded
// nothing but that f.Path is no other inode's, where the inode has a row
// or from is not as given; Copy then takes the long way.
func (t *Tx) copyNew(from, fromChanged int64, f File) (bool, error) {
	if f.NoCOW != NoCOWUnset {
		return false, nil
	}
	vol, uid, seq, err := t.takePath(f)
	if err != nil {
		return false, fmt.Errorf("record %s: %w", f.Path, err)
	}
	// OR IGNORE: a row of the inode (or of the path, which takePath has
	// just freed) leaves nothing recorded, as the caller wants; and a
	// statement that cannot abort halfway needs no statement journal,
	// which SQLite otherwise fills with every page the statement touches
	// that the transaction's statements before it wrote. The new row's id
	// is the last inserted: RETURNING would open an ephemeral table (a
	// pager of its own) for each row.
	res, err := t.exec(`INSERT OR IGNORE INTO files(path, vol, ino, size, mtime, ctime, uid, changed, nocow, items, blocks_of, clone_of, clone_seq, extents_of)
		SELECT ?1, ?2, ?3, size, mtime, ctime, ?4, ?5, 0, items, coalesce(blocks_of, id), id, changed, coalesce(extents_of, id) FROM files
			WHERE id = ?6 AND changed = ?7 AND size = ?8 AND mtime = ?9 AND ctime = ?10 AND nocow = 0`,
		f.Path, vol, int64(f.Ino), uid, seq, from, fromChanged, f.Size, f.Mtime, f.Ctime)
	if err != nil {
		return false, fmt.Errorf("record %s: %w", f.Path, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record %s: %w", f.Path, err)
	}
	return n != 0, nil
}

// Adopted is what Tx.Adopt recorded.
type Adopted struct {
	Files int64 // files recorded
	// Changed holds the inodes of the rows recorded that this run wrote
	// before (their identity, sums or extents may be newer than the
	// snapshot's file): to be looked at again.
	Changed []uint64
	// Whole says that every file of the origin below fromTop has a row
	// recorded, but for those this run created: none was left out as
	// known to have NOCOW or not known to be without it, nor marked gone
	// by an earlier run, and no row of the origin has no path.
	Whole bool
}

// Adopt records the files of volume to, a btrfs snapshot met at toTop
// that the index holds no file of, from the rows of volume from, the
// subvolume it was taken from, whose last complete walk met it at
// fromTop: each row below fromTop that this run did not create (its id
// at most maxID), known to be without NOCOW and not marked gone (or, with
// withGone, marked gone by this run alone, gen: a file deleted since the
// snapshot was made, when no directory changed before), is copied under
// toTop with the same path below it, as a
// clone of that row (see copyNew), referring to its sums and extents:
// a few statements for a snapshot, not one a file. Rows this run wrote since its start (write
// sequence number before) are copied as they are now, and named in
// Adopted.Changed. Nothing is recorded if the index holds a file of to
// already.
func (t *Tx) Adopt(from, to fsys.Volume, fromTop, toTop string, before, maxID, gen int64, withGone, markOrigin bool) (Adopted, error) {
	var out Adopted
	fromID, err := t.volID(from)
	if err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	toID, err := t.volID(to)
	if err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	var has bool
	if err := t.tx.QueryRow("SELECT EXISTS (SELECT 1 FROM files WHERE vol = ?)", toID).Scan(&has); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	if has {
		return out, nil
	}
	seq, err := t.changed()
	if err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	// The path below fromTop, cut as bytes (substr counts a text's
	// characters), and toTop before it.
	cut := len(fromTop) + 1
	if fromTop == "/" {
		cut = 1
	}
	prefix := toTop
	if toTop == "/" {
		prefix = ""
	}
	lo, hi := PathRange(fromTop)
	if !withGone {
		gen = 0 // no row is marked gone with 0
	}
	// The origin's rows below fromTop that this run did not create are
	// read once, into a temporary table (see below), each marked taken when
	// known to be without NOCOW and not marked gone (but by this run alone,
	// with withGone).
	if _, err := t.exec(`CREATE TEMP TABLE IF NOT EXISTS adopting(path TEXT, ino INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER,
		uid INTEGER, items INTEGER, blocks_of INTEGER, clone_of INTEGER, clone_seq INTEGER, extents_of INTEGER, taken INTEGER)`); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	if _, err := t.exec(`INSERT INTO temp.adopting
		SELECT CAST(?6 || CAST(substr(CAST(path AS BLOB), ?7) AS TEXT) AS TEXT), ino, size, mtime, ctime, uid, items,
			coalesce(blocks_of, id), id, changed, coalesce(extents_of, id), (gone = 0 OR gone = ?5) AND nocow IS 0
			FROM files WHERE vol = ?1 AND path >= ?2 AND path < ?3 AND id <= ?4`,
		fromID, lo, hi, maxID, gen, prefix, cut); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	// Whole: no row left out, and none of the origin without a path.
	var left int64
	if err := t.tx.QueryRow(`SELECT (SELECT count(*) FROM temp.adopting WHERE NOT taken) +
		(SELECT count(*) FROM files WHERE path IS NULL AND vol = ?)`, fromID).Scan(&left); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	out.Whole = left == 0
	rows, err := t.tx.Query("SELECT ino FROM temp.adopting WHERE taken AND clone_seq > ?", before)
	if err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	for rows.Next() {
		var ino int64
		if err := rows.Scan(&ino); err != nil {
			rows.Close()
			return out, fmt.Errorf("record %s: %w", toTop, err)
		}
		out.Changed = append(out.Changed, uint64(ino))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	// The rows are copied into files from the temporary table. A
	// statement that writes files and calls a function (substr, for the
	// paths) may fail halfway, so SQLite keeps a statement journal for it
	// (without OR IGNORE, a constraint would too): a copy of every page of
	// the index it changes, written to a temporary file, 26 MB for a
	// snapshot of 20,000 files among a million. The copy calls none. OR
	// IGNORE: a path another volume's row holds keeps it (the walk meets
	// the file there and settles it).
	res, err := t.exec(`INSERT OR IGNORE INTO files(path, vol, ino, size, mtime, ctime, uid, changed, nocow, items, blocks_of, clone_of, clone_seq, extents_of)
		SELECT path, ?, ino, size, mtime, ctime, uid, ?, 0, items, blocks_of, clone_of, clone_seq, extents_of FROM temp.adopting WHERE taken`, toID, seq)
	if err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	if _, err := t.exec(`DELETE FROM temp.adopting`); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	if out.Files, err = res.RowsAffected(); err != nil {
		return out, fmt.Errorf("record %s: %w", toTop, err)
	}
	// The snapshot refers to each extent stored on disk that its origin's
	// rows record, so from now on both rows' extents are shared, whatever
	// FIEMAP said when the origin was walked: read through the snapshot's
	// rows they are flagged so, and with markOrigin, the rows that hold
	// them are marked so (until a walk records them again). A run marks
	// them at its first adoption from an origin: those its walk records
	// afterwards have FIEMAP's flags as of then, with every snapshot
	// taken, and the others are marked already.
	if !markOrigin {
		return out, nil
	}
	if _, err := t.exec(`UPDATE extents SET flags = `+sharedFlags("extents")+`
		WHERE file IN (SELECT extents_of FROM files WHERE vol = ?) AND flags & ? = 0`, toID, fiemap.FlagShared); err != nil {
		return out, fmt.Errorf("record extents of %s: %w", fromTop, err)
	}
	return out, nil
}

// notApart are the flags of an extent not stored on disk apart from the
// file (see storedApart), at a physical address though it may have.
const notApart = fiemap.FlagDataInline | fiemap.FlagUnknown | fiemap.FlagDelalloc

// storedApart reports whether e is stored on disk apart from the file: at
// a physical address, not inline, known and allocated. Such an extent is
// one a snapshot shares.
func storedApart(e fiemap.Extent) bool {
	return e.Physical != 0 && e.Flags&notApart == 0
}

// sharedFlags is an SQL expression of the flags of the extents row e with
// FlagShared added where the extent is stored on disk apart from the file
// (storedApart): one a snapshot shares.
func sharedFlags(e string) string {
	return fmt.Sprintf("CASE WHEN %[1]s.physical != 0 AND %[1]s.flags & %[2]d = 0 THEN %[1]s.flags | %[3]d ELSE %[1]s.flags END",
		e, notApart, fiemap.FlagShared)
}

// referExtents records for file id, which has none, the extents recorded
// for file from, by reference (files.extents_of).
func (t *Tx) referExtents(id, from int64) error {
	_, err := t.exec(`UPDATE files SET extents_of = (SELECT coalesce(extents_of, id) FROM files WHERE id = ?1) WHERE id = ?2`, from, id)
	return err
}

// extentsBatch is how many extents rows putExtents inserts with one
// statement: a file cut into a hundred thousand extents (a VM image
// written at random) costs a thousand and some statements, not a
// hundred thousand.
const extentsBatch = 64

// insertExtent inserts a row into extents; insertExtents extentsBatch.
const insertExtent = "INSERT OR REPLACE INTO extents(file, logical, physical, length, flags, disk_start, disk_len, gen, ext_off) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)"

var insertExtents = insertExtent + strings.Repeat(", (?, ?, ?, ?, ?, ?, ?, ?, ?)", extentsBatch-1)

// putExtents records the extents of file id.
func (t *Tx) putExtents(id int64, extents []fiemap.Extent) error {
	var args []any
	for len(extents) > 0 {
		query, n := insertExtent, 1
		if len(extents) >= extentsBatch {
			query, n = insertExtents, extentsBatch
		}
		args = args[:0]
		for _, e := range extents[:n] {
			args = append(args, id, e.Logical, e.Physical, e.Length, e.Flags, e.DiskStart, e.DiskLen, e.Gen, e.Offset)
		}
		if _, err := t.exec(query, args...); err != nil {
			return fmt.Errorf("record extents: %w", err)
		}
		extents = extents[n:]
	}
	return nil
}

// SetNoCOW records whether file id has the NOCOW attribute. Recorded
// as it was, the attribute leaves sums_seq as SetExtents does.
func (t *Tx) SetNoCOW(id int64, nocow int8) error {
	var v any // NULL: unknown
	if nocow != NoCOWUnknown {
		v = int64(nocow)
	}
	return t.write(id, "sums_seq = CASE WHEN nocow IS ?1 THEN coalesce(sums_seq, changed) END, nocow = ?1, ", v)
}

// Rename records a new path (and ctime, which a rename updates) for an
// inode whose data is unchanged.
func (t *Tx) Rename(f File) error {
	if _, _, _, err := t.claim(f, false, 0); err != nil {
		return fmt.Errorf("rename to %s: %w", f.Path, err)
	}
	return nil
}

// Delete removes a file and everything recorded of it.
func (t *Tx) Delete(id int64) error {
	if err := t.clear(id, true); err != nil {
		return err
	}
	_, err := t.exec("DELETE FROM files WHERE id = ?", id)
	return err
}

// clear removes the sums and extents recorded for file id. Sums and
// extents that other rows share (files.blocks_of, files.extents_of) pass
// to the first of them, which the others then share; mayShare false says
// none does (as claim found), and spares the looks.
func (t *Tx) clear(id int64, mayShare bool) error {
	if err := t.passOn("blocks", "blocks_of", "", id, mayShare); err != nil {
		return err
	}
	return t.dropExtents(id, mayShare)
}

// dropExtents removes the extents recorded for file id (its reference to
// another's, files.extents_of, is the caller's to clear: claim's, or
// SetExtents's). Those it holds that other rows refer to pass to the
// first of them, flagged shared as they were read through it, and the
// others refer to that one; mayShare false says none refers to them, and
// spares the look.
func (t *Tx) dropExtents(id int64, mayShare bool) error {
	return t.passOn("extents", "extents_of", ", flags = "+sharedFlags("extents"), id, mayShare)
}

// passOn removes the rows of table (blocks or extents, by their column
// file) that file id holds, or, where other files refer to them by their
// column ref (blocks_of, extents_of), gives them to the first of those
// (setting set too: ", column = value"...), which the others then refer
// to. mayShare false says none refers to them, and spares the look.
func (t *Tx) passOn(table, ref, set string, id int64, mayShare bool) error {
	var heir sql.NullInt64
	if mayShare {
		st, err := t.stmt("SELECT min(id) FROM files WHERE " + ref + " = ?")
		if err != nil {
			return err
		}
		if err := st.QueryRow(id).Scan(&heir); err != nil {
			return err
		}
	}
	if !heir.Valid {
		_, err := t.exec("DELETE FROM "+table+" WHERE file = ?", id)
		return err
	}
	// The heir holds no rows of table (it refers to id's), so no key
	// (file, ...) of them can clash: OR IGNORE, and no function called,
	// so that SQLite keeps no statement journal for either statement (a
	// copy of every page it changes that the transaction changed before:
	// most of the temporary files' 380 MB on an hourly night).
	if _, err := t.exec("UPDATE OR IGNORE "+table+" SET file = ?"+set+" WHERE file = ?", heir.Int64, id); err != nil {
		return err
	}
	_, err := t.exec("UPDATE OR IGNORE files SET "+ref+" = CASE WHEN id = ?1 THEN NULL ELSE ?1 END WHERE "+ref+" = ?2", heir.Int64, id)
	return err
}

// PutVolume records a volume's filesystem type and block size. dev is the
// st_dev it has in this run: a volume recorded by an older index under
// that st_dev (see LegacyVolume) takes its stable names, with its files,
// unless the volume is already recorded by them.
func (t *Tx) PutVolume(in fsys.Info, dev uint64) error {
	if _, err := t.exec(`UPDATE volumes SET fsid = ?, subvol = ? WHERE fsid = ? AND subvol = 0
		AND NOT EXISTS (SELECT 1 FROM volumes WHERE fsid = ? AND subvol = ?)`,
		in.FS, int64(in.Subvol), LegacyVolume(dev).FS, in.FS, int64(in.Subvol)); err != nil {
		return fmt.Errorf("record volume %s: %w", in.Volume, err)
	}
	delete(t.vols, LegacyVolume(dev))
	id, err := t.volID(in.Volume)
	if err != nil {
		return fmt.Errorf("record volume %s: %w", in.Volume, err)
	}
	if _, err := t.exec("UPDATE volumes SET fstype = ?, fsblock = ? WHERE id = ?", in.Magic, in.BlockSize, id); err != nil {
		return fmt.Errorf("record volume %s: %w", in.Volume, err)
	}
	return nil
}

// SetWalked records what a complete walk of volume v saw (its generation
// and the walk's options), or "" to forget it.
func (t *Tx) SetWalked(v fsys.Volume, walked string) error {
	id, err := t.volID(v)
	if err != nil {
		return fmt.Errorf("record volume %s: %w", v, err)
	}
	_, err = t.exec("UPDATE volumes SET walked = ? WHERE id = ?", walked, id)
	return err
}

// Retry is a directory the next run walks below again (see
// Index.Retries): its inode number, and the path the walk met it at.
type Retry struct {
	Ino  uint64
	Path string
}

// SetRetries replaces the directories of volume v that the next run walks
// below again with dirs: all of them (under is ""), or those the walk met
// at or below the path under.
func (t *Tx) SetRetries(v fsys.Volume, under string, dirs []Retry) error {
	id, err := t.volID(v)
	if err != nil {
		return fmt.Errorf("record volume %s: %w", v, err)
	}
	if under == "" {
		_, err = t.exec("DELETE FROM retry WHERE vol = ?", id)
	} else {
		lo, hi := PathRange(under)
		_, err = t.exec("DELETE FROM retry WHERE vol = ? AND (path = ? OR path > ? AND path < ?)", id, under, lo, hi)
	}
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if _, err := t.exec("INSERT OR REPLACE INTO retry(vol, ino, path) VALUES(?, ?, ?)", id, int64(d.Ino), d.Path); err != nil {
			return err
		}
	}
	return nil
}

// PruneRetries drops the directories to walk again of the volumes the
// index no longer has a file of (a snapshot deleted): no walk of theirs
// will replace them.
func (t *Tx) PruneRetries() error {
	_, err := t.exec("DELETE FROM retry WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.vol = retry.vol)")
	return err
}

// PutDir records directory ino of volume v, met at path by a walk that
// began at generation gen of its btrfs subvolume, with its ctime in
// nanoseconds (see Index.Dirs).
func (t *Tx) PutDir(v fsys.Volume, ino uint64, path string, ctime int64, gen uint64) error {
	id, err := t.volID(v)
	if err != nil {
		return fmt.Errorf("record volume %s: %w", v, err)
	}
	_, err = t.exec("INSERT OR REPLACE INTO dirs(vol, ino, path, ctime, gen) VALUES(?, ?, ?, ?, ?)", id, int64(ino), path, ctime, int64(gen))
	return err
}

// PruneDirs drops the records of the directories of volume v at or below
// dir that a complete walk of dir beginning at generation gen did not
// make: those no longer there.
func (t *Tx) PruneDirs(v fsys.Volume, dir string, gen uint64) error {
	id, err := t.volID(v)
	if err != nil {
		return fmt.Errorf("record volume %s: %w", v, err)
	}
	lo, hi := PathRange(dir)
	_, err = t.exec("DELETE FROM dirs WHERE vol = ? AND (path = ? OR path >= ? AND path < ?) AND gen < ?", id, dir, lo, hi, int64(gen))
	return err
}

// PutRoot records the volume a root was on at a complete run, how many
// files that run met under it, and what it saw of the root's btrfs
// subvolume (its generation and the walk's options; "" if not known).
func (t *Tx) PutRoot(path string, v fsys.Volume, files int64, walked string) error {
	id, err := t.volID(v)
	if err != nil {
		return fmt.Errorf("record root %s: %w", path, err)
	}
	_, err = t.exec("INSERT OR REPLACE INTO roots(path, vol, files, walked) VALUES(?, ?, ?, ?)", path, id, files, walked)
	return err
}

// SetUID records the owner of file id.
func (t *Tx) SetUID(id int64, uid uint32) error {
	return t.update(id, "uid = ?, ", int64(uid))
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

// ItemsIgnored are the flags left out when hashfile compares extents with
// those it recorded: whether another file shares the extent (FlagShared,
// which changes without the file's items changing) and whether it is the
// file's last (FlagLast, which items taken alone do not say).
const ItemsIgnored = fiemap.FlagShared | fiemap.FlagLast

// ItemsDigest is a digest of extents (in logical order) as hashfile
// compares them with those it recorded: every field, with the flags
// ItemsIgnored left out. Never 0, which stands for not known.
func ItemsDigest(extents []fiemap.Extent) int64 {
	const offset64, prime64 = 14695981039346656037, 1099511628211 // FNV-1a
	h := uint64(offset64)
	for _, e := range extents {
		for _, v := range [...]uint64{uint64(e.Logical), uint64(e.Physical), uint64(e.Length),
			uint64(e.Flags &^ ItemsIgnored),
			uint64(e.DiskStart), uint64(e.DiskLen), uint64(e.Gen), uint64(e.Offset)} {
			for i := 0; i < 64; i += 8 {
				h ^= v >> i & 0xff
				h *= prime64
			}
		}
	}
	if h == 0 {
		return 1
	}
	return int64(h)
}
