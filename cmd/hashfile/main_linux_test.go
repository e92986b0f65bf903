package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fiemap"
	"same/internal/index"
	"same/internal/testfs"
	"same/internal/walk"
)

var binDir string // holds the hashfile binary, once built

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hashfileBin builds hashfile once per test binary, in a directory any user can
// read, and returns its path.
func hashfileBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hashfile-bin-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "hashfile")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestFS runs hashfile on real btrfs and XFS filesystems.
func TestFS(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "512M")
			tests := []struct {
				name string
				fn   func(t *testing.T, dir string)
			}{
				{"incremental", testIncremental},
				{"sums", testSums},
				{"special", testSpecial},
				{"changed", testChanged},
				{"permission", testPermission},
				{"interrupt", testInterrupt},
				{"index full", testIndexFull},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					dir, err := os.MkdirTemp(mnt, tt.name+"-")
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { os.RemoveAll(dir) })
					tt.fn(t, dir)
				})
			}
		})
	}
}

// testSums checks the stored sums against SHA-256 of each block read back
// independently, and the extents recorded.
func testSums(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	const kib = 1 << 10
	rnd := func(seed uint64, n int) []byte { return randomBytes(seed, n) }
	zeros := func(n int) []byte { return make([]byte, n) }
	files := map[string][]byte{
		"random1M":   rnd(1, 1<<20),
		"zeromiddle": slices.Concat(rnd(2, 4*kib), zeros(8*kib), rnd(3, 4*kib+100)),
		"tail":       rnd(4, 10000),
		"zerotail":   slices.Concat(rnd(5, 4*kib), zeros(1000)),
		"onebyte":    {'x'},
		"exact":      rnd(6, 8*kib),
		"allzero":    zeros(64 * kib),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(tree, name), data)
	}
	// A sparse file: a hole, 4 KiB of data at 512 KiB, a hole to 1 MiB.
	sparse := filepath.Join(tree, "sparse")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(rnd(7, 4*kib), 512*kib); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	db := filepath.Join(dir, "index.db")
	_, stderr, err := hashfile(t, "", "-db", db, "-j", "4", tree)
	if err != nil {
		t.Fatalf("run = %v\n%s", err, stderr)
	}
	checkTree(t, db, tree)

	ix := openIndex(t, db)
	got := indexed(t, db)
	ctx := context.Background()
	zeroBlocks := map[string][]int{"zeromiddle": {1, 2}, "allzero": {0, 15}, "sparse": {0, 127, 129, 255}}
	for name, blocks := range zeroBlocks {
		sums, err := ix.Sums(ctx, got[filepath.Join(tree, name)].ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range blocks {
			if i*blockhash.SumSize >= len(sums) {
				continue // zero blocks at the end are not stored
			}
			if s := blockhash.At(sums, i); s != blockhash.Zero {
				t.Errorf("%s: sum of zero block %d = %#x; want 0", name, i, s)
			}
		}
	}

	extents := make(map[int64][]fiemap.Extent)
	err = ix.ScanExtents(ctx, 1, func(_ int, id int64, e fiemap.Extent) error {
		extents[id] = append(extents[id], e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"random1M", "exact", "tail"} {
		f := got[filepath.Join(tree, name)]
		ext := extents[f.ID]
		if len(ext) == 0 {
			t.Errorf("%s: no extents recorded", name)
			continue
		}
		var end int64
		for _, e := range ext {
			if e.Logical != end {
				t.Errorf("%s: extent %+v starts at %d; want %d (extents %+v)", name, e, e.Logical, end, ext)
			}
			if e.Flags&(fiemap.FlagDelalloc|fiemap.FlagUnknown) != 0 {
				t.Errorf("%s: extent %+v is not allocated yet", name, e)
			}
			end = e.End()
		}
		if end < f.Size {
			t.Errorf("%s: extents end at %d; want >= size %d", name, end, f.Size)
		}
		if ext[len(ext)-1].Flags&fiemap.FlagLast == 0 {
			t.Errorf("%s: last extent %+v lacks FIEMAP_EXTENT_LAST", name, ext[len(ext)-1])
		}
	}
	// The data of the sparse file is mapped, the holes are not.
	var data int64
	for _, e := range extents[got[sparse].ID] {
		data += e.Length
		if e.Logical > 512*kib || e.End() < 516*kib {
			t.Errorf("sparse: extent %+v does not hold its data at [512K, 516K)", e)
		}
	}
	if data == 0 || data >= 1<<20 {
		t.Errorf("sparse: extents map %d bytes; want some, less than 1 MiB", data)
	}
}

// testSpecial puts files that must never be opened in the tree: opening a
// FIFO blocks, reading /dev/zero or following a link to it never ends.
func testSpecial(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "data"), randomBytes(1, 1<<20))
	writeFile(t, filepath.Join(tree, "big"), randomBytes(2, 4<<20))
	writeFile(t, filepath.Join(tree, "empty"), nil)
	if err := unix.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(tree, "zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(sock, &unix.SockaddrUnix{Name: filepath.Join(tree, "sock")}); err != nil {
		t.Fatal(err)
	}
	unix.Close(sock)
	for name, target := range map[string]string{
		"link-big":  filepath.Join(tree, "big"),
		"link-zero": "/dev/zero",
		"link-fifo": "fifo",
		"link-root": "/",
	} {
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}

	db := filepath.Join(dir, "index.db")
	tests := []struct {
		name  string
		roots []string
		want  counts
	}{
		{"tree", []string{tree}, counts{seen: 2, hashed: 2, skipped: 8, read: 5 << 20}},
		// Symlinks given as roots are refused, each a failed item (see
		// TestSymlinkRoot); the special files are skipped.
		{"roots", []string{"fifo", "zero", "sock", "link-zero", "link-fifo", "empty"}, counts{skipped: 4, failed: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-db", db}
			for _, r := range tt.roots {
				if !filepath.IsAbs(r) {
					r = filepath.Join(tree, r)
				}
				args = append(args, r)
			}
			stderr, err := hashfileBounded(t, args...)
			if want := min(tt.want.failed, 1) * cli.ExitPartial; cli.Status(err) != want {
				t.Fatalf("run = %v (exit %d; want %d)\n%s", err, cli.Status(err), want, stderr)
			}
			if tt.want.failed > 0 {
				stderr = stderr[strings.LastIndex(stderr, "hashfile: "):] // the summary, after the failures
			}
			checkSummary(t, stderr, tt.want)
		})
	}
	checkTree(t, db, tree)
	var got []string
	for p := range indexed(t, db) {
		got = append(got, filepath.Base(p))
	}
	slices.Sort(got)
	if want := []string{"big", "data"}; !slices.Equal(got, want) {
		t.Errorf("indexed = %q; want %q", got, want)
	}
}

