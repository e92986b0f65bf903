package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/schema"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ChunkBlocks is the number of block Sums stored in one blocks row.
const ChunkBlocks = 65536

// Index is an open index database.
type Index struct {
	db       *sql.DB
	path     string
	warnings []string
	cache    int // each connection's cache_size (see dsn)

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // see stmt
}

// DefaultPath is where the tools keep the index when -db is not given:
// $SAME_DB if set, else $XDG_STATE_HOME/same/index.db, else
// ~/.local/state/same/index.db.
func DefaultPath() string {
	if p := os.Getenv("SAME_DB"); p != "" {
		return p
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "same", "index.db")
}

// ApplicationID is the PRAGMA application_id of every index: "SAME" in
// ASCII. Open refuses an SQLite file that carries another one.
const ApplicationID = 0x53414d45

// ErrNotExist is returned by OpenExisting when there is no index at path.
var ErrNotExist = errors.New("no index")

// ErrNotIndex is returned (wrapped in a message naming the file and what
// it holds) for a file that is not an index.
var ErrNotIndex = errors.New("not a same index")

type notIndexError struct{ path, why string }

func (e *notIndexError) Error() string {
	return fmt.Sprintf("%s is not a same index (%s)", e.path, e.why)
}

func (e *notIndexError) Unwrap() error { return ErrNotIndex }

// Open opens the index at path, creating it if needed, and migrates it to
// the current schema. A new index is created 0600, and the directories
// missing above it 0700, whatever the umask: it names every file and
// holds sums of their blocks.
func Open(path string) (*Index, error) {
	return open(path, true, defaultCache)
}

// OpenExisting opens an index that must already exist, for reading: it
// refuses an empty file or anything else that is not an index, and never
// creates a schema. It does migrate an index made by an older version.
// Its connections have a small page cache (cursorCache): a reader reads
// each page of a table once, in order, or a file's rows at a time, and a
// cache of 64 MiB took a fresh page of memory for each page read, with
// nothing read twice to show for it (a fifth of findsame's time on a
// snapshot host's night, spent loading the files).
func OpenExisting(path string) (*Index, error) {
	return open(path, false, -cursorCache)
}

