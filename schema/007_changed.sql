-- findsame after a small change costs little. changed is the write
-- sequence number (meta write_seq, one more for each write transaction
-- that changes a file's row, blocks or extents) of the last transaction
-- that changed the row, its sums, its extents, its NOCOW attribute or its
-- owner: findsame, which keeps a table of the sums it grouped as of a
-- write_seq, regroups only what changed after it. 0 where not known
-- (recorded before this version): findsame's first run groups everything.
ALTER TABLE files ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
