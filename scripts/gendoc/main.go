// Gendoc makes the manual pages and the bash and zsh completions of
// commands from their -help text, so that the three stay in step with the
// flags the commands really take.
//
// Usage:
//
//	gendoc [-man DIR] [-bash DIR] [-zsh DIR] [-source TEXT] [-date DATE] COMMAND...
//
// Gendoc runs each COMMAND (a path to an executable) with -help and reads
// its output in the shape that same/internal/cli's PrintUsage gives it: a
// "Usage:" synopsis; a description whose first sentence says what the
// command does; sections that start with a line "Heading:" or "Heading:
// text" (Examples, Environment, Files, Exit status, See also); lines
// indented by two spaces, kept as written, or read as a list of terms when
// each starts with a term followed by two spaces; and last "Flags:" as
// flag.PrintDefaults lists them.
//
// For each COMMAND named NAME it writes DIR/NAME.1 (-man, a section 1
// manual page), DIR/NAME (-bash, for bash-completion's completions
// directory) and DIR/_NAME (-zsh, for a directory in zsh's fpath).
// -source names the package and version in the page footer, -date its date
// (by default $SOURCE_DATE_EPOCH, else today).
//
// Examples:
//
//	gendoc -man share/man/man1 -bash share/bash-completion/completions bin/hashfile
//	gendoc -man /tmp/man bin/*
//
// Exit status: 0 done, 1 error, 2 usage error.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	err := run(os.Args[1:])
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "gendoc: %v\n", err)
		os.Exit(1)
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

func run(args []string) error {
	fs := flag.NewFlagSet("gendoc", flag.ContinueOnError)
	manDir := fs.String("man", "", "write manual pages into `dir`")
	bashDir := fs.String("bash", "", "write bash completions into `dir`")
	zshDir := fs.String("zsh", "", "write zsh completions into `dir`")
	source := fs.String("source", "same", "package and version in the page footer")
	date := fs.String("date", "", "date of the pages, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH, else today)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err.Error())
	}
	if fs.NArg() == 0 {
		return usageError("no COMMAND given")
	}
	if *manDir == "" && *bashDir == "" && *zshDir == "" {
		return usageError("nothing to write: give -man, -bash or -zsh")
	}
	if *date == "" {
		*date = defaultDate()
	}
	for _, cmd := range fs.Args() {
		p, err := load(cmd)
		if err != nil {
			return err
		}
		for _, out := range []struct {
			dir, name string
			text      func(*page) string
		}{
			{*manDir, p.name + ".1", func(p *page) string { return p.man(*date, *source) }},
			{*bashDir, p.name, (*page).bash},
			{*zshDir, "_" + p.name, (*page).zsh},
		} {
			if out.dir == "" {
				continue
			}
			if err := os.MkdirAll(out.dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out.dir, out.name), []byte(out.text(p)), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// load runs cmd -help and parses what it prints.
func load(cmd string) (*page, error) {
	var out, errb bytes.Buffer
	c := exec.Command(cmd, "-help")
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s -help: %v: %s", cmd, err, bytes.TrimSpace(errb.Bytes()))
	}
	p, err := parse(filepath.Base(cmd), out.String())
	if err != nil {
		return nil, fmt.Errorf("%s -help: %w", cmd, err)
	}
	return p, nil
}

func defaultDate() string {
	t := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.Unix(n, 0)
		}
	}
	return t.UTC().Format("2006-01-02")
}
