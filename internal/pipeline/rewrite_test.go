//go:build linux

package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"same/internal/plan"
	"same/internal/testfs"
)

// rewriteTrees are trees on btrfs whose runs cover destination extents
// only in part, with the bytes the pipeline must free: each destination
// extent whole, less what its rewrite writes.
var rewriteTrees = []struct {
	name  string
	files func(rng *rand.Rand) map[string][]byte
	freed int64
}{
	{
		// mosaic holds the first half of a and the middle of b between
		// unique filler; it is the largest, so it is the source, and a and b
		// (2 MiB extents, half covered) are rewritten: each frees 2 MiB and
		// writes 1 MiB.
		name: "mosaic",
		files: func(rng *rand.Rand) map[string][]byte {
			a, b := random(rng, 2*MiB), random(rng, 2*MiB)
			return map[string][]byte{
				"a": a, "b": b,
				"mosaic": bytes.Join([][]byte{random(rng, MiB/4), a[:MiB], random(rng, MiB/4), b[MiB/2 : 3*MiB/2], random(rng, MiB/4)}, nil),
			}
		},
		freed: 2 * MiB,
	},
	{
		// The image holds copies of two loose files: it is the source, and
		// the loose files' extents are covered whole. Nothing is rewritten.
		name: "image-holds-loose-files",
		files: func(rng *rand.Rand) map[string][]byte {
			l1, l2 := random(rng, MiB/2), random(rng, 3*MiB/4)
			return map[string][]byte{
				"loose/l1": l1, "loose/l2": l2,
				"disk.img": bytes.Join([][]byte{random(rng, MiB), l1, random(rng, MiB), l2, random(rng, MiB)}, nil),
			}
		},
		freed: MiB/2 + 3*MiB/4,
	},
	{
		// Two images of 8 MiB share 6 MiB: the second's extent is three
		// quarters covered, so it is rewritten: 8 MiB freed, 2 MiB written.
		name: "images-sharing-most",
		files: func(rng *rand.Rand) map[string][]byte {
			shared := random(rng, 6*MiB)
			return map[string][]byte{
				"img1": append(append([]byte(nil), shared...), random(rng, 2*MiB)...),
				"img2": append(append([]byte(nil), shared...), random(rng, 2*MiB)...),
			}
		},
		freed: 6 * MiB,
	},
}

func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		write(t, filepath.Join(dir, name), data)
	}
}

// TestRewriteFrees runs the pipeline on each tree and checks that statfs
// reports the expected bytes freed (metadata aside: see metadataSlack), that every file's content is
// unchanged, and that a second run plans nothing.
func TestRewriteFrees(t *testing.T) {
	for i, tt := range rewriteTrees {
		t.Run(tt.name, func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "512M")
			dir := filepath.Join(mnt, "tree")
			writeTree(t, dir, tt.files(rand.New(rand.NewPCG(uint64(i), 11))))
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")

			planOut, results, applyErr := pipeline(t, db, dir)

			if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, tt.freed) {
				t.Errorf("freed %d bytes as statfs reports; want %d (and up to %d of metadata)\nplan:\n%s\nresults:\n%s\n%s", freed, tt.freed, metadataSlack, planOut, results, applyErr)
			}
			allDone(t, results)
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
			}
			planNothingAgain(t, db, dir)
		})
	}
}

// TestRewriteKilled kills applysame with SIGKILL at different moments of a
// plan with rewrites: every file keeps its content, and a run to
// completion afterwards frees exactly what an uninterrupted run frees, so
// no copy was left behind.
func TestRewriteKilled(t *testing.T) {
	tree := func(rng *rand.Rand) map[string][]byte {
		shared := random(rng, 48*MiB)
		return map[string][]byte{
			"img1": append(append([]byte(nil), shared...), random(rng, 16*MiB)...),
			"img2": append(append([]byte(nil), shared...), random(rng, 16*MiB)...),
			"img3": append(append([]byte(nil), shared...), random(rng, 16*MiB)...),
		}
	}
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "1G")
			dir := filepath.Join(mnt, "tree")
			writeTree(t, dir, tree(rand.New(rand.NewPCG(7, 7))))
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")
			if _, stderr, code := tool(t, nil, "hashfile", "-db", db, dir); code != 0 {
				t.Fatalf("hashfile: %s", stderr)
			}
			planOut, _, _ := tool(t, nil, "findsame", "-db", db)
			if !strings.Contains(planOut, `"type":"rewrite"`) {
				t.Fatalf("no rewrite planned:\n%s", planOut)
			}
			cmd := exec.Command(filepath.Join(bin, "applysame"), "-q", "-chunk", "1M")
			cmd.Stdin = strings.NewReader(planOut)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()

			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("content changed after kill -9 at %v", delay)
			}
			// Complete the job: the tree is as an uninterrupted run leaves it.
			pipeline(t, db, dir)
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed after the completing run")
			}
			// img2 and img3 each free their 64 MiB of extents and write
			// 16 MiB: 96 MiB of data, as the first plan says, if btrfs
			// laid each file out so that every extent of it is freed. On
			// a loaded machine writeback may cut a file into extents
			// otherwise, and one that the shared 48 MiB cover by less
			// than a quarter is not rewritten by any run, interrupted or
			// not: the plan's estimate is what an uninterrupted run
			// frees. statfs also counts free metadata space, and this
			// tree drops enough extent items to free some (224 KiB
			// uninterrupted, a little less after an interruption); any
			// copy left behind would show as 1 MiB or more missing.
			freed, want := testfs.FreeBytes(t, mnt)-free, planFreed(t, planOut)
			if freed < want || freed > want+MiB/2 {
				t.Errorf("after kill -9 at %v and a completing run, freed %d bytes; want %d of data (the plan's estimate), and at most 512 KiB of metadata more", delay, freed, want)
			}
		})
	}
}

