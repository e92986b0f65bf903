//go:build linux

package pipeline

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"same/internal/testfs"
)

// TestRemount checks that identity survives a remount that changes every
// st_dev (as a reboot does): hashfile's next run reads no file data and
// prunes nothing, and a plan made before the remount applies with no stale
// line. On btrfs the tree holds a subvolume and a read-only snapshot of it,
// whose files have the same inode numbers as the subvolume's.
func TestRemount(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "400M")
			rng := rand.New(rand.NewPCG(7, 7))
			root := mnt
			if fstype == "btrfs" {
				root = filepath.Join(mnt, "live")
				testfs.Run(t, "btrfs", "subvolume", "create", root)
			}
			a := random(rng, 2*MiB)
			write(t, filepath.Join(root, "a"), a)
			write(t, filepath.Join(root, "dir", "copy-of-a"), a)
			write(t, filepath.Join(root, "b"), random(rng, 3*MiB+100))
			if fstype == "btrfs" {
				testfs.Run(t, "sync")
				testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", root, filepath.Join(mnt, "snap"))
				write(t, filepath.Join(root, "c"), a) // after the snapshot: in live only
			}
			db := filepath.Join(t.TempDir(), "index.db")
			if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
				t.Fatalf("hashfile: exit %d\n%s", code, stderr)
			}
			planOut, stderr, code := tool(t, nil, "findsame", "-db", db)
			if code != 0 || planOut == "" {
				t.Fatalf("findsame: exit %d, plan %q\n%s", code, planOut, stderr)
			}
			before := testfs.SHA256Tree(t, mnt)

			testfs.Remount(t, mnt)

			_, stderr, code = tool(t, nil, "hashfile", "-db", db, mnt)
			if code != 0 {
				t.Fatalf("hashfile after remount: exit %d\n%s", code, stderr)
			}
			if !regexp.MustCompile(`, 0 hashed \(0 from extents already hashed\), \d+ unchanged .*, 0 failed, 0 pruned(, \d+ unchanged with extents recorded again)?(, \d+ btrfs subvolumes? unchanged since the last walk)?(, \d+( btrfs subvolumes?)? looked at only where files changed)?; read 0 B in `).MatchString(stderr) {
				t.Errorf("hashfile after remount read or pruned files:\n%s", stderr)
			}
			results, applyErr, code := tool(t, []byte(planOut), "applysame")
			if code != 0 || strings.Contains(results, "stale") {
				t.Errorf("applysame of the plan made before the remount: exit %d\n%s\n%s", code, results, applyErr)
			}
			allDone(t, results)
			if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
				t.Errorf("content changed: before %v, after %v", before, after)
			}
			if fstype == "btrfs" {
				out, err := exec.Command("btrfs", "property", "get", filepath.Join(mnt, "snap"), "ro").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "ro=true" {
					t.Errorf("snapshot: %s %v; want ro=true", out, err)
				}
			}
			if _, err := os.Stat(db); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
