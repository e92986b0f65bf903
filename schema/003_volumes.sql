-- Identity that survives remounts and reboots. st_dev is handed out when a
-- filesystem (or a btrfs subvolume) is first reached after mounting, so a
-- file is now known by its volume -- the filesystem's UUID and, on btrfs,
-- the subvolume's id -- and its inode.

-- One row per filesystem, or btrfs subvolume, seen: its stable names, and
-- its statfs magic and block size so that findsame knows how it frees
-- space. Devices recorded before this version become volumes named
-- 'dev:' and their st_dev, with subvolume 0, until hashfile meets that
-- st_dev again and learns its names (an index upgraded and re-run before a
-- remount re-reads nothing); findsame leaves their files out.
CREATE TABLE volumes (
	id      INTEGER PRIMARY KEY,
	fsid    TEXT NOT NULL,
	subvol  INTEGER NOT NULL,
	fstype  INTEGER NOT NULL,
	fsblock INTEGER NOT NULL,
	UNIQUE (fsid, subvol)
);
INSERT INTO volumes(fsid, subvol, fstype, fsblock)
	SELECT 'dev:' || dev, 0, fstype, fsblock FROM devices;
INSERT OR IGNORE INTO volumes(fsid, subvol, fstype, fsblock)
	SELECT DISTINCT 'dev:' || dev, 0, 0, 0 FROM files;

-- files, keyed by (vol, ino) instead of (dev, ino); uid is the owner
-- (NULL where not known yet: hashfile fills it in without reading data).
CREATE TABLE files_v3 (
	id    INTEGER PRIMARY KEY,
	path  TEXT UNIQUE,
	vol   INTEGER NOT NULL REFERENCES volumes(id),
	ino   INTEGER NOT NULL,
	size  INTEGER NOT NULL,
	mtime INTEGER NOT NULL,
	ctime INTEGER NOT NULL,
	nocow INTEGER,
	uid   INTEGER,
	UNIQUE (vol, ino)
);
INSERT INTO files_v3(id, path, vol, ino, size, mtime, ctime, nocow)
	SELECT f.id, f.path, v.id, f.ino, f.size, f.mtime, f.ctime, f.nocow
	FROM files f JOIN volumes v ON v.fsid = 'dev:' || f.dev AND v.subvol = 0;
DROP TABLE files;
ALTER TABLE files_v3 RENAME TO files;
DROP TABLE devices;

-- The volume each root given to hashfile was on at its last complete run:
-- a root found on another volume (a mount point whose filesystem is not
-- mounted) is refused rather than pruned.
CREATE TABLE roots (
	path TEXT PRIMARY KEY,
	vol  INTEGER NOT NULL REFERENCES volumes(id)
) WITHOUT ROWID;
