-- What is stored is hashed once. On btrfs a file extent item names its
-- disk extent (disk_start, disk_len), the transaction that wrote it (gen)
-- and where the item's range lies in the extent's data (ext_off). Outside
-- NOCOW files those bytes never change while the extent exists, and no
-- other extent ever has the same (disk_start, disk_len, gen); so a file
-- whose every range is a piece of an extent already hashed -- in a
-- snapshot, a reflinked copy -- takes its sums from the index instead of
-- being read. 0 where not known (FIEMAP, or recorded before this version).
ALTER TABLE extents ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE extents ADD COLUMN ext_off INTEGER NOT NULL DEFAULT 0;
CREATE INDEX extents_disk ON extents(disk_start, disk_len, gen) WHERE gen != 0;

-- Re-runs cost what changed. walked is what a btrfs subvolume's last
-- complete walk saw: its generation (the transaction that last changed
-- anything in it) and the options that shape a walk; while both stay the
-- same, hashfile leaves the subvolume unwalked and all its files as they
-- are. '' where never walked whole.
ALTER TABLE volumes ADD COLUMN walked TEXT NOT NULL DEFAULT '';