// planFreed is the bytes a plan says it frees.
func planFreed(t *testing.T, p string) int64 {
	t.Helper()
	var n int64
	for line := range strings.Lines(p) {
		var r struct{ Freed int64 }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		n += r.Freed
	}
	return n
}

// TestLeftoverFrees overwrites parts of large files in place, as VM
// images and databases are, with no duplicate anywhere: btrfs writes the
// new data elsewhere and keeps each old extent whole while any part of it
// is referred to. The pipeline rewrites the parts still referred to and
// frees the rest; a second run plans nothing.
func TestLeftoverFrees(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(5, 5))
	// Each file is written and flushed whole (one 8 MiB extent), then
	// parts of it (offset, length) are overwritten and flushed again.
	overwrite := map[string][][2]int64{
		"vm.img":    {{MiB, 6 * MiB}},                   // 6 MiB unreferenced: freed, 2 MiB written
		"db.sqlite": {{0, 3 * MiB}, {5 * MiB, 2 * MiB}}, // 5 MiB unreferenced: freed, 3 MiB written
		"log":       {{7 * MiB, MiB}},                   // 1 MiB of 8: not worth writing 7
	}
	for name, spans := range overwrite {
		p := filepath.Join(dir, name)
		write(t, p, random(rng, 8*MiB))
		testfs.Sync(t, p)
		for _, s := range spans {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(random(rng, int(s[1])), s[0]); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		testfs.Sync(t, p)
	}
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)
	db := filepath.Join(t.TempDir(), "index.db")

	planOut, results, applyErr := pipeline(t, db, dir)

	// Only rewrites here, and no dedupe line drops extent items: the
	// copies' new items may take a metadata node or two more (statfs
	// counts free metadata space too), where elsewhere the items dropped
	// free some. A copy left behind would show as a MiB or more missing.
	if freed, want := testfs.FreeBytes(t, mnt)-free, int64(11*MiB); freed < want-metadataSlack || freed > want+metadataSlack {
		t.Errorf("freed %d bytes as statfs reports; want %d, give or take %d of metadata\nplan:\n%s\nresults:\n%s\n%s", freed, want, metadataSlack, planOut, results, applyErr)
	}
	if n := strings.Count(planOut, `"type":"rewrite"`); n != 2 {
		t.Errorf("plan has %d rewrites; want 2 (vm.img and db.sqlite):\n%s", n, planOut)
	}
	allDone(t, results)
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
	planNothingAgain(t, db, dir)
}

// TestSettledReferenceMoved: a file whose every duplicate already shares
// its storage is settled (not mapped again), but it still refers to the
// extents it shares. When a later night rewrites such an extent, the
// settled file's reference must move onto the copy with the others', or
// the extent stays whole and the copy is written for nothing.
func TestSettledReferenceMoved(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(7, 7))
	a := random(rng, 2*MiB)
	c := append(append([]byte(nil), a[MiB/2:MiB]...), random(rng, MiB/2)...)
	for name, data := range map[string][]byte{"a": a, "b": a[:MiB/2], "c": c} {
		write(t, filepath.Join(dir, name), data)
		testfs.Sync(t, filepath.Join(dir, name))
	}
	db := filepath.Join(t.TempDir(), "index.db")
	// Night 1: b and the first half of c come to share a's 2 MiB extent
	// (c's own half is rewritten).
	_, results, _ := pipeline(t, db, dir)
	allDone(t, results)

	// Night 2: l, larger than a, holds a's second half, and d a copy of
	// c's second half. a's extent is then covered half by a run (a to l)
	// and referred to by a, b and c: a's first half is rewritten, c's and
	// b's references move onto the copy, and the extent is freed. b has
	// nothing left to share (settled); c has d.
	write(t, filepath.Join(dir, "l"), bytes.Join([][]byte{random(rng, MiB), a[MiB:], random(rng, 2*MiB)}, nil))
	write(t, filepath.Join(dir, "d"), c[MiB/2:])
	testfs.Sync(t, filepath.Join(dir, "l"))
	testfs.Sync(t, filepath.Join(dir, "d"))
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)
	planOut, results, applyErr := pipeline(t, db, dir)

	// a's extent (2 MiB) and d's (512 KiB) freed, a's first half (1 MiB)
	// written.
	if freed, want := testfs.FreeBytes(t, mnt)-free, int64(3*MiB/2); !freedAsExpected(freed, want) {
		t.Errorf("night 2 freed %d bytes as statfs reports; want %d (and up to %d of metadata)\nplan:\n%s\nresults:\n%s\n%s", freed, want, metadataSlack, planOut, results, applyErr)
	}
	allDone(t, results)
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
	planNothingAgain(t, db, dir)
}