func open(path string, create bool, cache int) (*Index, error) {
	if err := prepare(path, create); err != nil {
		return nil, err
	}
	ix := &Index{path: path, warnings: private(path), cache: cache}
	db, err := sql.Open("sqlite", dsn(path, cache))
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	// database/sql keeps two idle connections by default and closes the
	// others as they are given back; closing one drops its page cache
	// and its prepared statements, which the next connection opened then
	// builds again. A run of hashfile uses a few at once (the writer, the
	// walk's cursor, the lookups of the reuser and the subvolumes), and
	// closed 31 on a snapshot host's night.
	db.SetMaxIdleConns(idleConns)
	ix.db = db
	if err := ix.setUp(create); err != nil {
		db.Close()
		var ni *notIndexError
		if errors.As(err, &ni) {
			return nil, err
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return ix, nil
}

// sqliteMagic opens every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// prepare makes sure that path is a file SQLite may open as an index
// before it does, so that failures are told in words, a new index is
// private, and SQLite never writes a database into a file that is not one.
func prepare(path string, create bool) error {
	if create {
		// Only the directories that are missing are created, 0700
		// (a umask only takes permissions away).
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("open index: %w", err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f.Close()
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("open index: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return fmt.Errorf("open index %s: %w (run hashfile first)", path, ErrNotExist)
	}
	if err != nil {
		// EACCES, EROFS, EISDIR...: the *PathError says it in words,
		// where SQLite would say "unable to open database file".
		return fmt.Errorf("open index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return &notIndexError{path, "not a regular file"}
	}
	if fi.Size() == 0 {
		if !create {
			return &notIndexError{path, "empty file"}
		}
	} else {
		head := make([]byte, len(sqliteMagic))
		if _, err := io.ReadFull(f, head); err != nil || string(head) != sqliteMagic {
			return &notIndexError{path, "not an SQLite database"}
		}
	}
	// SQLite opens path-wal and path-shm beside it, read and write, and
	// creates them where they are missing (they are kept: see init).
	dir := filepath.Dir(path)
	for _, suffix := range []string{"-wal", "-shm"} {
		_, err := os.Lstat(path + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			err = unix.Access(dir, unix.W_OK|unix.X_OK)
			if err != nil {
				return fmt.Errorf("open index %s: cannot create files in %s: %w", path, dir, err)
			}
			continue
		}
		if err == nil {
			err = unix.Access(path+suffix, unix.R_OK|unix.W_OK)
		}
		if err != nil {
			return fmt.Errorf("open index %s: cannot open %s: %w", path, path+suffix, err)
		}
	}
	return nil
}

// private returns a warning if path, its -wal or -shm file can be read
// or written by others than the owner, or its directory written (where
// they could replace them). A directory others may only list is not
// warned of: the files in it are still private, and a home directory is
// often so.
func private(path string) []string {
	var open []string
	note := func(p string, mask fs.FileMode) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&mask != 0 {
			open = append(open, fmt.Sprintf("%s mode %04o", p, fi.Mode().Perm()))
		}
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		note(p, 0o077)
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	note(dir, 0o022)
	if open == nil {
		return nil
	}
	return []string{fmt.Sprintf("index %s is open to group or others (%s; want 0600 files in a 0700 directory): it names files and holds sums of their blocks",
		path, strings.Join(open, ", "))}
}

// Warnings says what the caller should tell the user about the index
// (that others may read it).
func (ix *Index) Warnings() []string { return ix.warnings }

// idleConns is how many connections an index keeps open once used.
const idleConns = 8

// busyTimeout is how long a connection waits for another's lock.
const busyTimeout = 10 * time.Second

// defaultCache is the page cache of each connection of an index opened
// to be written (Open): 64 MiB (a negative cache_size is in KiB).
const defaultCache = -65536

// Every connection keeps the write-ahead log and its shared memory beside
// the index when it closes (SQLITE_FCNTL_PERSIST_WAL), the log emptied
// (journal_size_limit 0, in dsn): SQLite would otherwise delete both, and
// the next connection must make the shared memory again, 32 KiB, which a
// full filesystem refuses (SQLITE_IOERR_SHMSIZE). With them kept,
// findsame reads the index on a full disk, where space is most wanted.
func init() {
	sqlite.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, _ string) error {
		fc, ok := c.(sqlite.FileControl)
		if !ok {
			return errors.New("the SQLite driver has no file controls")
		}
		if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
			return fmt.Errorf("keep the write-ahead log: %w", err)
		}
		return nil
	})
}

// dsn is the SQLite URI of path. The path is escaped: a '?' or '#' in it
// would end it, and a '%' start an escape.
func dsn(path string, cache int) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // and clean: no "//" that would start an authority
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() +
		fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)&_pragma=cache_size(%d)&_pragma=page_size(%d)&_pragma=journal_size_limit(0)&_txlock=immediate",
			busyTimeout.Milliseconds(), cache, pageSize)
}

// pageSize is the size of a page of a new index. An index keeps the size
// it was made with (the README says how to change it). With 16 KiB
// pages rather than SQLite's 4 KiB, a snapshot host's night took 9-15%
// less time where a day of hourly snapshots added 480,000 rows, and
// about as long where one snapshot did: a quarter of the pages to look
// up, cache, write to the log and copy back, for the same rows (a
// block's row of sums, 1 MiB, spans 64 pages, not 256).
const pageSize = 16384

// Close closes the database.
func (ix *Index) Close() error {
	ix.mu.Lock()
	for _, st := range ix.stmts {
		st.Close()
	}
	ix.stmts = nil
	ix.mu.Unlock()
	return ix.db.Close()
}

// Path is the file the index lives in.
func (ix *Index) Path() string { return ix.path }

// DB gives tests and benchmarks direct access to the database.
func (ix *Index) DB() *sql.DB { return ix.db }

// Version is the schema version this binary writes: that of its last
// migration.
func Version() int {
	m, err := migrations()
	if err != nil || len(m) == 0 {
		return 0
	}
	return m[len(m)-1].version
}

// A migration takes an index from version-1 to version, the number its
// file name starts with (001_init.sql is version 1).
type migration struct {
	version int
	name    string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(schema.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	var m []migration
	for _, name := range names {
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name does not start with its version", name)
		}
		m = append(m, migration{v, name})
	}
	slices.SortFunc(m, func(a, b migration) int { return a.version - b.version })
	for i, mi := range m {
		if mi.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", mi.name, i+1)
		}
	}
	return m, nil
}

// identity is what an SQLite database says of itself.
type identity struct {
	appID   int32
	version int
	tables  []string
}

