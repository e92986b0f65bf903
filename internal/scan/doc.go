// Package scan brings the index up to date with a set of roots: the work
// of hashfile.
//
// # Data flow
//
// One walker lists regular files in the byte order of their paths and
// decides, from the identity the index holds for each inode, which need
// reading. Files are known by their volume (filesystem UUID and btrfs
// subvolume, which survive remounts; see fsys.Volume) and inode. A file is
// unchanged when its (volume, inode, size, mtime) match the index and
// either its ctime matches or it is met under a new path (a rename or a
// new hard link updates ctime but not the data); an unchanged file is not
// opened. Workers read and hash the rest in parallel and take their
// extents; one writer commits results to the index in batched
// transactions.
//
// # Memory
//
// Nothing of the whole index is held in memory. The walk of each root is
// merged with the rows the index holds under that root, read in the same
// path order a page at a time (index.Cursor): the row at the path met is
// the file's, or the path is new, and a file met under a new path is
// looked up by its volume and inode (a rename, a hard link). A row that
// the walk passes without meeting it at its path is marked gone with the
// run's scan generation; a rename of that file met later in the walk
// clears the mark. When the walk of every root has completed, what is
// marked gone with this generation is pruned, but for what lies where the
// walk could not read; an interrupted or killed run prunes nothing, its
// marks count for nothing, and the next run completes it. Of the files
// met in this run, memory holds only those the writer has not committed
// yet (inflight): a bounded number, whatever the size of the tree.
//
// A file whose size, mtime or ctime change while it is read is not
// recorded: it is reported and counted as failed, and read again next run.
// A walk is complete, and recorded as such, when every file that failed
// is one the next run looks at again: one that changed while read
// changed after the walk's generation, and a run that goes by that walk
// finds it (fiemap.Changed); for any other, the directory that holds it
// is recorded with the walk (index.Tx.SetRetries), and the next run walks
// below it again, whatever changed (subvols.withRetries), its rows at
// what failed looked at (index.Tx.Distrust). A failure that cannot be placed
// in a directory of a volume the walk met keeps the run from recording
// any walk (scanner.finish).
// So is a path that no longer leads to the inode the walk listed, through
// directories that are not symlinks: readers open files by path, looked
// up with no symlink followed, and read only that inode.
//
// # Goroutines
//
// A run (scanner) has four stages, each a method:
//
//   - walk, on one goroutine, walks the roots in turn and sends each file,
//     and the start and end of each root, on a channel to compare. It
//     alone learns the volume of each st_dev (devices, read by all under
//     its lock), asks subvols which subvolumes to enter, and reports what
//     it cannot read to unread before it sends anything that follows it,
//     so that compare never marks gone what lies there.
//   - compare, on the goroutine that called Run, owns the cursor over the
//     index; it sends files to read to the readers (jobs) and what to
//     record to the writer (ops), and adds each file it queues or renames
//     to inflight.
//   - place, on Options.Jobs goroutines, opens each file to be read and
//     puts it in an elevator by where its data begins on the device (see
//     order.go); other jobs go through first.
//   - read, on Options.Jobs goroutines, takes the jobs from the elevator
//     in the order the data lies, as far as its window allows, hashes the
//     files (sharing reuser) and sends them to the writer, or, for a file
//     it could not read, a forget, so that the writer drops it from
//     inflight.
//   - write, on one goroutine, is the only one that writes the index. It
//     applies ops in the order received; since compare sends a mark of a
//     row gone only after any rename it decided earlier, a mark never
//     undoes a rename (it applies only while the row holds the path it
//     was found missing from). It drops files from inflight, and their
//     sums from reuser, once it has committed them, then prunes when
//     compare asks, after everything else.
//
// Counters are atomic and read by the progress goroutine. Cancellation:
// an interrupt cancels the run's context; the walker stops, compare, the
// placers and the readers drain their channels without work (the readers
// closing the files placed), so that no sender
// blocks, and the writer commits what it has. When the writer fails (the
// index's disk is full, say) it cancels the context itself, so that the
// rest of the tree is not read for nothing, drains the ops, and Run
// returns its error; so does compare when a read of the index fails.
// Nothing is pruned unless the walk, compare and every write succeeded.
//
// # What is stored is read once
//
// On btrfs, where the tree search is allowed (root), a file all of whose
// extents were hashed before -- in another file, a snapshot, a reflinked
// copy, recorded or earlier in the same run -- takes its sums from them
// and is not read (see reuser). A btrfs subvolume unchanged since its
// last complete walk (its generation the same, and met at the same path:
// a snapshot renamed or moved is walked again, its files found renamed)
// is not walked at all (see subvols), unless it holds other subvolumes or
// has a filesystem mounted below it, nor is a root whose subvolume is
// unchanged since the root's last complete walk (subvols.rootKey, on the
// same terms); its rows count as seen and
// unchanged, counted by the index rather than read
// (index.Cursor.SkipUnder), all but those of other volumes, which a
// subvolume once at that path left there. A subvolume changed since is
// first asked, with a tree search that skips
// what is older than its last complete walk (fiemap.Changed), what
// changed since. Where no directory did (a read-only snapshot that
// applysame deduplicated into, a tree whose files were only written in
// place), it is not walked either: its rows count as seen, but those of
// the files whose inode or extent items changed, which are looked at
// again where the index has them (recheck), as if the walk had met them
// there. Where directories changed, the walk goes only below them (those
// below no other that changed, found by their inode numbers with
// BTRFS_IOC_INO_LOOKUP: subvols.partsOf), and the rest is skimmed as
// above; so does the walk of a root (a subvolume's top directory given,
// or a directory inside one), skimmed whole where no directory changed,
// unless the root itself changed (subvols.rootParts). A directory none
// of whose entries was added, removed or renamed, and that was not moved
// itself, has its inode item as it was; one below it that is not is
// below one that changed. A row below
// a changed directory that the walk does not meet, of a file with
// another name where the walk does not go (a hard link whose other name
// was removed), is found there (subvols.nameLeft, scanner.elsewhere). A
// file whose inode item changed that the index has no row of (empty when
// walked, say, and written in place since) is in a directory that need
// not have changed: the walk hands it over where it is now, in its place
// in path order, as if it had met it there, without listing that
// directory (subvols.unknownFiles, singlesOf, scanner.single).
// Where the walk goes, each file is taken as its directory lists it (no
// lstat: the walk hands its name and inode number) where the index has
// that inode at that path and the search shows its items as recorded
// (see subvols.listed, scanner.asListed); the others are stat'ed and
// handled as in any walk. Where the subvolume's top directory changed,
// or another subvolume or a mount lies in it, it is walked whole. A
// directory whose inode item was rewritten for its access time alone
// (relatime) does not count as changed: the walk records the ctime of
// each directory it meets in a volume it searched, but a read-only
// snapshot, whose directories do not change (subvols.dirTo), with
// the volume's generation when it began, in the index's table dirs, and
// a directory whose ctime is the one recorded by a walk no newer than
// the complete walk the run goes by lists what that walk listed
// (subvols.entriesChanged). A complete run drops the records of the
// directories no longer in the trees it walked whole (dirRegions). An unchanged file
// among those whose extent items changed (deduplicated, reflinked,
// defragmented: its data and identity the same) has its extents mapped
// and recorded again, without reading its data, so that the extents the
// index records stay those the files have. A read-only snapshot walked
// for the first time that was made after the last complete walk of the
// subvolume it was taken from (its origin) was over (its run records the
// subvolume's generation as it ends: a snapshot made while the walk was
// under way may hold a file as it was before the walk met it changed)
// is asked which files' extent items changed since that walk began:
// what was written in the snapshot after it was made, before it was made
// read-only (btrfs receive makes each incremental snapshot of its parent
// so, then applies the stream), is among them. Where the walk meets its top directory, the
// walker first has the writer record its files from the origin's rows,
// all at once, in a few statements (index.Tx.Adopt), and tells compare to
// read its rows again once committed: the snapshots the walker decides
// one after the other (those of one directory) are recorded in one
// transaction, which compare has the writer commit before it reads on
// (a commit writes every page each adoption changed, most of the indexes
// on the rows it refers to: see adoption); the snapshot is then handled
// as one whose last complete walk had been its origin's: skimmed where no
// directory changed since (a snapshot taken after a night's
// deduplication, before the day's changes), every file recorded, and no row of the origin given another
// path by this run first, the files whose items changed and those whose
// origin's rows this run wrote before looked at again; walked only below
// the directories that changed since, and skimmed elsewhere, where some
// did (snapshots taken every hour): the origin's records of its
// directories, which are the snapshot's, tell which changed in access
// time alone, and where the origin has none (a read-only one: a
// received snapshot's), a directory with the entries the origin's has,
// unchanged since its walk, did not change either (btrfs receive writes
// the times of every directory it writes into: subvols.sameEntries); the
// files in the directories walked go as listed, as in a subvolume
// walked again; and a row of the origin this run gave another path must
// have both paths below those directories (subvols.origin, movedWithin);
// otherwise walked whole, and what changed since handled as in any
// subvolume walked again (a file read again, renamed, pruned, or its
// extents recorded again). A file met
// without a row (and every file of a snapshot met only below a root
// inside it) is handled alone: one with the identity the origin's row has
// takes that row's sums, and its extents too where they are among the
// others, without being opened: the others have their extent items read
// by a tree search through the snapshot's top directory (see
// subvols.origin, fromOrigin). A read-only snapshot whose origin has no
// complete walk made before it (a first run, or an origin deleted since)
// is walked whole, and its files are handled so against an older
// read-only snapshot of the same origin, unchanged since it was made,
// that the walk met before it (or against its origin, where that is
// read-only, met before it and unchanged since the snapshot was made:
// btrfs receive's incremental snapshots, see subvols.originMet): where that one's rows are committed,
// each file whose items did not change since that one was made, with the
// identity its row has, takes that row (see subvols.fromSibling). A
// missing root, or one found on another volume than at the last run,
// stops the run before anything is pruned.
package scan
