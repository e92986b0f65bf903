package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"same/internal/dedupe"
	"same/internal/fiemap"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/plan"
	"same/internal/runs"
	"same/internal/scan"
	"same/internal/testfs"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// unitTree writes a tree whose plan has a unit that needs no writing (two
// whole copies of w) and two units with a rewrite each: img2 and img3
// share 12 MiB with img1 and hold 4 MiB of their own. Each file's data
// lies in one disk extent, allocated before it is written: left to
// writeback, btrfs sometimes cut img3 into extents at 12 MiB, and the
// plan then shared img3 whole, with no rewrite.
func unitTree(t *testing.T, dir string) {
	t.Helper()
	rnd := seededBytes(5)
	shared, w := rnd(12*mib), rnd(8*mib)
	files := map[string][]byte{
		"w1": w, "w2": w,
		"img1": append(append([]byte(nil), shared...), rnd(4*mib)...),
		"img2": append(append([]byte(nil), shared...), rnd(4*mib)...),
		"img3": append(append([]byte(nil), shared...), rnd(4*mib)...),
	}
	writeTree(t, dir, files)
}

// seededBytes returns what makes n bytes at a time of the same random
// sequence for the same seed.
func seededBytes(seed uint64) func(n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
}

// night runs hashfile and findsame in-process on dir and applies the plan
// with opt; it returns the plan, the results and Run's outcome.
func night(t *testing.T, ctx context.Context, db, dir string, opt Options) (string, []plan.Result, *Stats, error) {
	t.Helper()
	p := planOf(t, db, dir)
	rs, st, err := applyPlan(ctx, t, p, opt)
	return p, rs, st, err
}

// planOf runs hashfile and findsame in-process on dir and returns the plan.
func planOf(t *testing.T, db, dir string) string {
	t.Helper()
	ix, err := index.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, err := scan.Run(context.Background(), ix, []string{dir}, scan.Options{BlockSize: 4096}); err != nil {
		t.Fatal(err)
	}
	var planOut bytes.Buffer
	enc := json.NewEncoder(&planOut)
	if _, err := runs.Find(context.Background(), ix, runs.Options{Live: true, Rewrite: true}, func(r plan.Record) error { return enc.Encode(r) }); err != nil {
		t.Fatal(err)
	}
	return planOut.String()
}

// applyPlan applies p with opt, as night does, and returns the results
// and Run's outcome.
func applyPlan(ctx context.Context, t *testing.T, p string, opt Options) ([]plan.Result, *Stats, error) {
	t.Helper()
	if opt.RewriteLimit == 0 {
		opt.RewriteLimit = 1 << 30
	}
	if opt.Reserve == 0 {
		opt.Reserve = -1
	}
	opt.Chunk = mib
	var out bytes.Buffer
	st, err := Run(ctx, strings.NewReader(p), &out, opt)
	return results(t, out.String()), st, err
}

// planFreed is what a plan says it frees.
func planFreed(t *testing.T, p string) int64 {
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

// setFault sets both fault hooks for the test.
func setFault(t *testing.T, f func(point string)) {
	fault, dedupe.Fault = f, f
	t.Cleanup(func() { fault, dedupe.Fault = nil, nil })
}

// TestInterruptAtEachStep cancels the run (as SIGINT does) at each step of
// a unit with a rewrite: the unit is finished, no later unit starts and
// each line not started is skipped, the filesystem holds no more than
// before the run, and a second run frees what an uninterrupted one would.
// Applying the completed plan again does nothing and fails nothing.
func TestInterruptAtEachStep(t *testing.T) {
	for _, point := range []string{"rewrite-copied", "rewrite-shared", "rewrite-done"} {
		t.Run(point, func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "512M")
			dir := filepath.Join(mnt, "tree")
			unitTree(t, dir)
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			setFault(t, func(p string) {
				if p == point {
					cancel()
				}
			})
			planOut, rs, _, err := night(t, ctx, db, dir, Options{Jobs: 2})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run = %v; want ErrInterrupted", err)
			}
			setFault(t, nil)
			var skipped int
			for _, r := range rs {
				switch {
				case r.Status == plan.StatusSkipped && r.Error == "interrupted":
					skipped++
				case r.Status != plan.StatusDone:
					t.Errorf("line %d: %s %q; want done, or skipped as interrupted", r.Line, r.Status, r.Error)
				}
			}
			if skipped == 0 {
				t.Errorf("no line was skipped as interrupted:\n%s", planOut)
			}
			if after := testfs.FreeBytes(t, mnt); after < free-mib {
				t.Errorf("after the interrupt, %d bytes free; want at least %d (start, less 1 MiB)", after, free-mib)
			}

			want := planFreed(t, planOut)
			if _, rs, st, err := night(t, context.Background(), db, dir, Options{Jobs: 2}); err != nil || st.Failed() > 0 {
				t.Fatalf("second run: %v, %+v\n%v", err, st, rs)
			}
			if freed := testfs.FreeBytes(t, mnt) - free; freed < want || freed > want+mib/2 {
				t.Errorf("after the interrupt and a second run, freed %d bytes; want %d, and at most 512 KiB of metadata more", freed, want)
			}
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed")
			}

			// The first plan again: all of it is done already.
			var out bytes.Buffer
			st, err := Run(context.Background(), strings.NewReader(planOut), &out, Options{RewriteLimit: 1 << 30, Reserve: -1})
			if err != nil || st.Failed() > 0 || st.Written != 0 {
				t.Errorf("applying the plan again: %v, %+v; want nothing failed, nothing written", err, st)
			}
			for _, r := range results(t, out.String()) {
				if r.Status != plan.StatusDone {
					t.Errorf("applying the plan again: line %d %s %q; want done", r.Line, r.Status, r.Error)
				}
			}
		})
	}
}

