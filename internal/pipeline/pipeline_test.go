//go:build linux

package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"same/internal/plan"
	"same/internal/testfs"
)

var bin string // directory holding the built tools

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "same-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "same/cmd/hashfile", "same/cmd/findsame", "same/cmd/applysame")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tools: %v\n%s", err, out)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tool runs one of the built tools and returns its stdout, stderr and
// exit status.
func tool(t *testing.T, stdin []byte, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := exitCode(t, name, cmd.Run())
	return out.String(), errb.String(), code
}

// exitCode returns the exit status of the tool name that ended with err
// (-1 when a signal killed it), failing t when it could not be run.
func exitCode(t *testing.T, name string, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0
}

// pipeline runs hashfile, findsame and applysame on dir and returns the
// plan, the results and applysame's stderr.
func pipeline(t *testing.T, db, dir string, applyArgs ...string) (planOut, results, applyErr string) {
	t.Helper()
	planOut = planFor(t, db, dir)
	results, applyErr, code := tool(t, []byte(planOut), "applysame", applyArgs...)
	if code != 0 {
		t.Fatalf("applysame: exit %d\n%s", code, applyErr)
	}
	return planOut, results, applyErr
}

// planFor runs hashfile and findsame on dir and returns the plan.
func planFor(t *testing.T, db, dir string) string {
	t.Helper()
	planOut, _ := planWith(t, db, dir)
	return planOut
}

// planWith runs hashfile on dir and findsame with args, and returns the
// plan and findsame's standard error (its summary).
func planWith(t *testing.T, db, dir string, args ...string) (planOut, findsameErr string) {
	t.Helper()
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, dir); code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, stderr)
	}
	planOut, findsameErr, code := tool(t, nil, "findsame", append([]string{"-db", db}, args...)...)
	if code != 0 {
		t.Fatalf("findsame: exit %d\n%s", code, findsameErr)
	}
	return planOut, findsameErr
}

// planNothingAgain runs hashfile on dir and findsame again, which must
// plan nothing: what the first pass planned is done. It returns what each
// wrote on standard error, for the caller to check their summaries.
func planNothingAgain(t *testing.T, db, dir string) (hashfileErr, findsameErr string) {
	t.Helper()
	_, hashfileErr, code := tool(t, nil, "hashfile", "-db", db, dir)
	if code != 0 {
		t.Fatalf("hashfile: exit %d\n%s", code, hashfileErr)
	}
	out, findsameErr, code := tool(t, nil, "findsame", "-db", db)
	if code != 0 || out != "" {
		t.Errorf("second findsame: exit %d, plan %q\n%s", code, out, findsameErr)
	}
	return hashfileErr, findsameErr
}

func random(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// allDone checks that every result record has status done.
func allDone(t *testing.T, results string) {
	t.Helper()
	for line := range strings.Lines(results) {
		var r plan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != plan.StatusDone {
			t.Errorf("result %s; want status done", line)
		}
	}
}

// dedupeLines returns the dedupe lines of plan p, failing on a line that
// does not parse.
func dedupeLines(t *testing.T, p string) []*plan.Dedupe {
	t.Helper()
	var out []*plan.Dedupe
	for line := range strings.Lines(p) {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatalf("plan line %s: %v", line, err)
		}
		if d, ok := rec.(*plan.Dedupe); ok {
			out = append(out, d)
		}
	}
	return out
}

const MiB = 1 << 20

// metadataSlack is how much more than the data freed statfs may report:
// it counts free metadata space too, and deduplication drops extent items,
// now and then freeing a metadata node or two (16 KiB each, twice over
// with btrfs's DUP metadata). Less than the data expected is never
// accepted: a leftover copy or an extent still referred to shows there.
const metadataSlack = 64 << 10

// applyFreed applies plan with applysame on mnt, checks that every line
// was done, and returns the bytes statfs reports freed (testfs.FreeBytes
// syncs the filesystem first).
func applyFreed(t *testing.T, mnt, plan string) int64 {
	t.Helper()
	free := testfs.FreeBytes(t, mnt)
	results, applyErr, code := tool(t, []byte(plan), "applysame")
	if code != 0 {
		t.Fatalf("applysame: exit %d\n%s\n%s", code, results, applyErr)
	}
	allDone(t, results)
	return testfs.FreeBytes(t, mnt) - free
}

// freedAsExpected reports whether statfs's freed bytes match the data
// freed, want, allowing for metadataSlack.
func freedAsExpected(freed, want int64) bool { return freed >= want && freed <= want+metadataSlack }

