-- Directories to walk again. On btrfs, a run whose walk met a file or
-- directory it could not read (an I/O error, a path too long to open)
-- still records what it saw of each subvolume and root (volumes.walked,
-- roots.walked), so that the next run looks only at what changed since;
-- but what failed may not change, and the tree search would not show it
-- again. The directory that held it is kept here, by its inode, with the
-- path the walk met it at, and the next run walks below it again,
-- whatever changed. A run that records a subvolume's walk replaces its
-- rows with the directories of its own failures there; one that records
-- a root's walk, the rows whose paths lie below that root.
CREATE TABLE retry (
	vol  INTEGER NOT NULL REFERENCES volumes(id),
	ino  INTEGER NOT NULL,
	path TEXT NOT NULL,
	PRIMARY KEY (vol, ino)
) WITHOUT ROWID;