// TestNoSpace applies the plan on a btrfs filled to the last block, where
// the copies do not fit until the unit that needs no writing has freed
// room: the rewrites wait for it and two runs free what a roomy one does.
// Then, with statfs made to report room that is not there, the copy runs
// into ENOSPC: the rewrite is skipped (its copy went with its unnamed
// file), nothing more is written, and its lines leave its extent alone.
func TestNoSpace(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	dir := filepath.Join(mnt, "tree")
	unitTree(t, dir)
	before := testfs.SHA256Tree(t, dir)
	fill(t, mnt)
	free := testfs.FreeBytes(t, mnt)
	db := filepath.Join(t.TempDir(), "index.db")

	planOut, rs, st, err := night(t, context.Background(), db, dir, Options{Jobs: 2})
	if err != nil || st.Failed() > 0 {
		t.Fatalf("first run: %v, %+v\n%v", err, st, rs)
	}
	want := planFreed(t, planOut)
	if _, rs, st, err := night(t, context.Background(), db, dir, Options{Jobs: 2}); err != nil || st.Failed() > 0 {
		t.Fatalf("second run: %v, %+v\n%v", err, st, rs)
	}
	if freed := testfs.FreeBytes(t, mnt) - free; freed < want*9/10 {
		t.Errorf("two runs on a full filesystem freed %d bytes; want at least 90%% of %d", freed, want)
	}
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed")
	}
}

// TestENOSPC makes the copy of the first rewrite run out of space.
func TestENOSPC(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	dir := filepath.Join(mnt, "tree")
	unitTree(t, dir)
	if err := os.Remove(filepath.Join(dir, "w2")); err != nil { // nothing frees room
		t.Fatal(err)
	}
	before := testfs.SHA256Tree(t, dir)
	fill(t, mnt)
	free := testfs.FreeBytes(t, mnt)
	space = func(*os.File) (int64, int64, error) { return 1 << 40, 1 << 41, nil }
	t.Cleanup(func() { space = statSpace })

	// Units that free without writing come first; the filesystem is
	// filled again when the first rewrite starts, so that its copy runs
	// out of space whatever they freed.
	refilled := false
	setFault(t, func(p string) {
		if p == "rewrite-start" && !refilled {
			refilled = true
			fill(t, mnt)
			free = testfs.FreeBytes(t, mnt)
		}
	})
	_, rs, st, err := night(t, context.Background(), filepath.Join(t.TempDir(), "index.db"), dir, Options{Jobs: 2, Reserve: 0})
	if err != nil {
		t.Fatal(err)
	}
	// The first rewrite runs out of space, those after it write nothing,
	// and no destination in their files is deduplicated.
	var failed []string
	for _, r := range rs {
		switch {
		case r.Rewrite != nil && len(failed) == 0:
			if r.Status != plan.StatusSkipped || r.Rewrite.Errno != "ENOSPC" || r.Rewrite.Shared != 0 {
				t.Errorf("first rewrite: %s %+v %q; want skipped, ENOSPC, nothing shared", r.Status, r.Rewrite, r.Error)
			}
			failed = append(failed, r.Rewrite.Path)
		case r.Rewrite != nil:
			if r.Status != plan.StatusSkipped || !strings.HasPrefix(r.Error, "no more writing in this run: line 1 ran out of space") {
				t.Errorf("later rewrite: %s %q; want skipped, no more writing", r.Status, r.Error)
			}
			failed = append(failed, r.Rewrite.Path)
		default:
			for _, d := range r.Dst {
				if slices.Contains(failed, d.Path) && d.Status != plan.DstSkipped {
					t.Errorf("line %d: %s %s; want it skipped, its extent's rewrite was not done", r.Line, d.Path, d.Status)
				}
			}
		}
	}
	if len(failed) == 0 {
		t.Fatalf("results %v; want a rewrite", rs)
	}
	if st.Failed() != 0 {
		t.Errorf("%d items failed; want none", st.Failed())
	}
	if after := testfs.FreeBytes(t, mnt); after < free-mib {
		t.Errorf("%d bytes free after ENOSPC; want at least %d", after, free-mib)
	}
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed")
	}
}

