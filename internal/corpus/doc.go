// Package corpus generates deterministic trees of files for tests, demos
// and benchmarks, and computes the fixed-block oracle: the most space that
// block-level deduplication could free in a tree.
//
// # Trees
//
// Mixed writes a tree of about the requested size whose content resembles
// a working machine's: unique random files of varied sizes (some ending
// mid-block), whole-file copies, files built from 4 KiB-aligned runs of
// other files with unique filler between them, sparse holes and explicit
// zero blocks, many small files (some duplicated), a few files holding
// another file's data at an offset that is not block-aligned (which block
// deduplication cannot find), all in nested directories. About 40% of the
// bytes are duplicated content.
//
// Images writes a "host with disk images": loose files, and two sparse ext4
// images, each holding copies of many of the loose files (so their data
// sits at 4 KiB-aligned offsets inside the image file) plus files found
// only there. It makes and loop-mounts the images with scripts/fsimg, so it
// needs root and the source tree.
//
// VMs writes the disks of three virtual machines cloned from one template
// and written at random since (as many writes as 5, 20 and 60% of an
// image's blocks, 4 KiB at a time, synced every 256 writes): on btrfs the
// images hold thousands to a hundred thousand extents, and what they
// share lies in short runs.
//
// Special adds entries that tools walking a tree must not open or must
// handle with care: a FIFO, a character device like /dev/zero, a unix
// socket, symbolic links to a big file and to /dev/zero, an empty file and
// hard links to a big file.
//
// # Determinism
//
// A tree is a function of its seed and size: the same arguments give the
// same paths with the same bytes. Every file's data is a sequence of 4 KiB
// blocks, block i of a stream with seed s being the output of a PCG
// generator (math/rand/v2) seeded with (s, i). A copy, or a run taken from
// another file, is written by generating that file's blocks again, never by
// reading it or asking the filesystem to copy it: a copy made with
// cp --reflink or copy_file_range (which Go's io.Copy between files uses)
// would share storage from the start and leave nothing to deduplicate.
//
// # Oracle
//
// Ceiling reads every regular file under a directory once per inode, cuts
// it into fixed-size blocks (a partial last block is a block of its own
// length) and counts the non-zero blocks and the distinct ones by SHA-256.
// Its Ceiling, (non-zero - distinct) * block size, is what a perfect
// fixed-block deduplicator would free: the yardstick that the space
// freed by the pipeline, as statfs reports it, is held against.
package corpus
