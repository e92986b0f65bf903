-- A piece of a disk extent is found from where it lies in the extent's
-- data. Once deduplicated, one large extent can hold thousands of pieces
-- (small files each sharing a part of a large one); finding the pieces
-- that hold an offset among all of the extent's, for each piece of each
-- file hashed, made hashfile's first run on a deduplicated tree grow with
-- the square of them.
DROP INDEX extents_disk;
CREATE INDEX extents_piece ON extents(disk_start, disk_len, gen, ext_off) WHERE gen != 0;
