//go:build linux

package pipeline

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/testfs"
)

// TestInlineRewrite: a file of 411 bytes, in live and in three read-only
// snapshots, refers to the last block of a 360 KiB extent that nothing
// else refers to. The plan rewrites the file (its copy, under btrfs's
// max_inline, is kept inline) and shares it into the snapshots' copies.
// btrfs shares an inline extent into a file that had a regular one by
// writing its bytes into the file's page cache: until they are written
// back, FIEMAP shows the old extent, where the snapshots' copies still
// lie, and a look for storage shared already found the line done without
// the kernel. Every copy must leave the extent, and the extent be freed.
func TestInlineRewrite(t *testing.T) {
	mnt, live := liveSubvolume(t)
	rng := rand.New(rand.NewPCG(28, 28))
	const tail = 411
	big := random(rng, 360<<10+tail)
	bigPath, fPath := filepath.Join(live, "big"), filepath.Join(live, "f")
	write(t, bigPath, big)
	write(t, fPath, big[360<<10:])
	testfs.Run(t, "sync")
	// f refers to big's last block: both ranges end at EOF.
	src, err := os.Open(bigPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := dedupe.Range(context.Background(), src, 360<<10, tail, []dedupe.Dest{{File: f}}, 0)
	src.Close()
	f.Close()
	if out[0].Status != dedupe.Deduped {
		t.Fatalf("sharing big's last block into f: %+v", out[0])
	}
	old := physical(t, fPath)
	// big is written again: its old extent is f's alone, and 360 KiB of
	// it is referred to by nothing.
	write(t, bigPath, random(rng, len(big)))
	testfs.Run(t, "sync")
	for _, s := range []string{"snap1", "snap2", "snap3"} {
		testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", live, filepath.Join(mnt, s))
	}
	copies := []string{fPath}
	for _, s := range []string{"snap1", "snap2", "snap3"} {
		copies = append(copies, filepath.Join(mnt, s, "f"))
	}
	for _, c := range copies {
		if p := physical(t, c); p != old {
			t.Fatalf("%s lies at %d, not at %d with f", c, p, old)
		}
	}
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, mnt); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	planOut, stderr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 || !strings.Contains(planOut, `"type":"rewrite"`) || strings.Count(planOut, "\n") != 2 {
		t.Fatalf("findsame: exit %d; want a rewrite and a dedupe line\n%s\n%s", code, planOut, stderr)
	}
	before := testfs.SHA256Tree(t, mnt)
	if freed := applyFreed(t, mnt, planOut); freed < 360<<10-metadataSlack {
		t.Errorf("statfs reports %d bytes freed; want about 360 KiB\n%s", freed, planOut)
	}
	for _, c := range copies {
		if p := physical(t, c); p == old {
			t.Errorf("%s still lies in the old extent, at %d", c, p)
		}
	}
	if after := testfs.SHA256Tree(t, mnt); len(after) != len(before) {
		t.Errorf("%d files after applysame, %d before", len(after), len(before))
	} else {
		for p, s := range before {
			if after[p] != s {
				t.Errorf("%s changed: SHA-256 %s, was %s", p, after[p], s)
			}
		}
	}
}

// physical returns where the first byte of path lies (0 inline), its
// dirty pages written back first.
func physical(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ext, err := fiemap.Extents(f)
	if err != nil || len(ext) == 0 {
		t.Fatalf("%s: extents %v, %v", path, ext, err)
	}
	if ext[0].Flags&fiemap.FlagDataInline != 0 {
		return 0
	}
	return ext[0].Physical
}