// hashfileBounded is hashfile that fails the test, instead of hanging it,
// when run does not return within a generous time.
func hashfileBounded(t *testing.T, args ...string) (string, error) {
	t.Helper()
	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
		done <- result{errb.String(), err}
	}()
	select {
	case r := <-done:
		return r.stderr, r.err
	case <-time.After(2 * time.Minute):
		t.Fatalf("run(%q) did not return in 2 minutes: it opened a special file?", args)
		return "", nil
	}
}

// testChanged rewrites a file while hashfile reads it, until hashfile has
// seen it change at least once. When a run misses the writes, what it
// recorded must be the file's content, if the file kept the identity
// recorded.
func testChanged(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	path := filepath.Join(tree, "busy")
	const size = 64 << 20
	writeFile(t, path, randomBytes(1, size))
	writeFile(t, filepath.Join(tree, "calm"), randomBytes(2, 100<<10))

	const tries = 20
	changed := 0
	for try := range tries {
		db := filepath.Join(dir, fmt.Sprintf("index%d.db", try))
		stop := make(chan struct{})
		var writer sync.WaitGroup
		writer.Go(func() { rewrite(t, path, size, stop) })
		stderr, err := hashfileBounded(t, "-db", db, "-j", "1", tree)
		close(stop)
		writer.Wait()

		switch cli.Status(err) {
		case cli.ExitPartial:
			changed++
			want := fmt.Sprintf("hashfile: %s: changed while being read; not recorded\n", path)
			if !strings.Contains(stderr, want) {
				t.Errorf("try %d: stderr = %q; want it to hold %q", try, stderr, want)
			}
			// How much was read before the change was seen varies.
			gotSum, _, _ := strings.Cut(summaryOf(stderr), "; read ")
			wantSum, _, _ := strings.Cut(counts{seen: 2, hashed: 1, failed: 1}.String(), "; read ")
			if gotSum != wantSum {
				t.Errorf("try %d: summary = %q; want %q", try, gotSum, wantSum)
			}
			got := indexed(t, db)
			if _, ok := got[path]; ok {
				t.Errorf("try %d: the changed file was recorded", try)
			}
			if _, ok := got[filepath.Join(tree, "calm")]; !ok {
				t.Errorf("try %d: the calm file was not recorded", try)
			}
			// The walk is recorded all the same: the next run's tree
			// search finds the file by its changed inode item, and
			// walks only what changed.
			if onBtrfs(t, tree) {
				var walked string
				if err := openIndex(t, db).DB().QueryRow("SELECT walked FROM roots WHERE path = ?", tree).Scan(&walked); err != nil || walked == "" {
					t.Errorf("try %d: the walk of %s is not recorded (%q, %v)", try, tree, walked, err)
				}
			}
			// The next run, the file at rest, records it.
			if _, stderr, err := hashfile(t, "", "-db", db, tree); err != nil {
				t.Fatalf("try %d: the run after: %v\n%s", try, err, stderr)
			}
			f, ok := indexed(t, db)[path]
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("try %d: the run after did not record %s", try, path)
			}
			if sums, err := openIndex(t, db).Sums(context.Background(), f.ID); err != nil || !bytes.Equal(sums, wantSums(data, 4096)) {
				t.Errorf("try %d: the run after recorded sums of %s that differ from its content (%v)", try, path, err)
			}
		case cli.ExitOK:
			f, ok := indexed(t, db)[path]
			if !ok {
				t.Fatalf("try %d: run succeeded but %s is not recorded", try, path)
			}
			id := identity(t, path)
			if f.Mtime != id.Mtime || f.Ctime != id.Ctime {
				t.Logf("try %d: recorded, then rewritten; cannot compare", try)
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ix := openIndex(t, db)
			sums, err := ix.Sums(context.Background(), f.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sums, wantSums(data, 4096)) {
				t.Errorf("try %d: recorded sums differ from the content of %s, whose identity is the recorded one", try, path)
			}
		default:
			t.Fatalf("try %d: run = %v\n%s", try, err, stderr)
		}
		if changed > 0 {
			t.Logf("change seen on try %d", try)
			break
		}
	}
	if changed == 0 {
		t.Errorf("in %d tries hashfile never saw %s change while it read it", tries, path)
	}
}

