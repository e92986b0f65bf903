-- Directories whose access time alone changed. On btrfs, hashfile walks
-- only below the directories whose inode items were rewritten since the
-- last complete walk; under relatime, listing a directory rewrites its
-- inode item for its access time alone. Each directory a walk meets is
-- recorded with its ctime, which an added, removed or renamed entry, or
-- the directory's own move, changes and an access does not; with the
-- generation of its subvolume when the walk began, so that only a record
-- made by a complete walk (not newer than the one a re-run starts from)
-- is believed; and with the path the walk met it at, so that a complete
-- walk of a tree drops the records of the directories no longer in it.
CREATE TABLE dirs (
	vol   INTEGER NOT NULL REFERENCES volumes(id),
	ino   INTEGER NOT NULL,
	path  TEXT NOT NULL,
	ctime INTEGER NOT NULL, -- nanoseconds
	gen   INTEGER NOT NULL,
	PRIMARY KEY (vol, ino)
) WITHOUT ROWID;
CREATE INDEX dirs_path ON dirs(vol, path);
