// Testreport reads `go test -json` on standard input and writes what
// `go test` writes without -v: the result line of each package, and the
// output of the tests that fail, then the tests that were skipped, each
// with its reason, so that no skip goes unseen.
//
// Usage:
//
//	go test -json ./... | go run ./scripts/testreport
//
// Exit status: 0 when no test or package failed, 1 otherwise.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type skip struct {
	pkg, test, reason string
}

func main() {
	failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

func report(r io.Reader, w io.Writer) (failed bool, err error) {
	out := bufio.NewWriter(w)
	defer out.Flush()
	held := make(map[[2]string][]string) // output of each running test
	var skips []skip
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line) // not an event: pass it on
			out.Flush()
			continue
		}
		k := [2]string{e.Package, e.Test}
		switch {
		case e.Action == "output" && e.Test != "":
			held[k] = append(held[k], e.Output)
		case e.Action == "output" || e.Action == "build-output":
			// Package-level lines: the result line, build errors,
			// panics outside a test; not the verbose markers.
			if !strings.HasPrefix(e.Output, "=== ") && e.Output != "PASS\n" {
				io.WriteString(out, e.Output)
				out.Flush()
			}
		case e.Action == "fail" && e.Test != "":
			failed = true
			for _, o := range held[k] {
				if !strings.HasPrefix(strings.TrimSpace(o), "=== ") {
					io.WriteString(out, o)
				}
			}
			out.Flush()
			delete(held, k)
		case e.Action == "fail" || e.Action == "build-fail":
			failed = true
		case e.Action == "skip" && e.Test != "":
			skips = append(skips, skip{e.Package, e.Test, reason(held[k])})
			delete(held, k)
		case e.Action == "pass":
			delete(held, k)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if len(skips) > 0 {
		fmt.Fprintf(out, "\n%d tests skipped:\n", len(skips))
		for _, s := range skips {
			fmt.Fprintf(out, "--- SKIP: %s %s: %s\n", s.pkg, s.test, s.reason)
		}
	}
	return failed, nil
}

// reason is what a skipped test logged, on one line.
func reason(output []string) string {
	var lines []string
	for _, o := range output {
		o = strings.TrimSpace(o)
		if o == "" || strings.HasPrefix(o, "=== ") || strings.HasPrefix(o, "--- SKIP") {
			continue
		}
		// "file_test.go:12: message": keep the message.
		if _, msg, ok := strings.Cut(o, ": "); ok && strings.Contains(o[:len(o)-len(msg)], ".go:") {
			o = msg
		}
		lines = append(lines, o)
	}
	if lines == nil {
		return "(no reason given)"
	}
	return strings.Join(lines, "; ")
}
