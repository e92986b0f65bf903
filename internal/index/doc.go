// Package index is the SQLite store that hashfile writes and findsame
// reads (modernc.org/sqlite, so binaries need no cgo).
//
// # Data model
//
// The schema lives in the schema package as numbered migrations; the
// version an index is at is its PRAGMA user_version, and Open migrates an
// older index and refuses a newer one.
//
//   - meta: block_size, fixed when the index is created; instance, a
//     random name no other index has (findsame's table of sums names the
//     index it was made for); scan_gen and write_seq, counters described
//     below.
//   - volumes: one row per filesystem, or btrfs subvolume, by names that
//     survive remounts (fsys.Volume: the filesystem's UUID and the
//     subvolume's id), with its statfs magic and block size, and what the
//     last complete walk of a btrfs subvolume saw (walked: its generation
//     and the walk's options). Devices recorded by an older index become
//     volumes named "dev:" and their st_dev (LegacyVolume) until hashfile
//     meets that st_dev again and names them (Tx.PutVolume).
//   - files: one row per inode, known by (volume, inode), with one of its
//     paths, the state it had when hashed (size, mtime, ctime in ns), its
//     owner and whether it has btrfs's NOCOW attribute, and gone: the scan
//     generation (meta scan_gen, one more each hashfile run) of the run
//     that found it missing from its path, 0 if none did. A run that
//     completes prunes what it marked gone (Tx.MarkGone, Tx.PruneGone);
//     the marks of a run that did not complete count for nothing. changed
//     is the write sequence number (meta write_seq, one more for each
//     write transaction that changes a file) of the last transaction that
//     changed the row, its sums, extents, NOCOW attribute or owner:
//     findsame regroups only the files changed after the write_seq its
//     kept table of sums was made at (see package sumtab). clone_of and
//     clone_seq name the row a file of a read-only snapshot was recorded
//     from (Tx.Copy) and that row's changed then: while it
//     is unchanged, the file holds its sums and extents. blocks_of names
//     the row whose blocks hold the file's sums when it shares another's
//     (Tx.Copy records the files of a read-only snapshot so): sums are
//     stored once however many snapshots hold them, and pass to the first
//     row sharing them when the row holding them is recorded again or
//     deleted. extents_of does the same for the extents: a snapshot's
//     file recorded from its origin's row refers to the extent items that
//     row holds (read through it, flagged shared), and holds none of its
//     own until its extents are recorded again. items is a
//     digest of the extents recorded (ItemsDigest), written with them, so
//     that hashfile compares the extent items it finds with it rather
//     than reading the extents back. Paths
//     are read in their byte order (Cursor), as the walk meets them, so
//     that hashfile holds no more of the index than a page at a time.
//   - blocks: the file's block Sums (see blockhash), packed 8 bytes per
//     block, in chunks of ChunkBlocks blocks, under the row that holds
//     them (files.blocks_of, else the file's own). A chunk whose blocks are all
//     zero is not stored, nor are the zero blocks at the end of a file:
//     a sparse file costs what its data costs.
//   - extents: the file's extents when it was hashed (under the row that
//     holds them, files.extents_of, else the file's own): FIEMAP's, or on
//     btrfs as root the file extent items, each with its disk extent
//     (disk_start, disk_len), the generation that wrote it (gen) and its
//     offset in the extent's data (ext_off). Pieces finds the files that
//     hold a disk extent's bytes, whose sums serve any other file that
//     refers to the same extent (see fiemap.Extent for why that is exact).
//   - roots: the volume each root was on at the last complete run, so that
//     a mount point whose filesystem is not mounted is not taken for a
//     tree whose files are all gone, and how many files that run met
//     under it (the total of hashfile's progress while it walks).
//   - dirs: on btrfs, the ctime of directories hashfile met, by (volume,
//     inode), with the path it met them at and the generation of their
//     subvolume when the walk began (Tx.PutDir, Index.Dirs): a directory
//     whose inode item was rewritten with that ctime had its access time
//     written alone. A complete walk of a tree drops the records of those
//     no longer in it (Tx.PruneDirs).
//   - retry: on btrfs, the directories, by (volume, inode), that held
//     what the last run to record a subvolume's walk could not read (a
//     file with an I/O error, a path too long to open): the next run
//     walks below them again, though nothing changed there (Tx.SetRetries,
//     Index.Retries); those of a volume no file is left of (a snapshot
//     deleted) go when a run prunes (Tx.PruneRetries).
//
// # The file
//
// An index is an SQLite database whose PRAGMA application_id is
// ApplicationID, 0x53414d45 ("SAME" in ASCII), set when it is created.
// Open refuses any other file: one that is not SQLite, or an SQLite
// database with another application_id, or with none and not the tables
// of an index (indexes made before the application_id was set have
// user_version 1 or more and a files table; Open sets it on them).
// OpenExisting, for readers, also refuses an empty file and never creates
// a schema. Nothing is written into a file before it is known to be an
// index (not even the switch to WAL).
//
// Migrations run each in a write transaction (BEGIN IMMEDIATE) that reads
// user_version itself, so that tools opening a new or older index at the
// same time wait for each other and each finds the work done.
//
// The index names every file and holds sums of their blocks: a new one
// is created 0600 (its -wal and -shm files take its mode), and missing
// directories above it 0700, whatever the umask. An index others can read,
// or in a directory others can write, is opened with a warning
// (Index.Warnings).
//
// A file's row, blocks and extents are written in one transaction, so an
// index killed at any moment holds each file either whole or not at all.
// The index runs in WAL mode; one writer commits batches while readers go on.
// The log, emptied, and its shared memory stay beside the index when the
// last connection closes, so that a full filesystem does not keep a reader
// from opening it; a writer there fails with SQLITE_FULL (NoRoom), having
// changed nothing since its last commit (Explain says so).
package index