// identify reads what the database says of itself, in one statement:
// in one snapshot, whatever another process commits meanwhile.
func identify(q interface {
	QueryRow(query string, args ...any) *sql.Row
}) (identity, error) {
	var id identity
	var tables string
	err := q.QueryRow(`SELECT
		(SELECT application_id FROM pragma_application_id()),
		(SELECT user_version FROM pragma_user_version()),
		(SELECT coalesce(group_concat(name, char(10)), '') FROM sqlite_schema
			WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\')`).Scan(&id.appID, &id.version, &tables)
	if err != nil {
		return id, err
	}
	if tables != "" {
		id.tables = strings.Split(tables, "\n")
		slices.Sort(id.tables)
	}
	return id, nil
}

// empty says the database holds nothing yet: a new index.
func (id identity) empty() bool {
	return id.appID == 0 && id.version == 0 && len(id.tables) == 0
}

// ours says the database is an index: it carries ApplicationID, or it
// was made before indexes did and has their tables.
func (id identity) ours() bool {
	return id.appID == ApplicationID ||
		id.appID == 0 && id.version >= 1 && slices.Contains(id.tables, "files")
}

func (id identity) refusal(path string) error {
	tables := strings.Join(id.tables, ", ")
	if tables == "" {
		tables = "none"
	}
	return &notIndexError{path, fmt.Sprintf("application_id %#08x, tables: %s", uint32(id.appID), tables)}
}

// setUp checks that the database is an index (or, for create, empty),
// puts it in WAL mode and migrates it.
func (ix *Index) setUp(create bool) error {
	id, err := identify(ix.db)
	if err != nil {
		return err
	}
	if !id.ours() && !(create && id.empty()) {
		return id.refusal(ix.path)
	}
	latest := Version()
	if id.version > latest {
		return newerError(id.version, latest)
	}
	// Nothing was written to a file that is not an index: now it is
	// safe to switch it to WAL (a no-op when it is already).
	if err := ix.wal(); err != nil {
		return err
	}
	if id.appID == ApplicationID && id.version == latest {
		return nil
	}
	if err := ix.migrate(create); err != nil {
		return err
	}
	if id.version > 0 {
		ix.noteUpgrade(id.version, latest)
	}
	return nil
}

// noteUpgrade tells, among the warnings, that an index was migrated from
// version from to to, and how much of its file the migrations left free
// (013_blocks_rowid.sql copies every sum): later writes reuse it, and
// VACUUM gives it back to the filesystem.
func (ix *Index) noteUpgrade(from, to int) {
	free := ix.freeBytes()
	msg := fmt.Sprintf("index %s upgraded from format %d to %d", ix.path, from, to)
	if free >= 1<<20 {
		msg += fmt.Sprintf("; %d MiB of the file is now free pages, which later writes reuse (SQLite's VACUUM gives them back to the filesystem)", free>>20)
	}
	ix.warnings = append(ix.warnings, msg)
}

// wal puts the database in WAL mode. Two connections switching a
// database at once can each hold the lock the other needs: SQLite then
// returns SQLITE_BUSY at once instead of waiting, so the switch is tried
// again (for as long as busy_timeout).
func (ix *Index) wal() error {
	deadline := time.Now().Add(busyTimeout)
	for {
		var mode string
		err := ix.db.QueryRow("PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil && mode != "wal" {
			err = fmt.Errorf("journal mode is %q", mode)
		}
		if err == nil {
			return nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return fmt.Errorf("set WAL mode: %w", err)
		}
		time.Sleep(time.Duration(1+rand.IntN(10)) * time.Millisecond)
	}
}

func newerError(have, latest int) error {
	return fmt.Errorf("index format version %d is newer than this tool's %d: upgrade the tools", have, latest)
}

// migrate applies each migration past the index's user_version in its own
// write transaction, reading the version inside it: another process that
// opens the index at the same time waits, then finds it done. It marks the
// index with ApplicationID, and refuses an index newer than this binary.
func (ix *Index) migrate(create bool) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	for {
		done, err := ix.migrateOne(all, create)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the migration that follows the index's version, if
// any, and says whether the index is now current.
func (ix *Index) migrateOne(all []migration, create bool) (done bool, err error) {
	tx, err := ix.db.Begin() // BEGIN IMMEDIATE: _txlock in the DSN
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	id, err := identify(tx)
	if err != nil {
		return false, err
	}
	if !id.ours() && !(create && id.empty()) {
		return false, id.refusal(ix.path)
	}
	if id.version > len(all) {
		return false, newerError(id.version, len(all))
	}
	var m *migration
	if id.version < len(all) {
		m = &all[id.version]
		if err := apply(tx, *m); err != nil {
			return false, ix.migrationError(*m, err)
		}
	}
	if id.appID != ApplicationID {
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA application_id = %d", int32(ApplicationID))); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		if m != nil {
			// With a large page cache, the pages are written at commit.
			err = ix.migrationError(*m, err)
		}
		return false, err
	}
	return id.version+1 >= len(all), nil
}

