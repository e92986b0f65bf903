-- Rows recorded as clones before (clone_of, with clone_seq the changed of
-- that row still) hold a copy of their origin's extents: they refer to
-- those of the first row up the chain of clones that is no clone (or to
-- those that row refers to), and their copies go. The owners are found
-- first, into a temporary table: set from the recursive view inside the
-- UPDATE, with the owner's row joined in, an index of a million files
-- took more than 10 minutes.
CREATE TEMP TABLE clone_owners AS
WITH RECURSIVE up(id, root) AS (
	SELECT f.id, o.id FROM files f JOIN files o ON o.id = f.clone_of AND o.changed = f.clone_seq
	UNION
	SELECT up.id, o.id FROM up JOIN files r ON r.id = up.root JOIN files o ON o.id = r.clone_of AND o.changed = r.clone_seq
)
SELECT up.id, coalesce(o.extents_of, o.id) owner FROM up JOIN files o ON o.id = up.root
	WHERE NOT EXISTS (SELECT 1 FROM files p WHERE p.id = o.clone_of AND p.changed = o.clone_seq);
UPDATE files SET extents_of = c.owner FROM temp.clone_owners c WHERE c.id = files.id AND files.extents_of IS NULL;
DROP TABLE temp.clone_owners;
DELETE FROM extents WHERE file IN (SELECT id FROM files WHERE extents_of IS NOT NULL);
