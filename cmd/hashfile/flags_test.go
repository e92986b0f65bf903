package main

import (
	"strings"
	"testing"
)

// TestHelpDefaults checks that help shows sizes as they are written and
// never two defaults for a flag, nor one that depends on the machine or the
// environment.
func TestHelpDefaults(t *testing.T) {
	t.Setenv("SAME_DB", "/somewhere/index.db")
	stdout, _, _ := hashfile(t, "", "-help")
	for _, want := range []string{
		"  -b size\n", "(default 4K)\n",
		"  -j workers\n    \tworkers reading and hashing in parallel (default: two per CPU, so that reads overlap hashing)\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("hashfile -help lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "/somewhere") {
		t.Errorf("hashfile -help shows $SAME_DB's value:\n%s", stdout)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("hashfile -help: two defaults in %q", line)
		}
	}
}