// TestRewriteEIO: the disk fails to read the part of an extent a rewrite
// must copy (its stored bytes corrupted below btrfs, whose checksums then
// fail the read with EIO). The rewrite fails with EIO and leaves no copy
// behind, the file's content is what it was once the bytes are healed,
// and the next night frees what the plan would have.
func TestRewriteEIO(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(8, 8))
	a := random(rng, 4*MiB)
	b := append(append([]byte(nil), a[:MiB]...), random(rng, MiB)...)
	for name, data := range map[string][]byte{"a": a, "b": b} {
		write(t, filepath.Join(dir, name), data)
		testfs.Sync(t, filepath.Join(dir, name))
	}
	db := filepath.Join(t.TempDir(), "index.db")
	planOut := planFor(t, db, dir)
	if !strings.Contains(planOut, `"type":"rewrite"`) {
		t.Fatalf("findsame planned no rewrite of b's second half:\n%s", planOut)
	}
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)

	heal := testfs.Corrupt(t, mnt, filepath.Join(dir, "b"), MiB+64<<10, 4096)
	results, applyErr, code := tool(t, []byte(planOut), "applysame")
	if code != 3 || !strings.Contains(results, "input/output error") {
		t.Errorf("applysame on a failing disk: exit %d; want 3, and a rewrite failing with EIO\n%s\n%s", code, results, applyErr)
	}
	if lost := free - testfs.FreeBytes(t, mnt); lost > metadataSlack {
		t.Errorf("%d bytes less free after the failed rewrite; want none (up to %d of metadata)\n%s", lost, metadataSlack, results)
	}

	heal()
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
	// The next night: b's 2 MiB extent freed, its second half written.
	planOut, results, applyErr = pipeline(t, db, dir)
	allDone(t, results)
	if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, MiB) {
		t.Errorf("freed %d bytes after the next night; want %d (and up to %d of metadata)\nplan:\n%s\nresults:\n%s\n%s", freed, MiB, metadataSlack, planOut, results, applyErr)
	}
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed by the next night:\nbefore %v\nafter  %v", before, after)
	}
}

// TestDedupeEIO: the disk fails to read a destination that the kernel
// compares. The line fails with EIO, nothing is lost, and once the bytes
// are healed the next night frees the copy.
func TestDedupeEIO(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	a := random(rand.New(rand.NewPCG(9, 9)), 2*MiB)
	for _, name := range []string{"a", "b"} {
		write(t, filepath.Join(dir, name), a)
		testfs.Sync(t, filepath.Join(dir, name))
	}
	db := filepath.Join(t.TempDir(), "index.db")
	planOut := planFor(t, db, dir)
	if strings.Count(planOut, "\n") != 1 {
		t.Fatalf("findsame planned %d lines; want one:\n%s", strings.Count(planOut, "\n"), planOut)
	}
	var line plan.Dedupe
	if err := json.Unmarshal([]byte(planOut), &line); err != nil {
		t.Fatal(err)
	}
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)

	heal := testfs.Corrupt(t, mnt, line.Dst[0].Path, 64<<10, 4096)
	results, applyErr, code := tool(t, []byte(planOut), "applysame")
	if code != 3 || !strings.Contains(results, `"status":"error"`) || !strings.Contains(applyErr, "input/output error") {
		t.Errorf("applysame on a failing disk: exit %d; want 3, and the line failing with EIO\n%s\n%s", code, results, applyErr)
	}
	if lost := free - testfs.FreeBytes(t, mnt); lost > metadataSlack {
		t.Errorf("%d bytes less free after the failed line; want none (up to %d of metadata)\n%s", lost, metadataSlack, results)
	}

	heal()
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
	planOut, results, applyErr = pipeline(t, db, dir)
	allDone(t, results)
	if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, 2*MiB) {
		t.Errorf("freed %d bytes after the next night; want %d (and up to %d of metadata)\nplan:\n%s\nresults:\n%s\n%s", freed, 2*MiB, metadataSlack, planOut, results, applyErr)
	}
}
