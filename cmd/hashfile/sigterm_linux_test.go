package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"same/internal/cli"
	"same/internal/index"
	"same/internal/testfs"
)

// hookWriter keeps what is written to it, and calls hook, once, from the
// first Write after which it holds match (outside its lock, so that hook
// may wait for others that write to it).
type hookWriter struct {
	match string
	hook  func()
	mu    sync.Mutex
	b     bytes.Buffer
	fired bool
}

func (w *hookWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	fire := !w.fired && strings.Contains(w.b.String(), w.match)
	w.fired = w.fired || fire
	w.mu.Unlock()
	if fire {
		w.hook()
	}
	return len(p), nil
}

func (w *hookWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A SIGTERM stops hashfile as SIGINT does: with exit status 130, an index
// that is sound, and a next run that completes it. The signal is sent
// from the point where the walk meets the second PATH, an ext4 that
// hashfile names on stderr and does not walk, and the walk waits there
// until hashfile has taken it.
func TestSIGTERM(t *testing.T) {
	btrfs := testfs.Mount(t, "btrfs", "256M")
	ext4 := testfs.Mount(t, "ext4", "64M")
	tree, other := filepath.Join(btrfs, "tree"), filepath.Join(ext4, "tree")
	const dirs, perDir, size = 10, 100, 8 << 10
	for d := range dirs {
		for i := range perDir {
			writeFile(t, filepath.Join(tree, fmt.Sprintf("d%02d", d), fmt.Sprintf("f%03d", i)), randomBytes(uint64(d*perDir+i), size))
		}
	}
	const others = 5
	for i := range others {
		writeFile(t, filepath.Join(other, fmt.Sprintf("g%d", i)), randomBytes(uint64(100000+i), size))
	}
	db := filepath.Join(t.TempDir(), "index.db")

	var said bytes.Buffer // what the signal handler says
	ctx, release := cli.WithSignals(context.Background(), "hashfile", &said)
	stop := sync.OnceFunc(release)
	defer stop()
	stderr := &hookWriter{match: "ext4 at " + other + " cannot deduplicate", hook: func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		<-ctx.Done()
	}}
	err := run(ctx, []string{"-db", db, "-j", "1", tree, other}, strings.NewReader(""), io.Discard, stderr)
	stop()
	var report bytes.Buffer
	if status := cli.Report("hashfile", err, &report); status != cli.ExitInterrupted || report.String() != "hashfile: interrupted\n" {
		t.Errorf("run after SIGTERM = %v: exit status %d, %q; want %d, %q\nstderr:\n%s", err, status, report.String(), cli.ExitInterrupted, "hashfile: interrupted\n", stderr)
	}
	if want := "hashfile: stopping; interrupt again to quit at once\n"; said.String() != want {
		t.Errorf("signal handler said %q; want %q", said.String(), want)
	}

	ix, err := index.Open(db)
	if err != nil {
		t.Fatalf("open index after SIGTERM: %v", err)
	}
	var check string
	if err := ix.DB().QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", check, err)
	}
	var done, blocks, inOther int
	for q, n := range map[string]*int{
		"SELECT count(*) FROM files":                                   &done,
		"SELECT count(*) FROM blocks":                                  &blocks,
		"SELECT count(*) FROM files WHERE path LIKE '" + other + "/%'": &inOther,
	} {
		if err := ix.DB().QueryRow(q).Scan(n); err != nil {
			t.Fatal(err)
		}
	}
	ix.Close()
	if blocks != done || inOther != 0 {
		t.Errorf("after SIGTERM: %d files, %d blocks rows, %d files of %s; want one blocks row per file, none of %s", done, blocks, inOther, other, other)
	}
	t.Logf("%d of %d files committed before SIGTERM", done, dirs*perDir)

	_, out, err := hashfile(t, "", "-db", db, tree, other)
	if err != nil {
		t.Fatalf("run after SIGTERM = %v\n%s", err, out)
	}
	warning := "hashfile: ext4 at " + other + " cannot deduplicate: not walked\n"
	if !strings.HasPrefix(out, warning) {
		t.Fatalf("run after SIGTERM: stderr %q; want it to start %q", out, warning)
	}
	total := dirs * perDir
	checkSummary(t, out[len(warning):], counts{seen: total, hashed: total - done, unchanged: done, skipped: 1, read: int64(total-done) * size})
	checkTree(t, db, tree)
}
