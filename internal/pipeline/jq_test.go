//go:build linux

package pipeline

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"same/internal/testfs"
)

// TestJQ runs the audit pipeline of the README through Debian's jq, which
// reads numbers as doubles: a plan survives it exactly (mtimes of files
// written today are beyond 2^53 ns), and a file whose name is not UTF-8 is
// deduplicated like any other.
func TestJQ(t *testing.T) {
	jq, err := exec.LookPath("jq")
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("jq is not installed (scripts/setup installs it): %v", err)
		}
		t.Skipf("jq is not installed: %v", err)
	}
	mnt := testfs.Mount(t, "btrfs", "256M")
	rng := rand.New(rand.NewPCG(3, 3))
	data := random(rng, 2*MiB)
	write(t, filepath.Join(mnt, "a"), data)
	write(t, filepath.Join(mnt, "bad\xff\xfename"), data)
	write(t, filepath.Join(mnt, "small-a"), data[:4096])
	write(t, filepath.Join(mnt, "small-b"), data[:4096])
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)

	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	planOut, stderr, code := tool(t, nil, "findsame", "-db", db, "-no-rewrite")
	if code != 0 {
		t.Fatalf("findsame: exit %d\n%s", code, stderr)
	}
	cmd := exec.Command(jq, "-c", "select(.len >= 1048576)")
	cmd.Stdin = strings.NewReader(planOut)
	filtered, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	if n := strings.Count(string(filtered), "\n"); n != 1 || !strings.Contains(string(filtered), `"path_b64"`) {
		t.Fatalf("jq kept %d lines; want the one of the 2 MiB files, with path_b64:\n%s\nplan:\n%s", n, filtered, planOut)
	}
	results, applyErr, code := tool(t, filtered, "applysame")
	if code != 0 {
		t.Fatalf("applysame: exit %d\n%s\n%s", code, results, applyErr)
	}
	allDone(t, results)
	if freed := testfs.FreeBytes(t, mnt) - free; freed < 2*MiB {
		t.Errorf("freed %d bytes; want at least %d", freed, 2*MiB)
	}
	if after := testfs.SHA256Tree(t, mnt); !equalMaps(before, after) {
		t.Errorf("content changed")
	}
}
