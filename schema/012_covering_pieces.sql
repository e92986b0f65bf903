-- findsame looks, on every run, for the disk extents that no reference
-- covers whole (runs.markLeftovers: a GROUP BY over every extent with a
-- key), which needs each reference's length. Without it in the index,
-- SQLite read the table's row of every extent for it, a seek each: most
-- of findsame's time on a snapshot host's night when the index was not
-- cached. With it, the GROUP BY reads the index alone.
DROP INDEX extents_piece;
CREATE INDEX extents_piece ON extents(disk_start, disk_len, gen, ext_off, length) WHERE gen != 0;
