package apply

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"same/internal/dedupe"
	"same/internal/testfs"
)

// killEnv names, for the test binary run again by TestKilledAtEachStep,
// the plan to apply and the step at which to die: "PLAN:POINT".
const killEnv = "SAME_TEST_KILL_AT"

func TestMain(m *testing.M) {
	if v := os.Getenv(killEnv); v != "" {
		planPath, point, _ := strings.Cut(v, ":")
		killedAt(planPath, point)
	}
	os.Exit(m.Run())
}

// killedAt applies the plan and sends itself SIGKILL at the point's
// first occurrence, as kill -9 would at that moment.
func killedAt(planPath, point string) {
	hook := func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	fault, dedupe.Fault = hook, hook
	f, err := os.Open(planPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	Run(context.Background(), f, new(strings.Builder), Options{RewriteLimit: 1 << 30, Reserve: -1, Chunk: mib, Jobs: 2})
	fmt.Fprintf(os.Stderr, "not killed: no %s\n", point)
	os.Exit(1)
}

// TestKilledAtEachStep kills the run with SIGKILL at each step of a unit
// with a rewrite (a copy written back, a batch shared back, a rewrite
// done before its lines): every file keeps its content, and a second run
// frees what an uninterrupted run would.
func TestKilledAtEachStep(t *testing.T) {
	for _, point := range []string{"rewrite-copied", "rewrite-shared", "rewrite-done"} {
		t.Run(point, func(t *testing.T) {
			mnt := testfs.Mount(t, "btrfs", "512M")
			dir := filepath.Join(mnt, "tree")
			unitTree(t, dir)
			before := testfs.SHA256Tree(t, dir)
			free := testfs.FreeBytes(t, mnt)
			db := filepath.Join(t.TempDir(), "index.db")
			// The plan, from a run that stops before anything.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			planOut, _, _, _ := night(t, ctx, db, dir, Options{})
			planPath := filepath.Join(t.TempDir(), "plan")
			if err := os.WriteFile(planPath, []byte(planOut), 0o644); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), killEnv+"="+planPath+":"+point)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("applying the plan: %v; want killed\n%s", err, out)
			}
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("content changed after kill -9 at %s", point)
			}

			want := planFreed(t, planOut)
			if _, rs, st, err := night(t, context.Background(), db, dir, Options{Jobs: 2}); err != nil || st.Failed() > 0 {
				t.Fatalf("second run: %v, %+v\n%v", err, st, rs)
			}
			if freed := testfs.FreeBytes(t, mnt) - free; freed < want || freed > want+mib/2 {
				t.Errorf("after kill -9 at %s and a second run, freed %d bytes; want %d, and at most 512 KiB of metadata more", point, freed, want)
			}
			if after := testfs.SHA256Tree(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("content changed after the second run")
			}
		})
	}
}