// TestPipeline runs the pipeline on a tree whose freeable space is known:
// two whole copies of a 4 MiB file (8 MiB), and a 1 MiB file that also
// lies, block-aligned, inside an 8 MiB image (1 MiB: the loose file's
// extent is covered whole). Zero blocks, small files and unique data free
// nothing.
func TestPipeline(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "512M")
			dir := filepath.Join(mnt, "tree")
			rng := rand.New(rand.NewPCG(3, 4))
			a := random(rng, 4*MiB)
			loose := random(rng, MiB)
			write(t, filepath.Join(dir, "a"), a)
			write(t, filepath.Join(dir, "copies/b"), a)
			write(t, filepath.Join(dir, "copies/c"), a)
			write(t, filepath.Join(dir, "loose"), loose)
			write(t, filepath.Join(dir, "disk.img"), bytes.Join([][]byte{random(rng, 2*MiB), loose, random(rng, 5*MiB)}, nil))
			write(t, filepath.Join(dir, "zeros"), make([]byte, MiB))
			write(t, filepath.Join(dir, "unique"), random(rng, 3*MiB+123))
			for i := range 20 {
				write(t, filepath.Join(dir, fmt.Sprintf("small/%d", i)), []byte("small file\n"))
			}
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")

			planOut, results, applyErr := pipeline(t, db, dir)

			freed := testfs.FreeBytes(t, mnt) - free
			want := int64(9 * MiB)
			if fstype == "xfs" {
				// btrfs keeps the small files inline in metadata, where they
				// cannot be shared; on XFS each of the 19 copies frees a block.
				want += 19 * 4096
			}
			if !freedAsExpected(freed, want) {
				t.Errorf("freed %d bytes as statfs reports; want %d (and up to %d of metadata)\nplan:\n%s\napplysame:\n%s", freed, want, metadataSlack, planOut, applyErr)
			}
			if !strings.Contains(applyErr, fmt.Sprintf("freed %d bytes", freed)) {
				t.Errorf("applysame summary does not report the %d bytes freed:\n%s", freed, applyErr)
			}
			allDone(t, results)
			after := testfs.SHA256Tree(t, dir)
			if fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
			}

			// A second run reads nothing and plans nothing.
			_, stderr, code := tool(t, nil, "hashfile", "-db", db, dir)
			if code != 0 || !strings.Contains(stderr, " 0 hashed (") || !strings.Contains(stderr, "read 0 B ") {
				t.Errorf("second hashfile: exit %d, %s; want nothing hashed or read", code, stderr)
			}
			if out, stderr, _ := tool(t, nil, "findsame", "-db", db); out != "" {
				t.Errorf("second findsame planned:\n%s\n%s", out, stderr)
			}
		})
	}
}

// TestWriterDuringApply rewrites files while applysame deduplicates them:
// every file ends with exactly what was last written to it or, if it was
// not written, its old content; the conflicts show as differs or stale.
func TestWriterDuringApply(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "1G")
	dir := filepath.Join(mnt, "tree")
	rng := rand.New(rand.NewPCG(5, 6))
	orig := random(rng, 8*MiB)
	const n = 24
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), orig)
	}
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, dir); code != 0 {
		t.Fatalf("hashfile: %s", stderr)
	}
	planOut, stderr, _ := tool(t, nil, "findsame", "-db", db)
	if planOut == "" {
		t.Fatalf("findsame planned nothing: %s", stderr)
	}

	// The writer rewrites every other file, one block at a time from the
	// end, once before applysame starts (so that the run cannot miss it
	// whatever the timing) and again and again while it runs with small
	// chunks, until it ends.
	want := make(map[string][]byte)
	for i := range n {
		want[fmt.Sprintf("f%02d", i)] = orig
	}
	var wg sync.WaitGroup
	started, done := make(chan struct{}), make(chan struct{})
	wg.Go(func() {
		wrng := rand.New(rand.NewPCG(7, 8))
		for pass := 0; ; pass++ {
			for i := 1; i < n; i += 2 {
				name := fmt.Sprintf("f%02d", i)
				data := append([]byte(nil), want[name]...)
				f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
				if err != nil {
					t.Error(err)
					return
				}
				for off := len(data) - 4096; off >= 0; off -= 512 << 10 {
					copy(data[off:], random(wrng, 4096))
					if _, err := f.WriteAt(data[off:off+4096], int64(off)); err != nil {
						t.Error(err)
					}
				}
				f.Close()
				want[name] = data
			}
			if pass == 0 {
				close(started)
			}
			select {
			case <-done:
				return
			default:
			}
		}
	})
	<-started
	cmd := exec.Command(filepath.Join(bin, "applysame"), "-chunk", "1M")
	cmd.Stdin = strings.NewReader(planOut)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	close(done)
	wg.Wait()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) {
		t.Fatalf("applysame: %v; want exit 0 or 3\n%s", err, errb.String())
	}

	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s does not hold what was last written to it", name)
		}
	}
	counts := make(map[plan.Status]int)
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r plan.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		for _, d := range r.Dst {
			counts[d.Status]++
		}
	}
	t.Logf("destination statuses: %v", counts)
	if counts[plan.DstDiffers]+counts[plan.DstStale] == 0 {
		t.Errorf("no destination differs or is stale, yet half the files were rewritten while applysame ran: %v", counts)
	}
	if counts[plan.DstError] != 0 {
		t.Errorf("errors: %v\n%s", counts, errb.String())
	}
}

