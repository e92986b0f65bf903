// Package pipeline holds the end-to-end tests of the three tools together:
// hashfile, findsame and applysame built as binaries and run, as a user
// runs them, on real loop-mounted btrfs and XFS filesystems.
//
// # What they show
//
// The SHA-256 of every file is the same after the pipeline as before; the
// space the filesystem reports freed equals what the constructed tree lets
// be freed; a second run reads no file data and plans nothing; a writer
// that rewrites files while applysame runs loses nothing; a read-only
// btrfs snapshot can be a destination.
package pipeline
