//go:build linux

package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"same/internal/cli"
	"same/internal/plan"
)

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		code, stdout, stderr := runTest(t, "", arg)
		want := fmt.Sprintf("applysame %s, %s, plan format %d\n", cli.Version(), runtime.Version(), plan.Version)
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("run(%s) = %d, %q, %q; want 0, %q, \"\"", arg, code, stdout, stderr, want)
		}
	}
}

// TestHelpDefaults checks that help shows sizes as they are written and
// never two defaults for a flag, whatever the number of CPUs.
func TestHelpDefaults(t *testing.T) {
	_, stdout, _ := runTest(t, "", "-help")
	for _, want := range []string{
		"  -chunk size\n", "(default 16M)\n", "(default 1G)\n",
		"  -j N\n    \tN lines applied at once, 1 to 64 (default: one per CPU, at most 64); -j 1 applies each line before reading the next\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("run(-help) lacks %q:\n%s", want, stdout)
		}
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("run(-help): two defaults in %q", line)
		}
	}
}

func TestJobs(t *testing.T) {
	const more = "Run 'applysame -help' for usage.\n"
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-j", "0"}, 2, "applysame: -j 0: want 1 to 64 lines at once\n" + more},
		{[]string{"-j", "65"}, 2, "applysame: -j 65: want 1 to 64 lines at once\n" + more},
		{[]string{"-j", "64", "-q"}, 0, ""},
		{[]string{"-j", "1", "-q"}, 0, ""},
	} {
		code, _, stderr := runTest(t, "", tt.args...)
		if code != tt.code || stderr != tt.stderr {
			t.Errorf("run(%q) = %d, %q; want %d, %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
}

// TestKeepGoing checks that -keep-going=false stops at the first line not
// done, as -stop-on-error does, and that contradicting flags are refused.
func TestKeepGoing(t *testing.T) {
	const more = "Run 'applysame -help' for usage.\n"
	in := "{}\n" + `{"type":"dedupe","v":2}` + "\n"
	for _, tt := range []struct {
		args    []string
		code    int
		results int
		stderr  string
	}{
		{[]string{"-q"}, 3, 2, ""},
		{[]string{"-q", "-keep-going"}, 3, 2, ""},
		{[]string{"-q", "-keep-going=true", "-stop-on-error=false"}, 3, 2, ""},
		{[]string{"-q", "-keep-going=false"}, 3, 1, ""},
		{[]string{"-q", "--keep-going=false"}, 3, 1, ""},
		{[]string{"-q", "-stop-on-error"}, 3, 1, ""},
		{[]string{"-q", "-keep-going=false", "-stop-on-error"}, 3, 1, ""},
		{[]string{"-q", "-keep-going", "-stop-on-error"}, 2, 0, "applysame: -keep-going=true contradicts -stop-on-error=true\n" + more},
		{[]string{"-q", "-keep-going=false", "-stop-on-error=false"}, 2, 0, "applysame: -keep-going=false contradicts -stop-on-error=false\n" + more},
	} {
		// One line at a time: with more, the second line may have started
		// before the first fails, and lines started finish.
		code, stdout, stderr := runTest(t, in, append([]string{"-j", "1"}, tt.args...)...)
		results := strings.Count(stdout, "\n")
		// Each invalid line is reported on stderr; only the usage errors
		// are compared whole.
		if tt.code == 2 && stderr != tt.stderr {
			t.Errorf("run(%q) stderr = %q; want %q", tt.args, stderr, tt.stderr)
		}
		if code != tt.code || results != tt.results {
			t.Errorf("run(%q) = status %d, %d results; want %d, %d", tt.args, code, results, tt.code, tt.results)
		}
	}
}
