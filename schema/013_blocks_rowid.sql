-- blocks becomes an ordinary table (rowid, and an index on its key). As a
-- WITHOUT ROWID table its rows lay in the b-tree of their key, and a row of
-- sums (up to 512 KiB) spills over onto overflow pages: to compare its key
-- with the one sought, SQLite reads the whole row, for every row it meets
-- on the way down. Reading each chunk by its key took twice as long as a
-- scan of the table, eight times as long in no order, and more as the
-- index grew: a fifth of findsame's time at 150 million blocks went to
-- reading the chunks of the plan's digests. Now a lookup walks the small
-- index on the key, then reads the one row. Rows are copied in key order,
-- so that their rowids follow it and a scan in key order reads the table
-- in order too.
--
-- The copy takes the size of the table again in the file until it is
-- reused: the pages of the old table are free pages of the index, and
-- later writes take them first (VACUUM gives them back to the disk).
CREATE TABLE blocks_new (
	file   INTEGER NOT NULL,
	chunk  INTEGER NOT NULL,
	hashes BLOB NOT NULL,
	PRIMARY KEY (file, chunk)
);
INSERT INTO blocks_new(file, chunk, hashes) SELECT file, chunk, hashes FROM blocks ORDER BY file, chunk;
DROP TABLE blocks;
ALTER TABLE blocks_new RENAME TO blocks;
