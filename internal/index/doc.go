// Package index is the SQLite store that hashfile writes and findsame
// reads (modernc.org/sqlite, so binaries need no cgo).
//
// # Data model
//
// The schema lives in the schema package as numbered migrations; the
// version an index is at is its PRAGMA user_version, and Open migrates an
// older index and refuses a newer one.
//
//   - meta: block_size, fixed when the index is created.
//   - devices: per st_dev, the statfs magic and block size, and the ID
//     of the filesystem (btrfs subvolumes each have an st_dev, and share
//     the ID of their filesystem).
//   - files: one row per inode, with one of its paths, the identity it
//     had when hashed (dev, ino, size, mtime, ctime in ns) and whether it
//     has btrfs's NOCOW attribute.
//   - blocks: the file's block Sums (see blockhash), packed 8 bytes per
//     block, in chunks of ChunkBlocks blocks. A chunk whose blocks are all
//     zero is not stored, nor are the zero blocks at the end of a file:
//     a sparse file costs what its data costs.
//   - extents: the file's FIEMAP extents when it was hashed.
//
// A file's row, blocks and extents are written in one transaction, so an
// index killed at any moment holds each file either whole or not at all.
// The index runs in WAL mode; one writer commits batches while readers go on.
package index
