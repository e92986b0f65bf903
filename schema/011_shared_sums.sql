-- blocks_of names the row whose blocks hold a file's sums when they are
-- another's: a file of a read-only snapshot recorded from its origin's
-- row (index.Tx.Copy) shares them instead of holding a copy, so that the
-- index grows with the data stored, not with the snapshots that refer to
-- it. It always names a row that holds its own (blocks_of NULL); when
-- that row is recorded again or deleted, the sums pass to the first row
-- that shares them (index.Tx clear). NULL: the row's own blocks.
ALTER TABLE files ADD COLUMN blocks_of INTEGER;
CREATE INDEX files_blocks_of ON files(blocks_of) WHERE blocks_of IS NOT NULL;
-- A file of more than 16 KiB recorded with the same extents as another
-- (the digest of its items and its size: a file of a snapshot, a
-- reflinked copy) and the same sums, compared byte for byte, shares them
-- too (index.Tx.Put). Smaller files hold less than this index would cost.
-- The WHERE term must stay the one Put asks with, for SQLite to use it.
CREATE INDEX files_items ON files(items, size) WHERE items IS NOT NULL AND size > 16384;

-- Rows recorded as clones before (clone_of, with clone_seq the changed of
-- that row still) hold a copy of their origin's sums: they share the sums
-- of the first row up the chain of clones that is no clone, and their
-- copies go.
WITH RECURSIVE up(id, root) AS (
	SELECT f.id, o.id FROM files f JOIN files o ON o.id = f.clone_of AND o.changed = f.clone_seq
	UNION
	SELECT up.id, o.id FROM up JOIN files r ON r.id = up.root JOIN files o ON o.id = r.clone_of AND o.changed = r.clone_seq
)
UPDATE files SET blocks_of = (SELECT up.root FROM up WHERE up.id = files.id AND NOT EXISTS (
		SELECT 1 FROM files r JOIN files o ON o.id = r.clone_of AND o.changed = r.clone_seq WHERE r.id = up.root))
	WHERE id IN (SELECT id FROM up);
DELETE FROM blocks WHERE file IN (SELECT id FROM files WHERE blocks_of IS NOT NULL);