// apply applies migration m in tx: its SQL, what it computes in Go, and
// its version.
func apply(tx *sql.Tx, m migration) error {
	body, err := schema.FS.ReadFile(m.name)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(string(body)); err != nil {
		return err
	}
	if fill := fills[m.version]; fill != nil {
		if err := fill(tx); err != nil {
			return err
		}
	}
	_, err = tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", m.version))
	return err
}

// migrationError says which migration failed, and what a full disk means
// for the one that copies every sum (the transaction is rolled back).
func (ix *Index) migrationError(m migration, err error) error {
	err = fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, err)
	if m.version == 13 && NoRoom(err) {
		err = fmt.Errorf("%w: the upgrade copies the index's block sums (%d MiB) and needs about twice that free where the index is; nothing was changed", err, ix.sumBytes()>>20)
	}
	return err
}

// NoRoom reports whether err is SQLite finding no room left to write
// (SQLITE_FULL): the filesystem of the index, or of its write-ahead log,
// is full. Each transaction is all or nothing, so what was committed
// before is kept.
func NoRoom(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
}

// Explain returns err, and says what it means for the index at path and
// what to do when it is one of two things a host can do to an index:
//
//   - its filesystem out of room: SQLITE_FULL (NoRoom), or an I/O error
//     with less than lowRoom left there (the shared memory beside the
//     index, which a connection sizes when it opens, fails with
//     SQLITE_IOERR_SHMSIZE on a full disk). What was committed is kept.
//   - the index damaged (SQLITE_CORRUPT, SQLITE_NOTADB): a bad disk, a
//     crash of a filesystem that lost what it had acknowledged, someone
//     writing into the file. The index only holds what the files do, so
//     a new one is made from them.
func Explain(path string, err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.Code() & 0xff; {
	case code == sqlite3.SQLITE_CORRUPT || code == sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%w: the index %s is damaged: move it aside (with its -wal and -shm files) and run hashfile again, which makes a new one, reading every file once", err, path)
	case code == sqlite3.SQLITE_FULL || code == sqlite3.SQLITE_IOERR:
		n := room(path)
		if code == sqlite3.SQLITE_IOERR && (n < 0 || n >= lowRoom) {
			return err
		}
		free := "unknown"
		if n >= 0 {
			free = strconv.FormatInt(n>>10, 10) + " KiB"
		}
		return fmt.Errorf("%w: no room left for the index %s (%s free there): free some space there, or move the index (-db), and run again; what was recorded before is kept", err, path, free)
	}
	return err
}

// lowRoom is the room below which an I/O error of the index is taken for
// its filesystem being full: a write of the log is a page and a header.
const lowRoom = 1 << 20

