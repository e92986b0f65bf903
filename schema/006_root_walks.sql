-- Extents recorded again. hashfile records again the extents of unchanged
-- files whose extent items changed since the last complete walk
-- (deduplicated, reflinked, defragmented), asking btrfs which changed
-- since the generation that walk saw. A subvolume walked whole keeps it in
-- volumes.walked; a root that lies inside a subvolume without being its
-- top directory keeps it here: walked is what the last complete walk of
-- the root saw of its subvolume (its generation and the options that
-- shape a walk, as volumes.walked), '' where not known or not btrfs.
ALTER TABLE roots ADD COLUMN walked TEXT NOT NULL DEFAULT '';
