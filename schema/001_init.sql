-- The block index: one row per inode hashed, its block hashes in chunks,
-- and its extents as FIEMAP reported them when it was hashed.

-- Settings fixed when the index is created (block_size).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per filesystem seen: its statfs magic and block size, so that
-- findsame knows how each filesystem frees space.
CREATE TABLE devices (
	dev     INTEGER PRIMARY KEY,
	fstype  INTEGER NOT NULL,
	fsblock INTEGER NOT NULL
);

-- One row per inode. path is one of its names (the first the walk met); it
-- is NULL while another inode holds that name and this one has not been
-- seen under a new name yet. Times are nanoseconds since the epoch.
CREATE TABLE files (
	id    INTEGER PRIMARY KEY,
	path  TEXT UNIQUE,
	dev   INTEGER NOT NULL,
	ino   INTEGER NOT NULL,
	size  INTEGER NOT NULL,
	mtime INTEGER NOT NULL,
	ctime INTEGER NOT NULL,
	UNIQUE (dev, ino)
);

-- Block hashes of a file, in chunks of up to 65536 blocks: hashes holds 8
-- bytes per block (the first 8 bytes of the block's SHA-256, or 8 zero bytes
-- for an all-zero block). Block i of the file is at chunk i/65536.
CREATE TABLE blocks (
	file   INTEGER NOT NULL,
	chunk  INTEGER NOT NULL,
	hashes BLOB NOT NULL,
	PRIMARY KEY (file, chunk)
) WITHOUT ROWID;

-- Extents as FS_IOC_FIEMAP reported them (byte offsets and FIEMAP flags),
-- or on btrfs, where the tree search is allowed, one per file extent item,
-- with the disk extent it refers to (disk_start, disk_len; 0 if unknown).
CREATE TABLE extents (
	file       INTEGER NOT NULL,
	logical    INTEGER NOT NULL,
	physical   INTEGER NOT NULL,
	length     INTEGER NOT NULL,
	flags      INTEGER NOT NULL,
	disk_start INTEGER NOT NULL DEFAULT 0,
	disk_len   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (file, logical)
) WITHOUT ROWID;
