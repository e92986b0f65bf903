-- extents_flagged indexes the few extents that are compressed (FIEMAP's
-- ENCODED, 0x8) or inline (DATA_INLINE, 0x200): findsame reads which
-- files have them before grouping, and without it scanned every extent
-- row, a tenth of a re-run after a small change. The expression must stay
-- the one index.FlaggedFiles asks with, for SQLite to use the index.
CREATE INDEX extents_flagged ON extents(file, flags) WHERE flags & 520 != 0;
