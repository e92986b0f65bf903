-- Directories whose access time alone changed. On btrfs, hashfile walks
-- only below the directories whose inode items were rewritten since the
-- last complete walk; under relatime, listing a directory rewrites its
-- inode item for its access time alone. Each directory hashfile enters
-- where that matters is recorded with its ctime, which an added, removed
-- or renamed entry, or the directory's own move, changes and an access
-- does not; and with the generation of its subvolume when the walk that
-- met it began, so that only a record made by a complete walk (not newer
-- than the one a re-run starts from) is believed.
CREATE TABLE dirs (
	vol   INTEGER NOT NULL REFERENCES volumes(id),
	ino   INTEGER NOT NULL,
	ctime INTEGER NOT NULL, -- nanoseconds
	gen   INTEGER NOT NULL,
	PRIMARY KEY (vol, ino)
) WITHOUT ROWID;