// TestQuotaFull applies a plan into a btrfs subvolume whose quota (a
// qgroup limit) is reached, beside a read-only snapshot of it whose quota
// has room. The first item sharing or copying into the subvolume gets
// EDQUOT (a line's destination in the snapshot is done), and every unit
// after it is skipped, saying why, rather than done by halves:
// destinations in the snapshot done and those in the subvolume failing
// free nothing, cost metadata, and each failure reads both ranges first.
// The first item is a dedupe line, or, with no unit that needs no
// writing, a rewrite of the snapshot's file whose copy, made in the
// subvolume, finds no room. Once the limit is lifted,
// the next run frees what the plan said.
func TestQuotaFull(t *testing.T) {
	for _, rewriteFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("rewriteFirst=%v", rewriteFirst), func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "512M")
			sv := filepath.Join(mnt, "sv")
			testfs.Run(t, "btrfs", "quota", "enable", mnt)
			testfs.Run(t, "btrfs", "subvolume", "create", sv)
			unitTree(t, filepath.Join(sv, "tree"))
			if rewriteFirst {
				if err := os.Remove(filepath.Join(sv, "tree", "w2")); err != nil {
					t.Fatal(err)
				}
			}
			testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", sv, filepath.Join(mnt, "snap"))
			before := testfs.SHA256Tree(t, mnt)
			var id string
			for line := range strings.Lines(testfs.Run(t, "btrfs", "subvolume", "show", sv)) {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "Subvolume" && f[1] == "ID:" {
					id = "0/" + f[2]
				}
			}
			var rfer string
			for line := range strings.Lines(testfs.Run(t, "btrfs", "qgroup", "show", "--raw", "--sync", "-r", mnt)) {
				if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
					rfer = f[1]
				}
			}
			if rfer == "" {
				t.Fatalf("no qgroup %q of %s", id, sv)
			}
			testfs.Run(t, "btrfs", "qgroup", "limit", rfer, sv)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")

			planOut, rs, st, err := night(t, context.Background(), db, mnt, Options{Jobs: 1})
			if err != nil {
				t.Fatal(err)
			}
			k, rw, d := firstWith(t, rs, "EDQUOT")
			r, path := rs[k], ""
			if rw != nil {
				if want := fmt.Sprintf("open O_TMPFILE in %s: disk quota exceeded", filepath.Join(sv, "tree")); !rewriteFirst || r.Status != plan.StatusError || r.Error != want {
					t.Errorf("line %d: rewrite %s %q; want it first, an error: %q", r.Line, r.Status, r.Error, want)
				}
				// The file rewritten is the snapshot's, its copy made (and
				// its quota found full) next to a file of the subvolume.
				var w struct {
					CopyNextTo struct{ Path string } `json:"copy_next_to"`
				}
				if err := json.Unmarshal([]byte(strings.Split(planOut, "\n")[r.Line-1]), &w); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(rw.Path, filepath.Join(mnt, "snap")+"/") || !strings.HasPrefix(w.CopyNextTo.Path, sv+"/") {
					t.Errorf("line %d rewrites %s, its copy next to %q; want a file of the snapshot, next to one of %s", r.Line, rw.Path, w.CopyNextTo.Path, sv)
				}
				path = w.CopyNextTo.Path
			} else {
				const full = "disk quota exceeded: the destination's quota (on btrfs, its subvolume's qgroup limit) leaves no room for the metadata that sharing takes"
				if rewriteFirst || d.Status != plan.DstError || d.Error != full || !strings.HasPrefix(d.Path, sv+"/") {
					t.Errorf("line %d: %s %s %q; want the first item, an error into %s: %q", r.Line, d.Path, d.Status, d.Error, sv, full)
				}
				path = d.Path
			}
			checkBlocked(t, rs, st, k, fmt.Sprintf("not started: the quota of the subvolume of %s (qgroup %s) was found full on line %d (EDQUOT); "+
				"raise its limit and run again: btrfs qgroup limit SIZE %[2]s PATH, PATH on that filesystem outside the subvolume", path, id, r.Line))
			if after := testfs.FreeBytes(t, mnt); after < free-mib {
				t.Errorf("%d bytes free after a run into a full quota; want at least %d", after, free-mib)
			}

			// Named by the subvolume's path, the limit cannot be lifted: the
			// ioctl's own transaction finds no room in its quota.
			testfs.Run(t, "btrfs", "qgroup", "limit", "none", id, mnt)
			if _, rs, st, err := night(t, context.Background(), db, mnt, Options{Jobs: 2}); err != nil || st.Failed() > 0 {
				t.Fatalf("run with the limit lifted: %v, %+v\n%v", err, st, rs)
			}
			if freed, want := testfs.FreeBytes(t, mnt)-free, planFreed(t, planOut); freed < want*9/10 {
				t.Errorf("the run with the limit lifted freed %d bytes; want at least 90%% of %d", freed, want)
			}
			if after := testfs.SHA256Tree(t, mnt); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed")
			}
		})
	}
}

