-- items is a digest of a file's recorded extents (index.ItemsDigest), set
-- whenever they are: hashfile compares the extent items that a tree search
-- finds changed (or that a new snapshot's file holds) with it, instead of
-- reading the file's extents back row by row, which took most of a
-- re-run's CPU after a deduplication had rewritten the tree leaves of
-- every file. NULL where not known (rows recorded before this version):
-- their extents are read back and compared.
ALTER TABLE files ADD COLUMN items INTEGER;
