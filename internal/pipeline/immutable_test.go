//go:build linux

package pipeline

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/testfs"
)

// TestImmutable: the kernel shares nothing into a file with the immutable
// attribute (chattr +i), not even for root (EPERM). Of three copies of
// 4 MiB, the second immutable, findsame plans the third against the first
// and leaves the immutable one alone, saying so: 4 MiB freed, applysame
// done, no error. With -whole-files it keeps the immutable copy as the
// source and frees both others, 8 MiB, with nothing to say; so does the
// block planning when the immutable copy is the source it chose anyway. A plan made from the recorded
// extents, which cannot know, gets applysame's clear error instead.
func TestImmutable(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		for _, mode := range []string{"blocks", "whole-files", "recorded", "source"} {
			t.Run(fstype+"/"+mode, func(t *testing.T) {
				mnt := testfs.Mount(t, fstype, "512M")
				dir := filepath.Join(mnt, "tree")
				data := random(rand.New(rand.NewPCG(21, 22)), 4*MiB)
				for _, name := range []string{"a", "b", "c"} {
					write(t, filepath.Join(dir, name), data)
				}
				b := filepath.Join(dir, "b")
				if mode == "source" {
					b = filepath.Join(dir, "a") // the source planned anyway
				}
				testfs.Run(t, "chattr", "+i", b)
				t.Cleanup(func() { testfs.Run(t, "chattr", "-i", b) })
				before := testfs.SHA256Tree(t, dir)
				free := testfs.FreeBytes(t, mnt)
				db := filepath.Join(t.TempDir(), "index.db")
				if _, stderr, code := tool(t, nil, "hashfile", "-db", db, dir); code != 0 {
					t.Fatalf("hashfile: exit %d\n%s", code, stderr)
				}
				args := []string{"-db", db}
				if mode == "whole-files" || mode == "recorded" {
					args = append(args, "-"+mode)
				}
				planOut, fsErr, code := tool(t, nil, "findsame", args...)
				if code != 0 {
					t.Fatalf("findsame: exit %d\n%s", code, fsErr)
				}
				results, applyErr, applyCode := tool(t, []byte(planOut), "applysame")

				warning := fmt.Sprintf("findsame: %s: immutable (chattr +i): nothing is deduplicated into it\n", b)
				want := map[string]struct {
					dsts    []string
					freed   int64
					warned  bool
					summary string
					code    int
				}{
					"blocks":      {[]string{"c"}, 4 * MiB, true, "3 files (0 changed since hashed, 0 already shared when hashed, 1 immutable)", 0},
					"whole-files": {[]string{"a", "c"}, 8 * MiB, false, "3 files (0 changed since hashed, 0 already shared when hashed, 0 immutable)", 0},
					"recorded":    {[]string{"b", "c"}, 4 * MiB, false, "3 files (0 changed since hashed, 0 already shared when hashed, 0 immutable)", 3},
					"source":      {[]string{"b", "c"}, 8 * MiB, false, "3 files (0 changed since hashed, 0 already shared when hashed, 0 immutable)", 0},
				}[mode]
				var dsts []string
				for _, d := range dedupeLines(t, planOut) {
					for _, r := range d.Dst {
						dsts = append(dsts, strings.TrimPrefix(r.Path, dir+"/"))
					}
				}
				slices.Sort(dsts)
				if fmt.Sprint(dsts) != fmt.Sprint(want.dsts) {
					t.Errorf("destinations planned %v; want %v\n%s", dsts, want.dsts, planOut)
				}
				if strings.Contains(fsErr, warning) != want.warned || !strings.Contains(fsErr, want.summary) {
					t.Errorf("findsame said %q; want the warning %q (%v) and %q", fsErr, warning, want.warned, want.summary)
				}
				if est := planFreed(t, planOut); est != want.freed && mode != "recorded" {
					t.Errorf("plan estimates %d bytes freed; want %d\n%s", est, want.freed, planOut)
				}
				if applyCode != want.code {
					t.Errorf("applysame: exit %d; want %d\n%s", applyCode, want.code, applyErr)
				}
				if mode == "recorded" {
					msg := fmt.Sprintf(": %s: operation not permitted: the destination is immutable (chattr +i)\n", b)
					if !strings.Contains(applyErr, msg) || !strings.Contains(results, `"errno":"EPERM","error":"operation not permitted: the destination is immutable (chattr +i)"`) {
						t.Errorf("applysame said %q and %q; want %q", applyErr, results, msg)
					}
				} else {
					allDone(t, results)
				}
				if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, want.freed) {
					t.Errorf("freed %d bytes as statfs reports; want %d (and up to %d of metadata)\n%s\n%s", freed, want.freed, metadataSlack, results, applyErr)
				}
				if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
				}
			})
		}
	}
}

// TestImmutableLeftover: a file overwritten in place keeps its old extent
// while any of it is referred to, and findsame plans a rewrite to free
// the rest (TestLeftoverFrees); one made immutable since cannot take the
// rewrite's copy back, so none is planned.
func TestImmutableLeftover(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(23, 24))
	p := filepath.Join(dir, "vm.img")
	write(t, p, random(rng, 8*MiB))
	testfs.Sync(t, p)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(random(rng, 6*MiB), MiB); err != nil {
		t.Fatal(err)
	}
	f.Close()
	testfs.Sync(t, p)
	db := filepath.Join(t.TempDir(), "index.db")
	if plan := planFor(t, db, dir); !strings.Contains(plan, `"type":"rewrite"`) {
		t.Fatalf("no rewrite planned before chattr +i:\n%s", plan)
	}
	testfs.Run(t, "chattr", "+i", p)
	t.Cleanup(func() { testfs.Run(t, "chattr", "-i", p) })
	if plan := planFor(t, db, dir); plan != "" {
		t.Errorf("planned for an immutable file:\n%s", plan)
	}
}