// firstWith returns the first result of rs whose rewrite or a destination
// of which got errno: its index, and the rewrite or that destination.
func firstWith(t *testing.T, rs []plan.Result, errno string) (int, *plan.RewriteResult, *plan.DstResult) {
	t.Helper()
	for k, r := range rs {
		if r.Rewrite != nil && r.Rewrite.Errno == errno {
			return k, r.Rewrite, nil
		}
		for i := range r.Dst {
			if r.Dst[i].Errno == errno {
				return k, nil, &r.Dst[i]
			}
		}
	}
	t.Fatalf("results %+v; want an item with %s", rs, errno)
	return 0, nil, nil
}

// checkBlocked checks a run whose result k was the first to find a volume
// that takes nothing more: every result after it (one at least) skipped,
// saying why, and counted in Stats.Blocked, and that item the run's only
// error.
func checkBlocked(t *testing.T, rs []plan.Result, st *Stats, k int, why string) {
	t.Helper()
	if k == len(rs)-1 {
		t.Fatalf("results %+v; want lines after line %d", rs, rs[k].Line)
	}
	for _, r := range rs[k+1:] {
		if r.Status != plan.StatusSkipped || r.Error != why {
			t.Errorf("line %d after line %d: %s %q; want skipped, %q", r.Line, rs[k].Line, r.Status, r.Error, why)
		}
	}
	if want := []Blocked{{why, len(rs) - 1 - k}}; !slices.Equal(st.Blocked, want) {
		t.Errorf("Stats.Blocked = %+v; want %+v", st.Blocked, want)
	}
	if st.Errors != 1 {
		t.Errorf("%d errors; want 1 (line %d's)", st.Errors, rs[k].Line)
	}
}

// TestReadOnly applies a plan on a btrfs mounted read-only since it was
// made, or made read-only as the first rewrite starts (as btrfs makes
// itself after an error): the first item gets EROFS, and every unit after
// it is skipped, saying why, rather than each failing in turn. Mounted
// read-write again, the plan applied again frees what it said.
func TestReadOnly(t *testing.T) {
	for _, point := range []string{"", "rewrite-start"} {
		t.Run("at="+point, func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "512M")
			dir := filepath.Join(mnt, "tree")
			unitTree(t, dir)
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			p := planOf(t, filepath.Join(t.TempDir(), "index.db"), dir)
			readOnly := func() { testfs.Run(t, "mount", "-o", "remount,ro", mnt) }
			if point == "" {
				readOnly()
			} else {
				done := false
				setFault(t, func(at string) {
					if at == point && !done {
						done = true
						readOnly()
					}
				})
			}
			rs, st, err := applyPlan(context.Background(), t, p, Options{Jobs: 1})
			if err != nil {
				t.Fatal(err)
			}
			k, rw, d := firstWith(t, rs, "EROFS")
			r, path := rs[k], ""
			if rw != nil {
				if want := fmt.Sprintf("open O_TMPFILE in %s: read-only file system", filepath.Dir(rw.Path)); point == "" || r.Status != plan.StatusError || r.Error != want {
					t.Errorf("line %d: rewrite %s %q; want the first item with the filesystem made read-only as it starts, an error: %q", r.Line, r.Status, r.Error, want)
				}
				path = rw.Path
			} else {
				if want := "read-only file system: the destination's filesystem is mounted read-only"; point != "" || r.Line != 1 || d.Status != plan.DstError || d.Error != want {
					t.Errorf("line %d: %s %s %q; want line 1, an error: %q", r.Line, d.Path, d.Status, d.Error, want)
				}
				path = d.Path
			}
			checkBlocked(t, rs, st, k, fmt.Sprintf("not started: the filesystem of %s was found mounted read-only on line %d (EROFS); mount it read-write and run again", path, r.Line))

			testfs.Run(t, "mount", "-o", "remount,rw", mnt)
			if rs, st, err := applyPlan(context.Background(), t, p, Options{Jobs: 2}); err != nil || st.Failed() > 0 {
				t.Fatalf("mounted read-write again: %v, %+v\n%v", err, st, rs)
			}
			if freed, want := testfs.FreeBytes(t, mnt)-free, planFreed(t, p); freed < want*9/10 {
				t.Errorf("the plan applied again freed %d bytes; want at least 90%% of %d", freed, want)
			}
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed")
			}
		})
	}
}

