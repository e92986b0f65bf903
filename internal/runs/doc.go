// Package runs finds duplicate runs in the index and chooses, for each, the
// source that the other copies are to share: the work of findsame.
//
// # Data model
//
// A location is (file, block). Blocks whose sums are equal and not zero
// form a group; each group has one source, and every other member is
// mapped to it. A run is a maximal stretch of consecutive destination
// blocks mapped to consecutive source blocks of one file; runs that share
// the same source range and length become one plan line with several
// destinations (at most plan.MaxDests each). Because each block belongs to
// one group and is either its source or mapped once, no two destination
// ranges in a plan overlap, and no range is both source and destination.
//
// # Choice of source
//
// btrfs frees an extent only when nothing references any part of it, so
// the copies that should become destinations are those whose extents the
// run covers whole. The source of a group is the member in the largest
// file (ties: the first path, then the lowest block), so a loose file found
// inside a disk image points into the image, and the loose file's extents,
// wholly covered, are freed. Within one file, the source is the first
// occurrence.
//
// # What is never planned
//
// Zero blocks (and so holes and unwritten extents) on their own, blocks in
// inline extents, pairs that already share their physical block, and
// pairs in one btrfs disk extent: a re-run after applysame plans nothing.
// Zero blocks are planned only inside a run, where both sides hold them at
// the same place between blocks that match (see bridge): on btrfs each
// one left out would keep its whole extent alive. With Options.Live, the extents compared
// are those the files have now, not those recorded when they were hashed:
// deduplication changes extents but not the identity hashfile checks, so
// the index alone cannot know what applysame shared since. Files changed
// or gone since hashed are left out. On btrfs, of the files whose extents
// hashfile recorded from the tree (as root), only those with a mapping
// that the recorded extents do not show shared are mapped again (see
// settle), and of those, not the ones the last run's plan left alone
// whose extents were all recorded shared (see trusted):
// hashfile records again the extents of files deduplicated since, so on a
// host deduplicated before, and on one of snapshots and reflinked copies,
// a re-run maps what changed rather than every file with a copy.
//
// # Memory and time
//
// The sums are read from the index once, in one sequential scan. When
// their (sum, location) pairs fit in Options.Budget they are grouped in
// memory; otherwise the scan writes them to temporary files, one per
// range of the sum space (a partition), each then read back, sorted and
// grouped in memory on its own. The mappings grouping makes go to
// temporary files in the same way, one per range of destinations, each
// sorted and chained in turn, in destination order. So time grows with the
// blocks, not with their square; memory holds one partition (16 bytes a
// pair or mapping, half of Options.Budget at most) besides SQLite's page
// cache, the files, extents and runs, and the Go heap is held to the
// budget less that cache (debug.SetMemoryLimit). The disk holds the pairs
// packed, about 9 to 10 bytes each (the sum, and the location as a step
// from the pair before it in its partition), and the mappings, 16 bytes
// each, while findsame runs. Temporary files are unlinked as soon as
// they are made: nothing is left whatever ends the process. Pairs and
// mappings are sorted in place by a radix sort, which needs no second
// buffer.
package runs
