-- findsame after a small change costs little. changed is the write
-- sequence number (meta write_seq, one more for each write transaction
-- that changes a file's row, blocks or extents) of the last transaction
-- that changed the row, its sums, its extents, its NOCOW attribute or its
-- owner: findsame, which keeps a table of the sums it grouped as of a
-- write_seq, regroups only what changed after it. 0 where not known
-- (recorded before this version): findsame's first run groups everything.
ALTER TABLE files ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;

-- clone_of is, for a row that hashfile recorded as a copy of another (a
-- file of a read-only snapshot, with the sums and extents of the row of
-- its origin, Tx.Copy and Tx.MarkClone), that row's id, and clone_seq the
-- row's changed then; NULL otherwise, and again once the row is written.
-- While that row's changed is still clone_seq, this row holds its sums,
-- at the same physical places: findsame adds such a file to the groups of
-- its origin without looking them up again.
ALTER TABLE files ADD COLUMN clone_of INTEGER;
ALTER TABLE files ADD COLUMN clone_seq INTEGER;

-- instance names this index for good, so that findsame's table of sums
-- kept beside it is not taken for the table of another index made since
-- at the same path.
INSERT OR IGNORE INTO meta(key, value) VALUES('instance', lower(hex(randomblob(16))));