// room returns the bytes free on the filesystem of the index at path to
// those without root's reserve (-1 if that cannot be read). Free blocks
// (f_bfree) would count what root may use, but also what ext4 keeps for
// its own metadata, which no file gets: on a full disk, they are not 0.
func room(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// freeBytes returns the bytes of the index's free pages (0 if that
// cannot be read).
func (ix *Index) freeBytes() int64 {
	var n int64
	ix.db.QueryRow("SELECT (SELECT freelist_count FROM pragma_freelist_count()) * (SELECT page_size FROM pragma_page_size())").Scan(&n)
	return n
}

// sumBytes returns the bytes of block sums the index stores (0 if that
// cannot be read): reading a blob's length reads no more than its row's
// first page.
func (ix *Index) sumBytes() int64 {
	var n int64
	ix.db.QueryRow("SELECT coalesce(sum(length(hashes)), 0) FROM blocks").Scan(&n)
	return n
}

// fills are what a migration computes in Go after its SQL, in the same
// transaction, by the version it migrates to.
var fills = map[int]func(*sql.Tx) error{9: fillItems}

// fillItems records the digest of every file's recorded extents
// (files.items, schema 9), so that an index made before it compares
// extents as a new one does. Files with no extents recorded get the
// digest of none, as Put gives them.
func fillItems(tx *sql.Tx) error {
	set, err := tx.Prepare("UPDATE files SET items = ? WHERE id = ?")
	if err != nil {
		return err
	}
	defer set.Close()
	rows, err := tx.Query("SELECT " + extentColumns + " FROM extents e ORDER BY file, logical")
	if err != nil {
		return err
	}
	var ext []fiemap.Extent
	file := int64(-1)
	flush := func() error {
		if file < 0 {
			return nil
		}
		_, err := set.Exec(ItemsDigest(ext), file)
		return err
	}
	err = extentRows(rows, func(id int64, e fiemap.Extent) error {
		if id != file {
			if err := flush(); err != nil {
				return err
			}
			file, ext = id, ext[:0]
		}
		ext = append(ext, e)
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	_, err = tx.Exec("UPDATE files SET items = ? WHERE items IS NULL", ItemsDigest(nil))
	return err
}

// BlockSize returns the block size the index was built with, or 0 for an
// index that holds nothing yet.
func (ix *Index) BlockSize() (int, error) {
	var v string
	err := ix.db.QueryRow("SELECT value FROM meta WHERE key = 'block_size'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read block size: %w", err)
	}
	return strconv.Atoi(v)
}

// ErrBlockSize is returned when a run asks for another block size than the
// index was built with.
var ErrBlockSize = errors.New("block size differs from the index's")

// UseBlockSize records bs for a new index, or checks that it is the one an
// existing index was built with.
func (ix *Index) UseBlockSize(bs int) error {
	have, err := ix.BlockSize()
	if err != nil {
		return err
	}
	switch {
	case have == 0:
		if _, err = ix.db.Exec("INSERT INTO meta(key, value) VALUES('block_size', ?)", strconv.Itoa(bs)); err != nil {
			return fmt.Errorf("record the block size: %w", err)
		}
	case have != bs:
		return fmt.Errorf("%w: index %s was built with %d-byte blocks, not %d (use another -db, or -b %d)",
			ErrBlockSize, ix.path, have, bs, have)
	}
	return nil
}

// File is one inode as the index records it.
type File struct {
	ID   int64
	Path string // "" when no path is known for it now
	// Identity.Vol and Ino name the file for good (see fsys.Volume); the
	// index records no Dev, and Ctime always.
	fsys.Identity
	// NoCOW says whether the file has btrfs's NOCOW attribute, or keeps
	// no checksums of its data (fiemap.NoDataSum) where hashfile could
	// see it: NoCOWSet, NoCOWUnset, or NoCOWUnknown for a file recorded
	// before the index kept it.
	NoCOW int8
	// UID is the owner, or UIDUnknown for a file recorded before the
	// index kept it.
	UID int64
	// Changed is the write sequence number of the last transaction that
	// changed the row, its sums, extents, NOCOW attribute or owner (see
	// WriteSeq); 0 for a row not changed since the index kept it. Files
	// reads it; writes ignore it.
	Changed int64
	// SumsChanged is Changed but where the row's extents alone were
	// recorded again since (Tx.SetExtents): then the Changed of the
	// transaction before, which changed its sums, identity, NOCOW
	// attribute or owner. Files reads it; writes ignore it.
	SumsChanged int64
	// Items is the ItemsDigest of the extents recorded of the file, 0
	// where not known. Reads set it; writes ignore it.
	Items int64
	// CloneOf is the id of the row this one was recorded as a copy of
	// (Tx.Copy), and CloneSeq that row's Changed then; 0 if
	// none. While that row's Changed is still CloneSeq, this row holds its
	// sums and extents. Files reads them; writes ignore them.
	CloneOf, CloneSeq int64
}

// Values of File.NoCOW.
const (
	NoCOWUnknown int8 = -1
	NoCOWUnset   int8 = 0
	NoCOWSet     int8 = 1
)

// UIDUnknown is File.UID for a file whose owner is not recorded.
const UIDUnknown = -1

// Legacy reports whether v is a volume recorded by an older version of the
// index under its st_dev, whose stable names are not known yet.
func Legacy(v fsys.Volume) bool { return strings.HasPrefix(v.FS, "dev:") }

// LegacyVolume is the name an older index's device dev has until hashfile
// learns its stable names.
func LegacyVolume(dev uint64) fsys.Volume {
	return fsys.Volume{FS: "dev:" + strconv.FormatUint(dev, 10)}
}

// MaxFileID returns the largest id of a file (File.ID), or 0 when there
// is none or it cannot be read: at least as many as there are files, and
// cheap to ask.
func (ix *Index) MaxFileID(ctx context.Context) int64 {
	var n sql.NullInt64
	if err := ix.db.QueryRowContext(ctx, "SELECT max(id) FROM files").Scan(&n); err != nil {
		return 0
	}
	return n.Int64
}

// Files calls fn for every file in the index, in no particular order,
// on the caller's goroutine. Two readers, each on a connection of its
// own, read alternate ranges of ids (filesRange at a time), each in a
// read of its own: the driver's work for each column (a lock and unlock
// of the connection's mutex in modernc's SQLite) is most of the cost of
// a row, and two cores share it. A file written meanwhile is read as it
// is before or after that write.
func (ix *Index) Files(ctx context.Context, fn func(File) error) error {
	vols, err := ix.volumesByID(ctx)
	if err != nil {
		return err
	}
	maxID := ix.MaxFileID(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	type part struct {
		files []File
		err   error
	}
	const readers = 2
	var parts [readers]chan part
	for r := range readers {
		ch := make(chan part, 1)
		parts[r] = ch
		wg.Go(func() {
			defer close(ch)
			for lo := int64(r) * filesRange; lo <= maxID; lo += readers * filesRange {
				files, err := ix.filesIn(ctx, vols, lo, lo+filesRange)
				select {
				case ch <- part{files, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		})
	}
	for k := int64(0); k*filesRange <= maxID; k++ {
		p, ok := <-parts[k%readers]
		if !ok {
			return ctx.Err()
		}
		if p.err != nil {
			return p.err
		}
		for _, f := range p.files {
			if err := fn(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// filesRange is how many file ids Files reads at a time.
const filesRange = 8192

// filesIn returns the files whose ids are from lo up to hi.
func (ix *Index) filesIn(ctx context.Context, vols map[int64]fsys.Volume, lo, hi int64) ([]File, error) {
	// Without the join, a row costs three columns less and a string.
	st, err := ix.stmt(`SELECT id, coalesce(path, ''), vol, ino, size, mtime, ctime,
		coalesce(nocow, -1), coalesce(uid, -1), changed, coalesce(clone_of, 0), coalesce(clone_seq, 0), coalesce(sums_seq, changed) FROM files
		WHERE id >= ? AND id < ?`)
	if err != nil {
		return nil, fmt.Errorf("read files: %w", err)
	}
	rows, err := st.QueryContext(ctx, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read files: %w", err)
	}
	defer rows.Close()
	out := make([]File, 0, hi-lo) // grown row by row, the copies cost a fifth of the reading
	r := newRow()
	for rows.Next() {
		if err := r.scan(rows, 13); err != nil {
			return nil, fmt.Errorf("read files: %w", err)
		}
		v, ok := vols[r.int64(2)]
		if !ok {
			return nil, fmt.Errorf("read files: file %d on volume %d, which the index does not have", r.int64(0), r.int64(2))
		}
		out = append(out, File{ID: r.int64(0), Path: r.text(1), NoCOW: int8(r.int64(7)), UID: r.int64(8),
			Identity: fsys.Identity{Vol: v, Ino: uint64(r.int64(3)), Size: r.int64(4), Mtime: r.int64(5), Ctime: r.int64(6)},
			Changed:  r.int64(9), CloneOf: r.int64(10), CloneSeq: r.int64(11), SumsChanged: r.int64(12)})
		if r.err != nil {
			return nil, fmt.Errorf("read files: %w", r.err)
		}
	}
	return out, rows.Err()
}

// volumesByID returns the volumes of the index by their row ids.
func (ix *Index) volumesByID(ctx context.Context) (map[int64]fsys.Volume, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT id, fsid, subvol FROM volumes")
	if err != nil {
		return nil, fmt.Errorf("read volumes: %w", err)
	}
	defer rows.Close()
	m := make(map[int64]fsys.Volume)
	for rows.Next() {
		var id int64
		var v fsys.Volume
		if err := rows.Scan(&id, &v.FS, &v.Subvol); err != nil {
			return nil, fmt.Errorf("read volumes: %w", err)
		}
		m[id] = v
	}
	return m, rows.Err()
}

// WriteSeq returns the write sequence number of the last write
// transaction that changed a file (0 if none did): a file whose
// File.Changed is larger changed after it was read.
func (ix *Index) WriteSeq(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	err := ix.db.QueryRowContext(ctx, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'write_seq'").Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read write sequence: %w", err)
	}
	return v.Int64, nil
}

// Instance returns the name the index was given when it was made (or
// migrated to the version that gives one), which no other index has.
func (ix *Index) Instance(ctx context.Context) (string, error) {
	var v string
	if err := ix.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'instance'").Scan(&v); err != nil {
		return "", fmt.Errorf("read the index's instance: %w", err)
	}
	return v, nil
}

// Volumes returns every volume recorded, with its filesystem's type and
// block size (0 where not known).
func (ix *Index) Volumes(ctx context.Context) (map[fsys.Volume]fsys.Info, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT fsid, subvol, fstype, fsblock FROM volumes")
	if err != nil {
		return nil, fmt.Errorf("read volumes: %w", err)
	}
	defer rows.Close()
	m := make(map[fsys.Volume]fsys.Info)
	for rows.Next() {
		var in fsys.Info
		if err := rows.Scan(&in.FS, &in.Subvol, &in.Magic, &in.BlockSize); err != nil {
			return nil, fmt.Errorf("read volumes: %w", err)
		}
		m[in.Volume] = in
	}
	return m, rows.Err()
}

// Walked returns, for each volume walked whole by a complete run, what
// that walk saw (see Tx.SetWalked).
func (ix *Index) Walked(ctx context.Context) (map[fsys.Volume]string, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT fsid, subvol, walked FROM volumes WHERE walked != ''")
	if err != nil {
		return nil, fmt.Errorf("read volumes: %w", err)
	}
	defer rows.Close()
	m := make(map[fsys.Volume]string)
	for rows.Next() {
		var v fsys.Volume
		var w string
		if err := rows.Scan(&v.FS, &v.Subvol, &w); err != nil {
			return nil, fmt.Errorf("read volumes: %w", err)
		}
		m[v] = w
	}
	return m, rows.Err()
}

// Retries returns, for each volume, the directories, by inode number,
// that held what the last run to record its walk could not read: the
// next run walks below them again (see Tx.SetRetries).
func (ix *Index) Retries(ctx context.Context) (map[fsys.Volume][]uint64, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT v.fsid, v.subvol, r.ino FROM retry r JOIN volumes v ON v.id = r.vol")
	if err != nil {
		return nil, fmt.Errorf("read retry: %w", err)
	}
	defer rows.Close()
	m := make(map[fsys.Volume][]uint64)
	for rows.Next() {
		var v fsys.Volume
		var ino int64
		if err := rows.Scan(&v.FS, &v.Subvol, &ino); err != nil {
			return nil, fmt.Errorf("read retry: %w", err)
		}
		m[v] = append(m[v], uint64(ino))
	}
	return m, rows.Err()
}

// RootsWalked returns, for each root whose last complete walk recorded it,
// what that walk saw of the root's btrfs subvolume (see Tx.PutRoot).
func (ix *Index) RootsWalked(ctx context.Context) (map[string]string, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT path, walked FROM roots WHERE walked != ''")
	if err != nil {
		return nil, fmt.Errorf("read roots: %w", err)
	}
	defer rows.Close()
	m := make(map[string]string)
	for rows.Next() {
		var path, w string
		if err := rows.Scan(&path, &w); err != nil {
			return nil, fmt.Errorf("read roots: %w", err)
		}
		m[path] = w
	}
	return m, rows.Err()
}

// Roots returns the volume each root was on at the last complete run.
func (ix *Index) Roots(ctx context.Context) (map[string]fsys.Volume, error) {
	rows, err := ix.db.QueryContext(ctx, "SELECT r.path, v.fsid, v.subvol FROM roots r JOIN volumes v ON v.id = r.vol")
	if err != nil {
		return nil, fmt.Errorf("read roots: %w", err)
	}
	defer rows.Close()
	m := make(map[string]fsys.Volume)
	for rows.Next() {
		var path string
		var v fsys.Volume
		if err := rows.Scan(&path, &v.FS, &v.Subvol); err != nil {
			return nil, fmt.Errorf("read roots: %w", err)
		}
		m[path] = v
	}
	return m, rows.Err()
}
