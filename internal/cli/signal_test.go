package cli

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"testing"
)

// The first signal cancels the context; the second ends the process at
// once with ExitInterrupted.
func TestWithSignals(t *testing.T) {
	exited := make(chan int, 1)
	exit = func(code int) { exited <- code }
	defer func() { exit = osExit }()
	var mu sync.Mutex
	var stderr bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return stderr.Write(p) })
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		ctx, stop := WithSignals(context.Background(), "tool", w)
		if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done() // the test times out if the signal is not honoured
		if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		if code := <-exited; code != ExitInterrupted {
			t.Errorf("second %v: exit %d; want %d", sig, code, ExitInterrupted)
		}
		stop()
	}
	mu.Lock()
	defer mu.Unlock()
	want := "tool: stopping; interrupt again to quit at once\ntool: quitting\n"
	if got := stderr.String(); got != want+want {
		t.Errorf("stderr = %q; want %q twice", got, want)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
