package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"same/internal/cli"

	"golang.org/x/sys/unix"
)

// pty returns the two ends of a new pseudo-terminal.
func pty(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// On a terminal, an error line clears the progress line first instead of
// being appended to it.
func TestErrorOnTerminal(t *testing.T) {
	master, tty := pty(t)
	out := make(chan []byte)
	go func() {
		var b bytes.Buffer
		_, err := io.Copy(&b, master)
		if err != nil && !errors.Is(err, unix.EIO) { // EIO: the other end is closed
			t.Error(err)
		}
		out <- b.Bytes()
	}()
	dir := dataDir(t)
	missing := filepath.Join(dir, "missing")
	// A path listed on standard input that is gone is a failed item.
	err := run(context.Background(), []string{"-db", filepath.Join(dir, "index.db"), "-"}, strings.NewReader(missing+"\n"), io.Discard, tty)
	tty.Close()
	got := string(<-out)
	if !errors.Is(err, cli.ErrPartial) {
		t.Errorf("run = %v; want some files failed", err)
	}
	// The error line starts a line: at the start, after a newline, or
	// after the progress line was cleared ("\r\033[K").
	line := fmt.Sprintf("hashfile: lstat %s: no such file or directory\r\n", missing)
	i := strings.Index(got, line)
	if i < 0 || !(i == 0 || strings.HasSuffix(got[:i], "\n") || strings.HasSuffix(got[:i], "\r\033[K")) {
		t.Errorf("terminal shows %q; want %q at the start of a line", got, line)
	}
}