// rewrite rewrites 4 KiB blocks of the file at path with new content,
// syncing each, until stop is closed.
func rewrite(t *testing.T, path string, size int64, stop <-chan struct{}) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	blocks := size / 4096
	for i := uint64(0); ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		off := int64(i*7919) % blocks * 4096
		if _, err := f.WriteAt(randomBytes(i+1000, 4096), off); err != nil {
			t.Error(err)
			return
		}
		if err := f.Sync(); err != nil {
			t.Error(err)
			return
		}
	}
}

const nobody = 65534

// asNobody returns a command running hashfile as user and group nobody.
func asNobody(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) not found, cannot run as nobody: %v", err)
	}
	return exec.CommandContext(ctx, setpriv, slices.Concat([]string{
		fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups", hashfileBin(t)}, args)...)
}

// allowTraverse lets every user search dir and the directories above it
// (test directories are created 0700).
func allowTraverse(t *testing.T, dir string) {
	t.Helper()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
		if d == "/" {
			return
		}
	}
}

// testPermission runs hashfile as nobody on a tree holding a file and
// directories it may not read: each is reported, the rest recorded, and
// nothing the index held under them is pruned.
func testPermission(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	idx := filepath.Join(dir, "idx")
	names := []string{"ok1", "secret", "locked/inner", "listonly/inner", "sub/ok2"}
	for i, n := range names {
		writeFile(t, filepath.Join(tree, n), randomBytes(uint64(i), 20000))
	}
	if err := os.Mkdir(idx, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(idx, 0o777); err != nil { // umask
		t.Fatal(err)
	}
	allowTraverse(t, dir)

	// Hashed as root first.
	dbRoot := filepath.Join(idx, "root.db")
	if _, stderr, err := hashfile(t, "", "-db", dbRoot, tree); err != nil {
		t.Fatalf("run as root = %v\n%s", err, stderr)
	}
	checkTree(t, dbRoot, tree)
	before := indexed(t, dbRoot)
	matches, _ := filepath.Glob(dbRoot + "*")
	for _, m := range matches {
		if err := os.Chown(m, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}

	for path, mode := range map[string]os.FileMode{
		"secret":   0,
		"locked":   0,
		"listonly": 0o444, // names can be read, entries not looked up
	} {
		if err := os.Chmod(filepath.Join(tree, path), mode); err != nil {
			t.Fatal(err)
		}
	}
	wantErrs := []string{
		fmt.Sprintf("hashfile: lstat %s/listonly/inner: permission denied", tree),
		fmt.Sprintf("hashfile: open %s/locked: permission denied", tree),
		fmt.Sprintf("hashfile: open %s/secret: permission denied", tree),
	}

	tests := []struct {
		name string
		db   string
		want counts
		kept []string // in the index after the run
	}{
		{"after root", dbRoot, counts{seen: 3, unchanged: 2, failed: 3}, names},
		{"fresh", filepath.Join(idx, "nobody.db"), counts{seen: 3, hashed: 2, failed: 3, read: 40000}, []string{"ok1", "sub/ok2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stderr bytes.Buffer
			cmd := asNobody(t, ctx, "-db", tt.db, tree)
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitPartial {
				t.Fatalf("hashfile as nobody = %v; want exit status %d\nstderr:\n%s", err, cli.ExitPartial, stderr.String())
			}
			errs := errorLines(stderr.String())
			// The index directory is open to all for nobody to write in.
			wantLines := append([]string{fmt.Sprintf("hashfile: warning: index %s is open to group or others (%s mode 0777; want 0600 files in a 0700 directory): it names files and holds sums of their blocks", tt.db, idx)}, wantErrs...)
			slices.Sort(wantLines)
			if !slices.Equal(errs, wantLines) {
				t.Errorf("errors reported:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(wantLines, "\n"))
			}
			checkSummary(t, stderr.String(), tt.want)

			got := indexed(t, tt.db)
			var paths []string
			for p := range got {
				paths = append(paths, strings.TrimPrefix(p, tree+"/"))
			}
			slices.Sort(paths)
			want := slices.Sorted(slices.Values(tt.kept))
			if !slices.Equal(paths, want) {
				t.Errorf("indexed = %q; want %q", paths, want)
			}
			if tt.db == dbRoot {
				for p, f := range got {
					want := before[p]
					// On btrfs the walk is recorded (its generation, for the
					// tree search of a run as root), and what could not be
					// read is to be looked at again: the rows kept there
					// have their owner forgotten, so that the next run does
					// not take them as they are.
					rel := strings.TrimPrefix(p, tree+"/")
					if onBtrfs(t, tree) && (rel == "secret" || strings.HasPrefix(rel, "locked/") || strings.HasPrefix(rel, "listonly/")) {
						want.UID = index.UIDUnknown
					}
					if f != want {
						t.Errorf("%s: index row = %+v; want %+v", p, f, want)
					}
				}
			}
		})
	}
}

// testInterrupt kills hashfile with SIGKILL, and interrupts it with SIGINT,
// once it has committed some files, and checks the index is sound and the
// next run completes it.
func testInterrupt(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	const (
		dirs   = 16
		perDir = 1000
		size   = 8 << 10
		nfiles = dirs * perDir
		maxTry = 3
	)
	randomTree(t, tree, dirs, perDir, size)
	bin := hashfileBin(t)

	tests := []struct {
		name   string
		sig    syscall.Signal
		status int // exit status, -1 for killed by sig
	}{
		{"SIGKILL", syscall.SIGKILL, -1},
		{"SIGINT", syscall.SIGINT, cli.ExitInterrupted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var db string
			for try := 1; ; try++ {
				db = filepath.Join(dir, fmt.Sprintf("%s-%d.db", tt.name, try))
				stderr, status, ok := signalWhenCommitting(t, bin, db, tree, tt.sig)
				if !ok {
					if try == maxTry {
						t.Fatalf("hashfile finished before it could be signalled, %d times", maxTry)
					}
					t.Logf("try %d: hashfile finished before the signal; again", try)
					continue
				}
				if status != tt.status {
					t.Fatalf("exit status after %v = %d; want %d\nstderr:\n%s", tt.sig, status, tt.status, stderr)
				}
				if tt.sig == syscall.SIGINT && !strings.Contains(stderr, "hashfile: interrupted\n") {
					t.Errorf("stderr = %q; want it to say interrupted", stderr)
				}
				break
			}

			done := committedWhole(t, db)
			t.Logf("%d of %d files committed before %v", done, nfiles, tt.sig)
			if done == 0 || done > nfiles {
				t.Fatalf("%d files committed; want 1 to %d", done, nfiles)
			}

			_, stderr, err := hashfile(t, "", "-db", db, tree)
			if err != nil {
				t.Fatalf("run after %v = %v\n%s", tt.sig, err, stderr)
			}
			left := nfiles - done
			checkSummary(t, stderr, counts{seen: nfiles, hashed: left, unchanged: done, read: int64(left) * size})
			checkTree(t, db, tree)
		})
	}
}

// committedWhole checks that the index at db, after a run that ended
// before its walk did, is sound and holds each file committed whole (one
// row of sums a file), and returns how many files it holds.
func committedWhole(t *testing.T, db string) int {
	t.Helper()
	// Closed before the next run, which it would keep from being the
	// last connection, the one that checkpoints the log.
	ix, err := index.Open(db)
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	defer ix.Close()
	var check string
	if err := ix.DB().QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", check, err)
	}
	var files, blocks int
	if err := ix.DB().QueryRow("SELECT count(*), (SELECT count(*) FROM blocks) FROM files").Scan(&files, &blocks); err != nil {
		t.Fatal(err)
	}
	if blocks != files {
		t.Errorf("%d rows of sums for %d files; want one per file", blocks, files)
	}
	return files
}

// randomTree writes dirs directories d00, d01... under tree, each of perDir
// files f0000, f0001... of size random bytes, none like another.
func randomTree(t *testing.T, tree string, dirs, perDir, size int) {
	t.Helper()
	for d := range dirs {
		sub := filepath.Join(tree, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range perDir {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", i)), randomBytes(uint64(d*perDir+i), size), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testIndexFull runs hashfile with its index on a real filesystem that
// fills up in the middle of a run, then with it full from the start:
// each run fails saying where the room ran out and what to do, the
// index keeps what was committed, whole and correct, and once room is
// made the next run goes on from there and completes it.
func testIndexFull(t *testing.T, dir string) {
	tree := filepath.Join(dir, "tree")
	const (
		dirs   = 8
		perDir = 1000
		size   = 8 << 10
		nfiles = dirs * perDir
	)
	randomTree(t, tree, dirs, perDir, size)
	db := filepath.Join(testfs.Mount(t, "ext4", "32M"), "index.db")
	// The index made, its first directory recorded: the rest needs more
	// than the room left below.
	if _, stderr, err := hashfile(t, "", "-db", db, filepath.Join(tree, "d00")); err != nil {
		t.Fatalf("first directory: %v\n%s", err, stderr)
	}
	// The write that fails is the commit of a batch, or one of its
	// statements; on a full disk, the first write of the run, or the
	// shared memory of a connection, sized when it opens.
	full := regexp.QuoteMeta("open index "+db+": disk I/O error (4874)") + `|(start scan|commit|record [^:]+): ` + regexp.QuoteMeta("database or disk is full (13)")
	want := func(free string) *regexp.Regexp {
		return regexp.MustCompile("^(" + full + ")" + regexp.QuoteMeta(": no room left for the index "+db+" (") + free +
			regexp.QuoteMeta(" KiB free there): free some space there, or move the index (-db), and run again; what was recorded before is kept") + "$")
	}

	// Room for about one batch: the run fails in the middle.
	filler := testfs.Fill(t, filepath.Dir(db), 2<<20)
	_, stderr, err := hashfile(t, "", "-db", db, "-j", "1", tree)
	if cli.Status(err) != cli.ExitError || !want(`[0-9]+`).MatchString(err.Error()) {
		t.Fatalf("run on a filling disk: status %d, error %v\nstderr:\n%s", cli.Status(err), err, stderr)
	}
	done := committedWhole(t, db)
	t.Logf("%d of %d files committed before the disk filled", done, nfiles)
	if done < perDir || done >= nfiles {
		t.Fatalf("%d files committed; want %d to %d", done, perDir, nfiles-1)
	}
	// What is committed is right: every file recorded as it is.
	recorded := indexed(t, db)
	checkTreeExcept(t, db, tree, func(path string) bool {
		_, ok := recorded[path]
		return !ok
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	// No room at all: what the log took before (its frames not copied
	// into the index for want of room) may take a batch or two more. The
	// room reported is what is free once the run has failed: a block or
	// so that SQLite gave back (its log, or a journal) on the way.
	filler = testfs.Fill(t, filepath.Dir(db), 0)
	_, stderr, err = hashfile(t, "", "-db", db, tree)
	if cli.Status(err) != cli.ExitError || !want("(0|4|8|12|16)").MatchString(err.Error()) {
		t.Fatalf("run on a full disk: status %d, error %v\nstderr:\n%s", cli.Status(err), err, stderr)
	}
	t.Logf("on a full disk: %v", err)
	before := done
	if done = committedWhole(t, db); done < before || done >= nfiles {
		t.Errorf("%d files committed after a run on a full disk; want %d to %d", done, before, nfiles-1)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	_, stderr, err = hashfile(t, "", "-db", db, tree)
	if err != nil {
		t.Fatalf("run with room again: %v\n%s", err, stderr)
	}
	left := nfiles - done
	checkSummary(t, stderr, counts{seen: nfiles, hashed: left, unchanged: done, read: int64(left) * size})
	checkTree(t, db, tree)
}

// signalWhenCommitting starts hashfile on tree, waits until the index at db
// holds committed files, and sends sig. It returns hashfile's stderr and
// exit status (-1 when killed by sig), and false when hashfile ended before
// it was signalled.
func signalWhenCommitting(t *testing.T, bin, db, tree string, sig syscall.Signal) (string, int, bool) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-db", db, "-j", "1", tree)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == sig {
				return -1
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("hashfile: %v", err)
		}
		return 0
	}

	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-done:
			return stderr.String(), status(err), false
		default:
		}
		if n, err := committedFiles(db); err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("no files committed to %s within a minute\nstderr:\n%s", db, stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case err := <-done:
		st := status(err)
		return stderr.String(), st, st != 0
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("hashfile did not end within a minute of %v\nstderr:\n%s", sig, stderr.String())
		return "", 0, false
	}
}

// committedFiles counts the files committed to the index at db, through a
// read-only connection of its own.
func committedFiles(db string) (int, error) {
	if _, err := os.Stat(db); err != nil {
		return 0, err
	}
	raw, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	var n int
	err = raw.QueryRow("SELECT count(*) FROM files").Scan(&n)
	return n, err
}

// hashfile does not walk a filesystem that cannot deduplicate, whose data
// no plan could use (ext4 here; a network share or a FUSE mount on a
// host), names it once a run, skips the files listed on it, prunes what
// the index held under a directory that such a filesystem is mounted over,
// and says nothing of those that can.
func TestCannotDedupe(t *testing.T) {
	ext4 := testfs.Mount(t, "ext4", "64M")
	btrfs := testfs.Mount(t, "btrfs", "256M")
	for _, mnt := range []string{ext4, btrfs} {
		for _, name := range []string{"a/f", "b/g", "h"} {
			writeFile(t, filepath.Join(mnt, "tree", name), randomBytes(1, 10000))
		}
	}
	db := filepath.Join(t.TempDir(), "index.db")
	paths := func() []string {
		t.Helper()
		return slices.Sorted(maps.Keys(indexed(t, db)))
	}
	other, tree := filepath.Join(ext4, "tree"), filepath.Join(btrfs, "tree")
	_, stderr, err := hashfile(t, "", "-db", db, other, tree)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	warning := "hashfile: ext4 at " + other + " cannot deduplicate: not walked\n"
	if !strings.HasPrefix(stderr, warning) || strings.Count(stderr, "cannot deduplicate") != 1 {
		t.Errorf("stderr = %q; want it to start %q, and no other warning", stderr, warning)
	}
	checkSummary(t, stderr[len(warning):], counts{seen: 3, hashed: 3, skipped: 1, read: 30000})
	want := []string{filepath.Join(tree, "a/f"), filepath.Join(tree, "b/g"), filepath.Join(tree, "h")}
	if got := paths(); !slices.Equal(got, want) {
		t.Errorf("indexed %q; want %q", got, want)
	}

	// Listed on standard input: skipped, the filesystem named once.
	list := strings.Join([]string{filepath.Join(other, "a/f"), filepath.Join(other, "h"), filepath.Join(tree, "h")}, "\n") + "\n"
	_, stderr, err = hashfile(t, list, "-db", db, "-")
	if err != nil {
		t.Fatalf("hashfile - = %v\n%s", err, stderr)
	}
	warning = "hashfile: ext4 at " + filepath.Join(other, "a/f") + " cannot deduplicate: not walked\n"
	if !strings.HasPrefix(stderr, warning) || strings.Count(stderr, "cannot deduplicate") != 1 {
		t.Errorf("listed: stderr = %q; want it to start %q, and no other warning", stderr, warning)
	}
	checkSummary(t, stderr[len(warning):], counts{seen: 1, unchanged: 1, skipped: 2})

	// Mounted over a directory the index holds: what it held is pruned.
	testfs.Run(t, "mount", "--bind", other, filepath.Join(tree, "a"))
	t.Cleanup(func() { testfs.Run(t, "umount", filepath.Join(tree, "a")) })
	_, stderr, err = hashfile(t, "", "-db", db, tree)
	if err != nil {
		t.Fatalf("hashfile over a mount = %v\n%s", err, stderr)
	}
	warning = "hashfile: ext4 at " + filepath.Join(tree, "a") + " cannot deduplicate: not walked\n"
	if !strings.HasPrefix(stderr, warning) || strings.Count(stderr, "cannot deduplicate") != 1 {
		t.Errorf("over a mount: stderr = %q; want it to start %q, and no other warning", stderr, warning)
	}
	checkSummary(t, stderr[len(warning):], counts{seen: 2, unchanged: 2, pruned: 1, listed: -1})
	if got := paths(); !slices.Equal(got, want[1:]) {
		t.Errorf("indexed %q; want %q", got, want[1:])
	}

	// With -q, no warning.
	_, stderr, err = hashfile(t, "", "-q", "-db", db, other)
	if err != nil || stderr != "" {
		t.Errorf("hashfile -q = %v, stderr %q; want nil, nothing", err, stderr)
	}
}

// Below a PATH on a filesystem that cannot deduplicate (an ext4 root), a
// btrfs mounted on one of its directories is walked: the walk goes
// through the ext4 toward it, and lists nothing else there.
func TestCannotDedupeMountBelow(t *testing.T) {
	ext4 := testfs.Mount(t, "ext4", "64M")
	btrfs := testfs.Mount(t, "btrfs", "256M")
	for _, name := range []string{"a/f", "sub/g", "sub/data/h"} {
		writeFile(t, filepath.Join(ext4, name), randomBytes(1, 10000))
	}
	writeFile(t, filepath.Join(btrfs, "data", "x"), randomBytes(2, 10000))
	writeFile(t, filepath.Join(btrfs, "data", "y", "z"), randomBytes(3, 10000))
	data := filepath.Join(ext4, "sub", "data")
	testfs.Run(t, "mount", "--bind", filepath.Join(btrfs, "data"), data)
	t.Cleanup(func() { testfs.Run(t, "umount", data) })
	db := filepath.Join(t.TempDir(), "index.db")
	warning := "hashfile: ext4 at " + ext4 + " cannot deduplicate: not walked\n"
	for i, want := range []counts{{seen: 2, hashed: 2, read: 20000}, {seen: 2, unchanged: 2, listed: -1, rootsSkimmed: -1}} {
		_, stderr, err := hashfile(t, "", "-db", db, ext4)
		if err != nil || !strings.HasPrefix(stderr, warning) {
			t.Fatalf("run %d: hashfile = %v, stderr %q; want nil, and it to start %q", i+1, err, stderr, warning)
		}
		if i == 0 {
			checkSummary(t, stderr[len(warning):], want)
		} else if !strings.Contains(stderr, " 2 files seen, 0 hashed ") || !strings.Contains(stderr, "; read 0 B in ") {
			t.Errorf("run 2: stderr %q; want 2 files seen, none hashed, nothing read", stderr)
		}
		if got, want := slices.Sorted(maps.Keys(indexed(t, db))), []string{filepath.Join(data, "x"), filepath.Join(data, "y", "z")}; !slices.Equal(got, want) {
			t.Errorf("run %d: indexed %q; want %q", i+1, got, want)
		}
	}
}

// hashfile does not walk pseudo filesystems (proc, sysfs), which hold no
// file data and whose files can take for ever to read (/proc/kcore): it
// names each once. Nor does it walk an overlay (a container's merged
// view), which cannot deduplicate.
func TestPseudoAndOverlay(t *testing.T) {
	btrfs := testfs.Mount(t, "btrfs", "256M")
	tree := filepath.Join(btrfs, "tree")
	writeFile(t, filepath.Join(tree, "f"), randomBytes(1, 10000))
	lower, upper, work := filepath.Join(btrfs, "lower"), filepath.Join(btrfs, "upper"), filepath.Join(btrfs, "work")
	writeFile(t, filepath.Join(lower, "g"), randomBytes(2, 10000))
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mounts := []struct{ dir, fstype, opts string }{
		{"proc", "proc", ""},
		{"sys", "sysfs", ""},
		{"ov", "overlay", "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work},
	}
	for _, m := range mounts {
		dir := filepath.Join(tree, m.dir)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"-t", m.fstype, m.fstype, dir}
		if m.opts != "" {
			args = append(args, "-o", m.opts)
		}
		testfs.Run(t, "mount", args...)
		t.Cleanup(func() { testfs.Run(t, "umount", dir) })
	}
	db := filepath.Join(t.TempDir(), "index.db")
	_, stderr, err := hashfile(t, "", "-db", db, tree)
	if err != nil {
		t.Fatalf("hashfile = %v\n%s", err, stderr)
	}
	// The directories read ahead may name the pseudo filesystems in
	// either order.
	want := []string{
		"hashfile: overlay at " + filepath.Join(tree, "ov") + " cannot deduplicate: not walked",
		"hashfile: proc at " + filepath.Join(tree, "proc") + " holds no file data: not walked",
		"hashfile: sysfs at " + filepath.Join(tree, "sys") + " holds no file data: not walked",
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(want)+1 {
		t.Fatalf("stderr = %q; want %q and the summary", stderr, want)
	}
	got := slices.Sorted(slices.Values(lines[:len(want)]))
	if !slices.Equal(got, want) {
		t.Errorf("stderr = %q; want %q and the summary", stderr, want)
	}
	checkSummary(t, lines[len(want)]+"\n", counts{seen: 1, hashed: 1, read: 10000})
}

// A FUSE mount under a PATH whose server does not answer (stopped here;
// on a host, a FUSE or hard NFS mount whose server is gone) hangs any
// look at it, its mount point's lstat first: the walk leaves it out by
// what /proc/self/mountinfo says, without looking, and names it. With the
// walk that looked first, hashfile waited until the server came back.
func TestHungFUSE(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	tree, share := filepath.Join(mnt, "tree"), filepath.Join(mnt, "tree", "share")
	writeFile(t, filepath.Join(tree, "f"), randomBytes(1, 10000))
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "g"), randomBytes(2, 10000))
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	stopBindfs(t, src, share)

	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	// The tree holding the mount; then a PATH on the mount, or below it:
	// not looked at either, though hashfile looks at each PATH before
	// the walk.
	for _, c := range []struct {
		path, at string // the PATH, and the path the message names
		want     counts
	}{
		{tree, share, counts{seen: 1, hashed: 1, read: 10000}},
		{share, share, counts{skipped: 1}},
		{filepath.Join(share, "g"), filepath.Join(share, "g"), counts{skipped: 1}},
	} {
		go func() {
			_, stderr, err := hashfile(t, "", "-db", filepath.Join(t.TempDir(), "index.db"), c.path)
			done <- result{stderr, err}
		}()
		select {
		case r := <-done:
			want := "hashfile: fuse at " + c.at + " cannot deduplicate: not walked\n"
			if r.err != nil || !strings.HasPrefix(r.stderr, want) {
				t.Fatalf("hashfile %s = %v, stderr %q; want nil, and it to start %q", c.path, r.err, r.stderr, want)
			}
			checkSummary(t, r.stderr[len(want):], c.want)
		case <-time.After(time.Minute): // a bound on the failure, not a measure
			t.Fatalf("hashfile %s still waits on the FUSE mount after a minute", c.path)
		}
	}
}

// stopBindfs mounts src at dir with bindfs (a FUSE filesystem), as root
// (allow_other), and stops its server (SIGSTOP): any look at the mount
// then waits until the test's end, when the server goes on and the
// mount is taken down.
func stopBindfs(t *testing.T, src, dir string) {
	t.Helper()
	bindfs, err := exec.LookPath("bindfs")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bindfs is not installed (scripts/setup installs it): %v", err)
		}
		t.Skipf("bindfs is not installed: %v", err)
	}
	server := exec.Command(bindfs, "-f", src, dir)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	t.Cleanup(func() {
		server.Process.Signal(syscall.SIGCONT)
		if mounted(t, dir) {
			testfs.Run(t, "umount", dir)
		}
		<-exited
	})
	for deadline := time.Now().Add(time.Minute); !mounted(t, dir); {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("bindfs ended before it mounted %s: %v", dir, err)
		case <-time.After(10 * time.Millisecond): // until bindfs has mounted
		}
		if time.Now().After(deadline) {
			t.Fatalf("bindfs has not mounted %s after a minute", dir)
		}
	}
	if err := server.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// A FUSE filesystem mounted after hashfile began, whose server does not
// answer (a user's, with allow_other), is left out as one mounted before
// is: the walk lstats its mount point without asking the server
// (AT_STATX_DONT_SYNC), sees the root of a mount it did not know of, and
// reads its type in /proc/self/mountinfo again. With the walk that asked
// (lstat(2)) and then opened it, hashfile waited until the server came
// back, and the nights after stopped at the lock it held.
func TestHungFUSEMountedSince(t *testing.T) {
	// Mounted before the directory holding its mount point is listed, or
	// after, before the walk opens it: the walk opens a directory it
	// listed only once it has checked, unopened (O_PATH), that it is the
	// one listed.
	// With -x, it is counted skipped, as any other filesystem is.
	for _, c := range []struct {
		at string
		x  bool
	}{{"sub", false}, {"share", false}, {"sub", true}, {"share", true}} {
		at := c.at
		name := "before " + at + " is opened"
		if c.x {
			name += ", -x"
		}
		t.Run(name, func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "256M")
			tree, sub := filepath.Join(mnt, "tree"), filepath.Join(mnt, "tree", "sub")
			share := filepath.Join(sub, "share")
			writeFile(t, filepath.Join(tree, "f"), randomBytes(1, 10000))
			writeFile(t, filepath.Join(sub, "h"), randomBytes(3, 10000))
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "g"), randomBytes(2, 10000))
			if err := os.Mkdir(share, 0o755); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			walk.Fault = func(path string) {
				if path == filepath.Join(tree, "sub") && at == "sub" || path == share && at == "share" {
					once.Do(func() { stopBindfs(t, src, share) })
				}
			}
			t.Cleanup(func() { walk.Fault = nil })
			type result struct {
				stderr string
				err    error
			}
			done := make(chan result, 1)
			args := []string{"-db", filepath.Join(t.TempDir(), "index.db"), tree}
			if c.x {
				args = append([]string{"-x"}, args...)
			}
			go func() {
				_, stderr, err := hashfile(t, "", args...)
				done <- result{stderr, err}
			}()
			select {
			case r := <-done:
				want, n := "hashfile: fuse at "+share+" cannot deduplicate: not walked\n", counts{seen: 2, hashed: 2, read: 20000}
				if c.x {
					want, n.skipped = "", 1
				}
				if r.err != nil || !strings.HasPrefix(r.stderr, want) {
					t.Fatalf("hashfile = %v, stderr %q; want nil, and it to start %q", r.err, r.stderr, want)
				}
				checkSummary(t, r.stderr[len(want):], n)
			case <-time.After(time.Minute): // a bound on the failure, not a measure
				t.Fatalf("hashfile still waits on the FUSE mount made after it began, after a minute")
			}
		})
	}
}

