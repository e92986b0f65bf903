package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/testfs"
)

// bindMount mounts dir on mnt (made if needed) until the test ends; the
// unmount runs before the cleanups registered earlier, such as those of
// the filesystems involved.
func bindMount(t *testing.T, dir, mnt string) {
	t.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	testfs.Run(t, "mount", "--bind", dir, mnt)
	t.Cleanup(func() { testfs.Run(t, "umount", mnt) })
}

// With -x, hashfile stays on the filesystem of each PATH: a filesystem
// mounted under it is neither walked nor named, and its mount point is
// counted skipped; without -x it is met, and, an ext4 that cannot
// deduplicate, named and not walked.
func TestOneFS(t *testing.T) {
	btrfs := testfs.Mount(t, "btrfs", "256M")
	ext4 := testfs.Mount(t, "ext4", "64M")
	tree := filepath.Join(btrfs, "tree")
	for i, name := range []string{"a", "sub/b"} {
		writeFile(t, filepath.Join(tree, name), randomBytes(uint64(i), 10000))
	}
	for i, name := range []string{"c", "d/e"} {
		writeFile(t, filepath.Join(ext4, name), randomBytes(uint64(10+i), 10000))
	}
	bindMount(t, ext4, filepath.Join(tree, "sub", "mnt"))
	warning := "hashfile: ext4 at " + filepath.Join(tree, "sub", "mnt") + " cannot deduplicate: not walked\n"

	tests := []struct {
		name    string
		args    []string
		want    []string // indexed, relative to tree
		skipped int      // the mount point, with -x
		warn    string
	}{
		{"-x", []string{"-x"}, []string{"a", "sub/b"}, 1, ""},
		{"without -x", nil, []string{"a", "sub/b"}, 0, warning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "index.db")
			_, stderr, err := hashfile(t, "", append(tt.args, "-db", db, tree)...)
			if err != nil {
				t.Fatalf("hashfile %s = %v\n%s", tt.args, err, stderr)
			}
			var got []string
			for p := range maps.Keys(indexed(t, db)) {
				got = append(got, strings.TrimPrefix(p, tree+"/"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("indexed = %q; want %q", got, tt.want)
			}
			if !strings.HasPrefix(stderr, tt.warn) || strings.Count(stderr, "cannot deduplicate") != strings.Count(tt.warn, "cannot deduplicate") {
				t.Errorf("stderr = %q; want it to start %q and hold no other warning", stderr, tt.warn)
			}
			checkSummary(t, stderr, counts{seen: len(tt.want), hashed: len(tt.want), skipped: tt.skipped, read: int64(len(tt.want)) * 10000})
		})
	}
}
