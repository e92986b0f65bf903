-- extents_of names the row whose recorded extents are a file's too: a
-- file of a read-only snapshot recorded from its origin's row
-- (index.Tx.Adopt, index.Tx.Copy) refers to the same file extent items,
-- and holds no rows of its own in extents. Read through it, each extent
-- stored apart from the file is flagged shared (the snapshot shares it).
-- Copied, a snapshot's rows went into extents_piece at the places of its
-- origin's, leaves all over that index: most of the cost of recording a
-- snapshot's files. It always names a row that holds its own (extents_of
-- NULL); when that row's extents are recorded again or the row is
-- deleted, they pass to the first row that refers to them, which the
-- others then refer to (index.Tx dropExtents). NULL: the row's own.
ALTER TABLE files ADD COLUMN extents_of INTEGER;
CREATE INDEX files_extents_of ON files(extents_of) WHERE extents_of IS NOT NULL;
