-- Which files can share storage: FIDEDUPERANGE works only within one
-- filesystem, and on btrfs only between files that both have, or both
-- lack, the NOCOW attribute (chattr +C).

-- fsid names the filesystem a device belongs to: on btrfs its UUID, the
-- same for every subvolume (each has an st_dev of its own); elsewhere
-- statfs's f_fsid. '' for devices recorded before this version, until
-- hashfile meets them again; findsame then goes by st_dev.
ALTER TABLE devices ADD COLUMN fsid TEXT NOT NULL DEFAULT '';

-- nocow is 1 for a file with the NOCOW attribute, 0 for one without, and
-- NULL where not known yet: files recorded before this version, whose
-- attribute hashfile reads (without reading their data) on its next run.
ALTER TABLE files ADD COLUMN nocow INTEGER;
