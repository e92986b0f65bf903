package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exit ends the process; tests replace it.
var exit = osExit

var osExit = os.Exit

// WithSignals returns a context that the first SIGINT or SIGTERM cancels,
// so that the command stops soon and keeps its work so far; a second one
// ends the process at once with ExitInterrupted. The messages name the
// command and go to stderr. stop releases the signals.
func WithSignals(parent context.Context, name string, stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	erase := "" // a progress line to remove first
	if IsTerminal(stderr) {
		erase = "\r\033[K"
	}
	go func() {
		select {
		case <-ch:
			fmt.Fprintf(stderr, "%s%s: stopping; interrupt again to quit at once\n", erase, name)
			cancel()
		case <-done:
			return
		}
		select {
		case <-ch:
			fmt.Fprintf(stderr, "%s%s: quitting\n", erase, name)
			exit(ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}
