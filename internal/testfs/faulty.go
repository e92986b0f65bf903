//go:build linux

package testfs

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"same/internal/fiemap"
)

// Corrupt makes reads of n bytes at offset off of the file at path fail
// with EIO, as a disk going bad makes them: it overwrites, in the image
// of the btrfs Mount made at mnt, the bytes that store them (so that
// their data checksums no longer match), with the filesystem unmounted,
// and mounts it again, which also drops the cached data. The range must
// lie in one extent, uncompressed. It returns what heals the image: the
// bytes put back, unmounted and mounted again.
//
// (A device-mapper error target would do it below the filesystem, but
// the kernels tests run on here have no device-mapper.)
func Corrupt(t testing.TB, mnt, path string, off, n int64) (heal func()) {
	t.Helper()
	image := imageOf(t, "Corrupt", mnt)
	dev := strings.TrimSpace(Run(t, "findmnt", "-n", "-o", "SOURCE", "-M", mnt))
	at := deviceOffset(t, dev, path, off, n)
	saved := rewriteImage(t, mnt, image, at, n, func(b []byte) {
		for i := range b {
			b[i] = ^b[i]
		}
	})
	return func() {
		t.Helper()
		rewriteImage(t, mnt, image, at, n, func(b []byte) { copy(b, saved) })
	}
}

// rewriteImage unmounts mnt, changes the n bytes at offset at of image
// in place by change, writes them back to the disk, and mounts image at
// mnt again, which also drops the filesystem's cached data. It returns
// the bytes as they were.
func rewriteImage(t testing.TB, mnt, image string, at, n int64, change func([]byte)) []byte {
	t.Helper()
	Run(t, "umount", mnt)
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	old := make([]byte, n)
	if _, err := img.ReadAt(old, at); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), old...)
	change(b)
	if _, err := img.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	if err := img.Sync(); err != nil {
		t.Fatal(err)
	}
	Run(t, "mount", "-o", "loop", image, mnt)
	return old
}

// deviceOffset returns where on dev (a single-device btrfs) the n bytes
// at off of path are stored: FIEMAP gives their btrfs logical address,
// btrfs-map-logical the device offset.
func deviceOffset(t testing.TB, dev, path string, off, n int64) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	ext, err := fiemap.Extents(f)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := fiemap.At(ext, off)
	if !ok || off+n > e.End() || e.Flags&(fiemap.FlagEncoded|fiemap.FlagDataInline) != 0 {
		t.Fatalf("%s: [%d, %d) is not in one plain extent: %+v", path, off, off+n, ext)
	}
	logical := e.Physical + off - e.Logical
	// "mirror 1 logical L physical P device D", a line per copy.
	out := strings.TrimSpace(Run(t, "btrfs-map-logical", "-l", strconv.FormatInt(logical, 10), "-b", strconv.FormatInt(n, 10), dev))
	fields := strings.Fields(out)
	if strings.Contains(out, "\n") || len(fields) < 6 || fields[4] != "physical" {
		t.Fatalf("btrfs-map-logical %d: want one copy, got %q", logical, out)
	}
	p, err := strconv.ParseInt(fields[5], 10, 64)
	if err != nil {
		t.Fatalf("btrfs-map-logical %d: %q", logical, out)
	}
	return p
}

// DamageSQLite damages the SQLite database at path as a bad disk would:
// the first byte of every page but the first (the page's kind, on a
// b-tree page) is overwritten, so that SQLite finds every table and
// index but the schema malformed. It must have no -wal content.
func DamageSQLite(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int(binary.BigEndian.Uint16(b[16:18]))
	if size == 1 {
		size = 65536
	}
	if size < 512 || len(b)%size != 0 {
		t.Fatalf("DamageSQLite(%s): page size %d, file of %d bytes", path, size, len(b))
	}
	for at := size; at < len(b); at += size {
		b[at] = 0xee
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