// mounted reports whether path is a mount point, as mountinfo says.
func mounted(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// A filesystem mounted below a PATH that is not mounted one night (a disk
// that failed to mount, a USB disk not plugged in) keeps its files in the
// index: they are not gone for that, and the next night with it mounted
// reads none of them again. Once, the rows were pruned, and with its
// subvolume's walk still recorded as complete, that night found them
// unchanged and did not look: they were lost until something changed.
// -new-fs prunes them (a disk removed for good).
func TestUnmountedKept(t *testing.T) {
	live := testfs.Mount(t, "btrfs", "256M")
	disk := testfs.Mount(t, "btrfs", "256M")
	writeFile(t, filepath.Join(live, "f"), randomBytes(1, 10000))
	writeFile(t, filepath.Join(disk, "g"), randomBytes(2, 10000))
	writeFile(t, filepath.Join(disk, "sub", "h"), randomBytes(3, 10000))
	data := filepath.Join(live, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	mount := func() { testfs.Run(t, "mount", "--bind", disk, data) }
	mounted := true
	mount()
	t.Cleanup(func() {
		if mounted {
			testfs.Run(t, "umount", data)
		}
	})
	db := filepath.Join(t.TempDir(), "index.db")
	all := []string{filepath.Join(data, "g"), filepath.Join(data, "sub", "h"), filepath.Join(live, "f")}
	night := func(name string, args []string, wantIn, wantOut []string, wantPaths []string) {
		t.Helper()
		_, stderr, err := hashfile(t, "", append(append([]string{"-db", db}, args...), live)...)
		if err != nil {
			t.Fatalf("%s: hashfile = %v\n%s", name, err, stderr)
		}
		for _, w := range wantIn {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q; want it to hold %q", name, stderr, w)
			}
		}
		for _, w := range wantOut {
			if strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q; want no %q", name, stderr, w)
			}
		}
		if got := slices.Sorted(maps.Keys(indexed(t, db))); !slices.Equal(got, wantPaths) {
			t.Errorf("%s: indexed %q; want %q", name, got, wantPaths)
		}
	}
	night("first", nil, []string{" 3 files seen, 3 hashed "}, nil, all)
	testfs.Run(t, "umount", data)
	mounted = false
	night("unmounted", nil, []string{" 1 files seen, ", " 0 pruned (2 kept whose filesystem the walk did not meet: not mounted? -new-fs prunes them)"}, nil, all)
	mount()
	mounted = true
	night("mounted again", nil, []string{" 3 files seen, 0 hashed ", "; read 0 B in "}, []string{" kept "}, all)
	testfs.Run(t, "umount", data)
	mounted = false
	night("removed for good", []string{"-new-fs"}, []string{" 2 pruned"}, []string{" kept "}, all[2:])
}

