// Package testfs helps integration tests run on real filesystems: it
// loop-mounts fresh btrfs, XFS or ext4 images and measures what tests check
// before and after deduplication.
//
// # Mounts
//
// Mount creates a sparse image in a temporary directory, makes a filesystem
// on it and mounts it, all through scripts/fsimg at the module root, and
// returns the mountpoint. Each call gets its own image, loop device and
// mountpoint, so parallel tests do not share a filesystem.
//
// Cleanup is registered with t.Cleanup before anything is mounted, so it runs
// when the test passes, fails (t.Fatal) or panics: it unmounts (lazily if the
// filesystem stays busy), detaches the loop device and removes the image.
// Only a process killed outright (SIGKILL, a -timeout panic) can leave a
// mount behind; `scripts/fsimg umount MOUNTPOINT` removes it.
//
// # Root and CI
//
// Loop mounts need root. Without it Mount skips the test with a message
// naming the filesystem type, so the skip shows in `go test -v`. When the
// environment variable CI is true, integration tests must run, so Mount fails
// the test instead of skipping it.
//
// # Measurements
//
// SHA256Tree maps every regular file under a directory to its SHA-256, for
// content checks before and after a change. FreeBytes syncs the filesystem
// (committing the btrfs transaction, which is when freed extents are counted)
// and returns its free bytes as statfs reports them. Run runs a command and
// fails the test with its output on error.
//
// # Failing disks
//
// Corrupt overwrites, in the image of a btrfs that Mount made, the bytes
// that store a range of a file, so that btrfs fails every read of it
// with EIO (its data checksums no longer match), as a disk going bad
// does; what it returns puts them back. The kernels here have no
// device-mapper, so dm-error and dm-flakey targets cannot be used.
package testfs
