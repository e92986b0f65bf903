package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"same/internal/cli"
	"same/internal/index"
	"same/internal/plan"
)

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{arg}, nil, &out, &errb)
		want := fmt.Sprintf("findsame %s, %s, index format %d, plan format %d\n", cli.Version(), runtime.Version(), index.Version(), plan.Version)
		if err != nil || out.String() != want || errb.Len() != 0 {
			t.Errorf("findsame %s = %v, %q, %q; want nil, %q, nothing", arg, err, out.String(), errb.String(), want)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-include", "["}, `bad include pattern "[": syntax error in pattern`},
		{[]string{"-include", "*.img", "-exclude", "a["}, `bad exclude pattern "a[": syntax error in pattern`},
	} {
		err := run(context.Background(), tt.args, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if cli.Status(err) != cli.ExitUsage || err.Error() != tt.msg {
			t.Errorf("findsame %q = %v (status %d); want %q, status 2", tt.args, err, cli.Status(err), tt.msg)
		}
	}
}

// TestHelpDefaults checks that help shows sizes as they are written and no
// default that depends on the environment.
func TestHelpDefaults(t *testing.T) {
	t.Setenv("SAME_DB", "/somewhere/index.db")
	var out bytes.Buffer
	run(context.Background(), []string{"-help"}, nil, &out, &bytes.Buffer{})
	help := out.String()
	if !strings.Contains(help, "(default 512M)\n") || strings.Contains(help, "/somewhere") {
		t.Errorf("findsame -help = %s; want -mem (default 512M) and no $SAME_DB value", help)
	}
}