// A sparse file of an exabyte costs nothing to hash, whatever its size:
// its sums stop at its last data block, and it has none. One with a byte
// at its end would need a sum for each of its 2^48 blocks, and findsame
// plans no file of 2^32 blocks or more: it is left out unread, named and
// counted as skipped, and the run goes on. Any user can make either
// (truncate, then one write): on btrfs, the first made root's run ask
// for 2 PiB of memory and stop (a panic, exit 2); on both, the second
// made it hold its sums (or fail for want of memory). So is one whose
// sums would take more than an eighth of the machine's memory.
func TestExabyteSparseFile(t *testing.T) {
	for _, fsType := range []string{"btrfs", "xfs"} {
		t.Run(fsType, func(t *testing.T) {
			mnt := testfs.Mount(t, fsType, "300M")
			dir := filepath.Join(mnt, "home")
			writeFile(t, filepath.Join(dir, "a"), randomBytes(1, 10000))
			const eb = 1 << 60
			const tb16 = (1<<32 - 1) * 4096 // 2^32 blocks but one: findsame plans it
			for _, f := range []struct {
				name       string
				size, data int64 // data: the offset of a byte written, or -1
			}{
				{"empty", eb, -1},
				{"evil", eb, eb - 1},
				{"large", tb16, tb16 - 1},
			} {
				fl, err := os.Create(filepath.Join(dir, f.name))
				if err != nil {
					t.Fatal(err)
				}
				if err := fl.Truncate(f.size); err != nil {
					t.Fatal(err)
				}
				if f.data >= 0 {
					if _, err := fl.WriteAt([]byte{1}, f.data); err != nil {
						t.Fatal(err)
					}
				}
				if err := fl.Close(); err != nil {
					t.Fatal(err)
				}
			}
			_, stderr, err := hashfile(t, "", "-db", filepath.Join(t.TempDir(), "index.db"), dir)
			// Its sums would take 32 GiB, more than an eighth of this
			// machine's memory (of less than 256 GiB).
			var si unix.Sysinfo_t
			if err := unix.Sysinfo(&si); err != nil {
				t.Fatal(err)
			}
			limit := max(256<<20, int64(si.Totalram)*int64(si.Unit)/8)
			want := []string{
				"hashfile: " + filepath.Join(dir, "evil") + ": too large: 1024.0 PiB, its data ending 1024.0 PiB in: 281474976710656 blocks of 4.0 KiB, more than findsame plans in one file (2^32): left out",
				"hashfile: " + filepath.Join(dir, "large") + ": too large: 16.0 TiB, its data ending 16.0 TiB in: its block sums would take 32.0 GiB of memory, more than hashfile holds for one file (" + cli.Bytes(limit) + ", an eighth of this machine's): left out",
			}
			lines := strings.SplitAfter(stderr, "\n")
			if err != nil || len(lines) < 3 || !slices.Equal(slices.Sorted(slices.Values([]string{strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])})), want) {
				t.Fatalf("hashfile = %v, stderr %q; want nil, and it to start with %q", err, stderr, want)
			}
			c := counts{seen: 4, hashed: 2, skipped: 2, read: 10000}
			if fsType == "btrfs" {
				c.reused = 1 // the empty one: all of its extents (none) hashed before
			}
			checkSummary(t, strings.Join(lines[2:], ""), c)
		})
	}
}