// TestLargeBlocks plans and applies on an XFS of 16 KiB blocks, where
// the kernel shares whole blocks of the filesystem only: the index's 4
// KiB runs are cut to them, a block is paired only with blocks at the
// same place in a block of the filesystem (the largest file, otherwise
// the source, holds a's data 4 KiB in), and a file's partial last block
// goes with it where both files end there. Every line
// is done, the space the plan says is freed, every file's content is
// unchanged, and the next night plans nothing.
func TestLargeBlocks(t *testing.T) {
	mnt := testfs.Mount(t, "xfs16k", "512M")
	if bs := testfs.Run(t, "stat", "-f", "-c", "%S", mnt); bs != "16384\n" {
		t.Fatalf("block size %q; want 16384", bs)
	}
	dir := filepath.Join(mnt, "tree")
	rnd := seededBytes(7)
	a := rnd(4*mib + 5000) // ends 5000 bytes into a block
	// The largest file, the best source of a's first 2 MiB, but 4 KiB in.
	shifted := append(append(rnd(4096), a[:2*mib]...), rnd(4*mib)...)
	aligned := append(rnd(16384), a[:2*mib]...)
	writeTree(t, dir, map[string][]byte{
		"a": a, "copy": a, // whole copies, the partial last block included
		"shifted": shifted, // a's first 2 MiB 4 KiB in: no block of it lies as in a
		"aligned": aligned, // a's first 2 MiB one block in
		// A MiB of a from its second block, and 5000 bytes more whose
		// last 904 are in a 4 KiB block of their own: the run ends a
		// block of 4 KiB before the end, and is cut to the whole 16 KiB
		// blocks it covers.
		"head": a[16384 : 16384+mib+5000],
	})
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)
	db := filepath.Join(t.TempDir(), "index.db")
	p, rs, st, err := night(t, context.Background(), db, dir, Options{Jobs: 2})
	if err != nil || st.Failed() > 0 || st.Skipped > 0 {
		t.Fatalf("night: %v, %+v\n%v", err, st, rs)
	}
	lines := 0
	for line := range strings.Lines(p) {
		var d plan.Dedupe
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		lines++
		for _, r := range append([]plan.Range{d.Src}, d.Dst...) {
			if r.Off%16384 != 0 || (d.Len%16384 != 0 && r.Off+d.Len != r.Size) {
				t.Errorf("line %d: %s at %d, %d bytes; want whole blocks of 16 KiB, or the end of the file", lines, r.Path, r.Off, d.Len)
			}
		}
	}
	if lines == 0 {
		t.Fatal("no line planned")
	}
	// copy whole, its partial last block too; aligned's 2 MiB; head's
	// MiB.
	want := int64(len(a)+16383)/16384*16384 + 3*mib
	if freed := testfs.FreeBytes(t, mnt) - free; freed < want || freed > want+16384*4 {
		t.Errorf("freed %d bytes; want %d (the plan said %d)", freed, want, planFreed(t, p))
	}
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed")
	}
	if p, _, _, err := night(t, context.Background(), db, dir, Options{}); err != nil || p != "" {
		t.Errorf("the next night: %v, plan\n%s\nwant none", err, p)
	}
}

// fill writes one file of random data beside the tree until not one more
// block fits.
func fill(t *testing.T, mnt string) {
	t.Helper()
	f, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, mib)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{mib, 64 << 10, 4096} {
		for {
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
			if err := f.Sync(); err != nil {
				break
			}
		}
	}
	if err := fsys.SyncFS(f); err != nil {
		t.Fatal(err)
	}
}

// TestTimeUp moves the clock past -max-time while the first unit with a
// rewrite runs: that unit is finished and every later line is skipped.
func TestTimeUp(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	unitTree(t, dir)
	setFault(t, func(p string) {
		if p == "rewrite-done" {
			now = func() time.Time { return time.Now().Add(time.Hour) }
		}
	})
	t.Cleanup(func() { now = time.Now })
	_, rs, st, err := night(t, context.Background(), filepath.Join(t.TempDir(), "index.db"), dir, Options{Jobs: 2, Deadline: time.Now().Add(time.Minute)})
	if err != nil || st.Failed() > 0 {
		t.Fatalf("Run = %v, %+v", err, st)
	}
	var got []string
	for _, r := range rs {
		got = append(got, string(r.Status)+" "+r.Error)
	}
	// w2's line, img2's rewrite and its line; then img3's rewrite and
	// line, a unit of their own.
	want := []string{"done ", "done ", "done ", "skipped time is up (-max-time)", "skipped time is up (-max-time)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %q; want %q", got, want)
	}
}