// TestReadOnlySnapshot shows that root can make a file in a read-only
// btrfs snapshot a destination: its extents, referenced by nothing else,
// are freed.
func TestReadOnlySnapshot(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	rng := rand.New(rand.NewPCG(9, 10))
	data := random(rng, 4*MiB)
	testfs.Run(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "vol"))
	write(t, filepath.Join(mnt, "vol/f"), data)
	write(t, filepath.Join(mnt, "a-copy"), data)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", filepath.Join(mnt, "vol"), filepath.Join(mnt, "snap"))
	if err := os.Remove(filepath.Join(mnt, "vol/f")); err != nil {
		t.Fatal(err)
	}
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)
	db := filepath.Join(t.TempDir(), "index.db")

	planOut, results, applyErr := pipeline(t, db, mnt)

	var r plan.Result
	if err := json.Unmarshal([]byte(results), &r); err != nil {
		t.Fatalf("results %q: %v\nplan: %s\n%s", results, err, planOut, applyErr)
	}
	if len(r.Dst) != 1 || r.Dst[0].Path != filepath.Join(mnt, "snap/f") || r.Dst[0].Status != plan.DstDeduped {
		t.Errorf("result %s; want snap/f deduped", results)
	}
	if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, 4*MiB) {
		t.Errorf("freed %d bytes; want %d (and up to %d of metadata)", freed, 4*MiB, metadataSlack)
	}
	if after := testfs.SHA256Tree(t, mnt); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestNoCOWAndSubvolumes: btrfs shares storage between files in different
// subvolumes, but between a file that keeps checksums of its data and one
// that does not (NOCOW, or written while mounted with nodatasum, which
// FS_IOC_GETFLAGS does not show) it refuses (EINVAL). Two NOCOW copies, a
// copy written without checksums and two copies in two subvolumes of the
// same data are planned as a group of three and a pair, each line is
// done, each frees all copies but one, and the summary counts the btrfs
// once.
func TestNoCOWAndSubvolumes(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M")
	rng := rand.New(rand.NewPCG(11, 12))
	data := random(rng, 4*MiB)
	testfs.Run(t, "btrfs", "subvolume", "create", filepath.Join(mnt, "vol"))
	for _, name := range []string{"nocow1", "nocow2"} {
		// The attribute takes only on an empty file.
		p := filepath.Join(mnt, name)
		write(t, p, nil)
		testfs.Run(t, "chattr", "+C", p)
		write(t, p, data)
	}
	testfs.Run(t, "mount", "-o", "remount,nodatasum", mnt)
	write(t, filepath.Join(mnt, "nosum"), data)
	testfs.Run(t, "mount", "-o", "remount,datasum", mnt)
	write(t, filepath.Join(mnt, "cow"), data)
	write(t, filepath.Join(mnt, "vol/cow"), data)
	before := testfs.SHA256Tree(t, mnt)
	free := testfs.FreeBytes(t, mnt)
	db := filepath.Join(t.TempDir(), "index.db")

	planOut, results, applyErr := pipeline(t, db, mnt)

	var pairs []string
	for line := range strings.Lines(planOut) {
		var d plan.Dedupe
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		for _, dst := range d.Dst {
			pairs = append(pairs, strings.TrimPrefix(dst.Path, mnt+"/")+" <- "+strings.TrimPrefix(d.Src.Path, mnt+"/"))
		}
	}
	if want := []string{"vol/cow <- cow", "nocow2 <- nocow1", "nosum <- nocow1"}; fmt.Sprint(pairs) != fmt.Sprint(want) {
		t.Errorf("planned %q; want %q\n%s", pairs, want, planOut)
	}
	allDone(t, results)
	if freed := testfs.FreeBytes(t, mnt) - free; !freedAsExpected(freed, 12*MiB) {
		t.Errorf("freed %d bytes; want %d (and up to %d of metadata)", freed, 12*MiB, metadataSlack)
	}
	if n := strings.Count(applyErr, "btrfs filesystem at "); n != 1 {
		t.Errorf("applysame summary reports %d btrfs filesystems; want 1 for two subvolumes:\n%s", n, applyErr)
	}
	if after := testfs.SHA256Tree(t, mnt); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
}
