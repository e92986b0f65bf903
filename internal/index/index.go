package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"same/internal/fsys"
	"same/schema"

	_ "modernc.org/sqlite"
)

// ChunkBlocks is the number of block Sums stored in one blocks row.
const ChunkBlocks = 65536

// Index is an open index database.
type Index struct {
	db   *sql.DB
	path string
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

// ErrNotExist is returned by OpenExisting when there is no index at path.
var ErrNotExist = errors.New("no index")

// Open opens the index at path, creating it (and its directory) if needed,
// and migrates it to the current schema.
func Open(path string) (*Index, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	return open(path)
}

// OpenExisting opens an index that must already exist.
func OpenExisting(path string) (*Index, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open index %s: %w (run hashfile first)", path, ErrNotExist)
	}
	return open(path)
}

func open(path string) (*Index, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(10000)&_pragma=cache_size(-65536)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	ix := &Index{db: db, path: path}
	if err := ix.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return ix, nil
}

// Close closes the database.
func (ix *Index) Close() error { return ix.db.Close() }

// Path is the file the index lives in.
func (ix *Index) Path() string { return ix.path }

// DB gives tests and benchmarks direct access to the database.
func (ix *Index) DB() *sql.DB { return ix.db }

// Version is the schema version this binary writes.
func Version() int {
	n, _ := migrations()
	return len(n)
}

func migrations() ([]string, error) {
	names, err := fs.Glob(schema.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// migrate applies each migration past the index's user_version in its own
// transaction, and refuses an index newer than this binary.
func (ix *Index) migrate() error {
	names, err := migrations()
	if err != nil {
		return err
	}
	var have int
	if err := ix.db.QueryRow("PRAGMA user_version").Scan(&have); err != nil {
		return err
	}
	if have > len(names) {
		return fmt.Errorf("index format version %d is newer than this tool's %d: upgrade the tools", have, len(names))
	}
	for i := have; i < len(names); i++ {
		body, err := schema.FS.ReadFile(names[i])
		if err != nil {
			return err
		}
		tx, err := ix.db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to version %d (%s): %w", i+1, names[i], err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
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
		_, err = ix.db.Exec("INSERT INTO meta(key, value) VALUES('block_size', ?)", strconv.Itoa(bs))
		return err
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
	// Vol and Ino name the file for good (see fsys.Volume).
	Vol   fsys.Volume
	Ino   uint64
	Size  int64
	Mtime int64 // ns since the epoch
	Ctime int64 // ns since the epoch
	// NoCOW says whether the file has btrfs's NOCOW attribute:
	// NoCOWSet, NoCOWUnset, or NoCOWUnknown for a file recorded before
	// the index kept it.
	NoCOW int8
	// UID is the owner, or UIDUnknown for a file recorded before the
	// index kept it.
	UID int64
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

// Files calls fn for every file in the index, in no particular order.
func (ix *Index) Files(ctx context.Context, fn func(File) error) error {
	rows, err := ix.db.QueryContext(ctx, `SELECT f.id, coalesce(f.path, ''), v.fsid, v.subvol, f.ino, f.size, f.mtime, f.ctime,
		coalesce(f.nocow, -1), coalesce(f.uid, -1) FROM files f JOIN volumes v ON v.id = f.vol`)
	if err != nil {
		return fmt.Errorf("read files: %w", err)
	}
	defer rows.Close()
	r := newRow()
	for rows.Next() {
		if err := r.scan(rows, 10); err != nil {
			return fmt.Errorf("read files: %w", err)
		}
		f := File{ID: r.int64(0), Path: r.text(1), Vol: fsys.Volume{FS: r.text(2), Subvol: uint64(r.int64(3))},
			Ino: uint64(r.int64(4)), Size: r.int64(5), Mtime: r.int64(6), Ctime: r.int64(7),
			NoCOW: int8(r.int64(8)), UID: r.int64(9)}
		if r.err != nil {
			return fmt.Errorf("read files: %w", r.err)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return rows.Err()
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