// TestTruncatedDuringCopy truncates the file being rewritten between its
// copy and the share-back: nothing of it is shared, the run goes on, and
// the unit's lines find the file stale.
func TestTruncatedDuringCopy(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	unitTree(t, dir)
	free := testfs.FreeBytes(t, mnt)
	// Truncate whichever image the first rewrite copies.
	var victim string
	ix := filepath.Join(t.TempDir(), "index.db")
	first := true
	setFault(t, func(p string) {
		if p != "rewrite-copied" || !first {
			return
		}
		first = false
		for _, name := range []string{"img2", "img3"} {
			path := filepath.Join(dir, name)
			if st, err := os.Stat(path); err == nil && st.Size() == 16*mib && victim == "" {
				victim = path
			}
		}
		if err := os.Truncate(victim, 8*mib); err != nil {
			t.Error(err)
		}
	})
	_, rs, _, err := night(t, context.Background(), ix, dir, Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := rs[1] // the first rewrite, after the unit that needs no writing
	if r.Rewrite == nil || (r.Status != plan.StatusDiffers && r.Status != plan.StatusError) || r.Rewrite.Shared != 0 {
		t.Fatalf("rewrite of the truncated file: %+v %+v; want differs or error, nothing shared", r, r.Rewrite)
	}
	if after := testfs.FreeBytes(t, mnt); after < free-mib {
		t.Errorf("%d bytes free; want at least %d", after, free-mib)
	}
}

// TestBusy dedupes into a read-only snapshot that btrfs send is reading:
// the kernel answers EAGAIN, and the destination is tried again after
// each wait, then reported busy; once the send is gone, a retry dedupes it.
func TestBusy(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	sv, snap := filepath.Join(mnt, "sv"), filepath.Join(mnt, "snap")
	testfs.Run(t, "btrfs", "subvolume", "create", sv)
	data := randomBytes(8 * mib)
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(sv, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", sv, snap)
	line := planLine(t, 8*mib, id(t, filepath.Join(sv, "a"), 0), id(t, filepath.Join(snap, "b"), 0))

	// A send that nobody reads stays in progress once the pipe is full.
	send := exec.Command("btrfs", "send", snap)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	send.Stdout = pw
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	stopSend := func() { pr.Close(); send.Wait() }
	defer stopSend()
	// The stream's first bytes come once the send is in progress; the
	// rest (16 MiB of data) fills the pipe and holds it there.
	if _, err := io.ReadFull(pr, make([]byte, 1)); err != nil {
		t.Fatalf("btrfs send: %v", err)
	}
	saved := busyBackoff
	busyBackoff = []time.Duration{time.Millisecond, time.Millisecond}
	t.Cleanup(func() { busyBackoff = saved })

	retries := 0
	setFault(t, func(p string) {
		if p == "busy-retry" {
			retries++
		}
	})
	var out bytes.Buffer
	st, err := Run(context.Background(), strings.NewReader(line), &out, Options{})
	r := results(t, out.String())[0]
	if err != nil || r.Status != plan.StatusBusy || r.Dst[0].Errno != "EAGAIN" || st.Busy != 1 || st.Failed() != 0 || retries != 2 {
		t.Fatalf("Run during a send = %v, %s %+v, %d retries, stats %+v; want busy EAGAIN after 2 retries, nothing failed", err, r.Status, r.Dst, retries, st)
	}

	setFault(t, func(p string) {
		if p == "busy-retry" {
			stopSend()
		}
	})
	out.Reset()
	if _, err := Run(context.Background(), strings.NewReader(line), &out, Options{}); err != nil {
		t.Fatal(err)
	}
	if r := results(t, out.String())[0]; r.Status != plan.StatusDone {
		t.Errorf("retry once the send is gone: %s %+v; want done", r.Status, r.Dst)
	}
}

// TestAppliedAgain: a plan applied a second time finds every range
// already where its source lies and asks the kernel for nothing (no
// FIDEDUPERANGE call, so nothing is read), each line done: copies in
// other files, whose source extents are then shared, and a copy within
// one file.
func TestAppliedAgain(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(7, 7))
	data := make([]byte, 2*mib)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for name, b := range map[string][]byte{"a": data, "b": data, "c": data, "twice": append(slices.Clone(data), data...)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "index.db")
	var calls int
	setFault(t, func(p string) {
		if p == "dedupe" {
			calls++
		}
	})
	planOut, rs, _, err := night(t, context.Background(), db, dir, Options{Jobs: 1})
	if err != nil || calls == 0 {
		t.Fatalf("first run: %v, %d dedupe calls; want some\n%s", err, calls, planOut)
	}
	for _, r := range rs {
		if r.Status != plan.StatusDone {
			t.Errorf("first run: line %d %s %q; want done", r.Line, r.Status, r.Error)
		}
	}
	if !strings.Contains(planOut, `"path":"`+filepath.Join(dir, "twice")+`","off":2097152`) {
		t.Errorf("the plan shares no range of twice with another of it:\n%s", planOut)
	}
	calls = 0
	var out bytes.Buffer
	st, err := Run(context.Background(), strings.NewReader(planOut), &out, Options{Jobs: 1, RewriteLimit: 1 << 30, Reserve: -1})
	if err != nil || st.Failed() > 0 || calls != 0 {
		t.Errorf("applying the plan again: %v, %+v, %d dedupe calls; want nothing failed and none", err, st, calls)
	}
	for _, r := range results(t, out.String()) {
		if r.Status != plan.StatusDone {
			t.Errorf("applying the plan again: line %d %s %q; want done", r.Line, r.Status, r.Error)
		}
	}
}

// TestWaitHoldsSources has the rewrite of a unit wait for room while a
// later unit's line takes its source from the rewrite's extent: that unit
// waits too, and runs once the rewrite is done, sharing the copy. Run
// first, it would share the old extent into another file, and the
// rewrite, when room came, would free nothing.
func TestWaitHoldsSources(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rnd := seededBytes(7)
	// f's one extent holds s, which g's holds too with more of its own,
	// and a tail that is h's whole. The plan rewrites f's tail (its unit
	// shares g's s into f) and shares f's tail into h.
	s, tail := rnd(8*mib), rnd(2*mib)
	writeTree(t, dir, map[string][]byte{
		"f": append(append([]byte(nil), s...), tail...),
		"g": append(append([]byte(nil), s...), rnd(4*mib)...),
		"h": tail,
	})
	before := testfs.SHA256Tree(t, dir)
	free := testfs.FreeBytes(t, mnt)
	noRoomAtFirst(t, func() {})
	planOut, rs, st, err := night(t, context.Background(), filepath.Join(t.TempDir(), "index.db"), dir, Options{Jobs: 2})
	if err != nil || st.Failed() > 0 {
		t.Fatalf("Run = %v, %+v", err, st)
	}
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%d %s %s", r.Line, r.Status, r.Error))
	}
	want := []string{"1 done ", "2 done ", "3 done "} // unit 1 waited, unit 2 behind it
	if !slices.Equal(got, want) {
		t.Errorf("results %q; want %q (plan:\n%s)", got, want, planOut)
	}
	if freed, want := testfs.FreeBytes(t, mnt)-free, planFreed(t, planOut); freed < want-mib/2 {
		t.Errorf("freed %d bytes; want the plan's %d", freed, want)
	}
	if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed")
	}
}

