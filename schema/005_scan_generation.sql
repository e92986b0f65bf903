-- Memory that does not grow with the index. hashfile compares each root's
-- walk, met in path order, with the rows under that root, read in path
-- order a page at a time, instead of loading every file first. A row
-- whose path the walk passes without meeting it there is marked gone with
-- the scan generation of the run (meta scan_gen, one more each run); a
-- rename or a new hash of the file, met under another path later in the
-- same run, clears the mark. A run that completes prunes what it marked;
-- a run interrupted or killed prunes nothing, and its marks, of an older
-- generation, count for nothing: the next run marks again what is still
-- gone. Only what is missing is written, so an unchanged re-run writes
-- nothing per file. 0 where not gone.
ALTER TABLE files ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;
CREATE INDEX files_gone ON files(gone) WHERE gone != 0;

-- How many files the last complete run met under each root: the total
-- that hashfile's progress shows while a re-run walks. 0 where not known.
ALTER TABLE roots ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
