package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Exit statuses.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitPartial     = 3
	ExitInterrupted = 130
)

// ErrPartial is returned by a command some of whose items failed; the
// failures have already been reported.
var ErrPartial = errors.New("some items failed")

// UsageError is a bad command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Status maps a command's error to its exit status.
func Status(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, ErrPartial):
		return ExitPartial
	default:
		return ExitError
	}
}

// Report prints err on stderr with the command's name, unless it is
// ErrPartial (whose items were reported one by one) or a request for help,
// and returns the exit status for it. A command's main ends with
// os.Exit(cli.Report(name, run(...), os.Stderr)).
func Report(name string, err error, stderr io.Writer) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s -help' for usage.\n", name, err, name)
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: interrupted\n", name)
	case errors.Is(err, ErrPartial):
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return Status(err)
}

// ParseFlags parses args with fs, which must use flag.ContinueOnError.
// For -h or -help it writes doc and the flags to help and returns
// flag.ErrHelp; a parse failure becomes a *UsageError.
func ParseFlags(fs *flag.FlagSet, args []string, help io.Writer, doc string) error {
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		PrintUsage(help, fs, doc)
		return err
	default:
		return &UsageError{Msg: err.Error()}
	}
}

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string     { return fmt.Sprint(*s) }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// PrintUsage writes the command's doc text and its flags to w.
//
// The flags are listed as flag.PrintDefaults lists them, except that a
// flag whose usage text already says its default, "(default: one per
// CPU)", is not given a second one: a default that depends on the machine
// or the environment is described, not printed, so that the help text (and
// the manual page made from it) is the same everywhere. Sizes are shown as
// they are written: "(default 512M)".
func PrintUsage(w io.Writer, fs *flag.FlagSet, doc string) {
	fmt.Fprint(w, strings.TrimLeft(doc, "\n"))
	fmt.Fprintln(w, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		var b strings.Builder
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  -%s", f.Name)
		if name != "" {
			b.WriteString(" " + name)
		}
		// Like flag.PrintDefaults: a one-letter flag without an argument
		// fits on the line; others start the text on the next.
		if b.Len() <= 4 {
			b.WriteString("\t")
		} else {
			b.WriteString("\n    \t")
		}
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		if !strings.Contains(usage, "(default") && !zeroDefault(f) {
			if isString(f) {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(w, b.String())
	})
}

// zeroDefault reports whether f's default is its type's zero value, which
// help does not show.
func zeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "[]":
		return true
	}
	return false
}

// isString reports whether f is a plain string flag, whose default help
// quotes.
func isString(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(string)
	return ok
}

// CheckGlobs reports the first malformed pattern given to the flag named
// name, as a usage error: `bad include pattern "[": syntax error in
// pattern`.
func CheckGlobs(name string, patterns []string) error {
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return Usagef("bad %s pattern %q: %v", name, p, err)
		}
	}
	return nil
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Size is a byte count flag that takes suffixes: 4096, 4K, 4KiB, 128k,
// 16M, 1G (all powers of 1024).
type Size int64

// String writes the size as flags take it, in the largest unit that holds
// it exactly: 4K, 512M, 1G, 3000.
func (s *Size) String() string { return FormatSize(int64(*s)) }

// Set parses a size.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// ParseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024; "KiB", "KB" and "k" mean the same).
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	u := strings.ToUpper(s)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	mult := int64(1)
	if u != "" {
		switch u[len(u)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:len(u)-1]
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: want a number of bytes such as 4096, 128K or 16MiB", v)
	}
	return n * mult, nil
}

// FormatSize writes n in the largest unit of K, M, G and T (powers of 1024)
// that divides it exactly, as ParseSize reads it back: 4K, 512M, 1G, 3000.
func FormatSize(n int64) string {
	if n != 0 {
		for _, u := range []struct {
			suffix string
			shift  uint
		}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
			if n%(1<<u.shift) == 0 {
				return strconv.FormatInt(n>>u.shift, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// Bytes formats a byte count for people: 1.5 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit && f > -unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PiB", f/unit)
}

// Profile starts a CPU profile written to path, if path is not empty, and
// returns the function that stops it.
func Profile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