// noRoomAtFirst has the first rewrite find no room at its first look
// (room asks twice: before and after a commit of the filesystem), and
// call then at that look; there is room from then on.
func noRoomAtFirst(t *testing.T, then func()) {
	asked := 0
	space = func(f *os.File) (int64, int64, error) {
		if asked++; asked <= 2 {
			if asked == 1 {
				then()
			}
			return 0, 1 << 30, nil
		}
		return statSpace(f)
	}
	t.Cleanup(func() { space = statSpace })
}

// writeTree writes each file of files in dir, its data in one extent
// allocated before it is written (see unitTree).
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStopWhileWaiting has a unit wait for room, and a later line fail
// (its destination changed since the plan) with -stop-on-error: the
// waiting units are not started after it, but reported skipped.
func TestStopWhileWaiting(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rnd := seededBytes(7)
	// As in TestWaitHoldsSources, and a small whole copy, p and q,
	// whose unit frees little for the files it opens: it comes last.
	s, tail, small := rnd(8*mib), rnd(2*mib), rnd(64<<10)
	writeTree(t, dir, map[string][]byte{
		"f": append(append([]byte(nil), s...), tail...),
		"g": append(append([]byte(nil), s...), rnd(4*mib)...),
		"h": tail,
		"p": small, "q": small,
	})
	// q changes when the first rewrite finds no room.
	noRoomAtFirst(t, func() {
		if err := os.WriteFile(filepath.Join(dir, "q"), small, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	planOut, rs, st, err := night(t, context.Background(), filepath.Join(t.TempDir(), "index.db"), dir, Options{Jobs: 2, StopOnError: true})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%d %s %s", r.Line, r.Status, r.Error))
	}
	const stopped = "stopped: a line before it had an item not done (-stop-on-error)"
	want := []string{"4 partial ", "1 skipped " + stopped, "2 skipped " + stopped, "3 skipped " + stopped}
	if !slices.Equal(got, want) {
		t.Errorf("results %q; want %q (plan:\n%s)", got, want, planOut)
	}
	if st.Written != 0 {
		t.Errorf("%d bytes written; want none", st.Written)
	}
}

// TestLooksOnAFreshPlan: a plan applied for the first time finds nothing
// shared, so after lookMisses destinations only one in lookEvery is looked
// at with FIEMAP, each of them compared and shared by the kernel, the
// files' content unchanged; applied again, every destination is looked at,
// found shared and not compared.
func TestLooksOnAFreshPlan(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	dir := filepath.Join(mnt, "tree")
	rnd := seededBytes(11)
	files := make(map[string][]byte)
	const copies = lookMisses + 2*lookEvery + 5
	for i := range copies {
		b := rnd(64 << 10)
		files[fmt.Sprintf("a%03d", i)], files[fmt.Sprintf("b%03d", i)] = b, b
	}
	writeTree(t, dir, files)
	var looks, calls int
	setFault(t, func(p string) {
		switch p {
		case "look":
			looks++
		case "dedupe":
			calls++
		}
	})
	planOut, rs, _, err := night(t, context.Background(), filepath.Join(t.TempDir(), "index.db"), dir, Options{Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	dests := 0
	for _, r := range rs {
		dests += len(r.Dst)
		if r.Status != plan.StatusDone {
			t.Errorf("first run: line %d %s %q; want done", r.Line, r.Status, r.Error)
		}
	}
	if dests != copies {
		t.Fatalf("the plan has %d destinations; want %d\n%s", dests, copies, planOut)
	}
	if want := lookMisses + (copies-lookMisses)/lookEvery; looks != want || calls != copies {
		t.Errorf("first run: %d looks, %d dedupe calls; want %d and %d", looks, calls, want, copies)
	}
	for name, b := range files {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	looks, calls = 0, 0
	var out bytes.Buffer
	if _, err := Run(context.Background(), strings.NewReader(planOut), &out, Options{Jobs: 1, RewriteLimit: 1 << 30, Reserve: -1}); err != nil {
		t.Fatal(err)
	}
	for _, r := range results(t, out.String()) {
		if r.Status != plan.StatusDone {
			t.Errorf("applying the plan again: line %d %s %q; want done", r.Line, r.Status, r.Error)
		}
	}
	if looks != copies || calls != 0 {
		t.Errorf("applying the plan again: %d looks, %d dedupe calls; want %d and none", looks, calls, copies)
	}
}

// TestUndoneRewriteLooks: the lines whose source lies in the extent of a
// rewrite not done (here past the rewrite limit) share that extent back
// into files that refer to it already (a snapshot's copy of the file
// rewritten). Each of their destinations is looked at and found shared,
// and the kernel compares none, even once the looks of a fresh plan are
// down to one destination in lookEvery.
func TestUndoneRewriteLooks(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	write := func(name string, data []byte) string {
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Copies enough for the looks to find nothing shared lookMisses times
	// in a row, and more.
	x := randomBytes(4096)
	var copies []plan.Range
	for i := range lookMisses + lookEvery + 1 {
		copies = append(copies, id(t, write(fmt.Sprintf("x%03d", i), x), 0))
	}
	src := id(t, write("x", x), 0)
	const n = 1 << 20
	a := write("a", randomBytes(n))
	b := filepath.Join(mnt, "b")
	testfs.Run(t, "cp", "--reflink=always", a, b)
	testfs.Run(t, "sync")
	f, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := fiemap.Extents(f)
	f.Close()
	if err != nil || len(ext) != 1 {
		t.Fatalf("a's extents %v, %v; want one", ext, err)
	}
	rw, err := json.Marshal(plan.Rewrite{Type: plan.TypeRewrite, V: plan.Version, File: id(t, a, 0), Len: n, Physical: int64(ext[0].Physical),
		Copy: []plan.Span{{Off: 0, Len: n}}, Bytes: n, Freed: n, Unit: 1, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	in := planLine(t, 4096, src, copies[:len(copies)/2]...) + planLine(t, 4096, src, copies[len(copies)/2:]...) +
		string(rw) + "\n" + planLine(t, n, id(t, a, 0), id(t, b, 0))
	before := testfs.SHA256Tree(t, mnt)

	var events []string
	setFault(t, func(p string) { events = append(events, p) })
	var out bytes.Buffer
	if _, err := Run(context.Background(), strings.NewReader(in), &out, Options{Jobs: 1, RewriteLimit: 4096, Reserve: -1}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results(t, out.String()) {
		got = append(got, fmt.Sprintf("%d %s", r.Line, statuses(r)))
	}
	want := []string{"1 done" + strings.Repeat(" deduped", len(copies)/2), "2 done" + strings.Repeat(" deduped", len(copies)-len(copies)/2),
		"3 skipped", "4 done deduped"}
	if !slices.Equal(got, want) {
		t.Errorf("results %q; want %q", got, want)
	}
	// What the line after the rewrite did: one look, no compare.
	k := slices.Index(events, "rewrite-done")
	if k < 0 || !slices.Equal(events[k+1:], []string{"look"}) {
		t.Errorf("after the rewrite not done: %q; want one look, no dedupe call (all: %q)", events[k+1:], events)
	}
	if after := testfs.SHA256Tree(t, mnt); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed")
	}
}
