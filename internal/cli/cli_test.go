package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"4096", 4096, false},
		{"4K", 4096, false},
		{"4k", 4096, false},
		{"4KiB", 4096, false},
		{"128KB", 128 << 10, false},
		{"16M", 16 << 20, false},
		{"1GiB", 1 << 30, false},
		{"", 0, true},
		{"-1", 0, true},
		{"4X", 0, true},
		{"99999999999T", 0, true},
	} {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("x"), 1},
		{Usagef("bad"), 2},
		{fmt.Errorf("run: %w", ErrPartial), 3},
		{fmt.Errorf("walk: %w", context.Canceled), 130},
	} {
		if got := Status(tt.err); got != tt.want {
			t.Errorf("Status(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {3 << 30, "3.0 GiB"}} {
		if got := Bytes(tt.n); got != tt.want {
			t.Errorf("Bytes(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0"}, {3000, "3000"}, {4096, "4K"}, {6144, "6K"}, {16 << 20, "16M"}, {512 << 20, "512M"}, {1 << 30, "1G"}, {3 << 40, "3T"}, {1<<30 + 4096, "1048580K"}} {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q; want %q", tt.n, got, tt.want)
		}
		if back, err := ParseSize(tt.want); err != nil || back != tt.n {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.want, back, err, tt.n)
		}
	}
}

// TestPrintUsage checks that help shows sizes as they are written and never
// two defaults for one flag.
func TestPrintUsage(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	mem := Size(512 << 20)
	fs.Var(&mem, "mem", "memory for one `pass`")
	var none Size
	fs.Var(&none, "min", "shortest run")
	fs.Int("j", 4, "`workers` (default: two per CPU)")
	fs.String("db", "/root/idx.db", "index `file` (default: $SAME_DB)")
	fs.String("name", "x y", "a name")
	fs.Bool("q", false, "quiet")
	fs.Bool("keep", true, "keep going")
	var globs Strings
	fs.Var(&globs, "exclude", "`glob` (repeatable)")
	var b strings.Builder
	PrintUsage(&b, fs, "\nUsage: x\n")
	want := "Usage: x\n\nFlags:\n" +
		"  -db file\n    \tindex file (default: $SAME_DB)\n" +
		"  -exclude glob\n    \tglob (repeatable)\n" +
		"  -j workers\n    \tworkers (default: two per CPU)\n" +
		"  -keep\n    \tkeep going (default true)\n" +
		"  -mem pass\n    \tmemory for one pass (default 512M)\n" +
		"  -min value\n    \tshortest run\n" +
		"  -name string\n    \ta name (default \"x y\")\n" +
		"  -q\tquiet\n"
	if got := b.String(); got != want {
		t.Errorf("PrintUsage = %q; want %q", got, want)
	}
}

func TestCheckGlobs(t *testing.T) {
	if err := CheckGlobs("include", []string{"*.img", "/srv/*/x"}); err != nil {
		t.Errorf("CheckGlobs(good) = %v; want nil", err)
	}
	err := CheckGlobs("include", []string{"ok", "[", "a["})
	if want := `bad include pattern "[": syntax error in pattern`; err == nil || err.Error() != want || Status(err) != ExitUsage {
		t.Errorf("CheckGlobs(bad) = %v (status %d); want %q, status 2", err, Status(err), want)
	}
}

func TestVersionOf(t *testing.T) {
	vcs := func(rev, at, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: at}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "9b11c60a1b2c3d4e5f60718293a4b5c6d7e8f901"
	for _, tt := range []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"go test", "", nil, "devel"},
		{"go run", "(devel)", nil, "devel"},
		{"tagged module", "v1.2.0", nil, "v1.2.0"},
		{"at a tag", "v1.2.0", vcs(rev, "2026-12-01T21:10:03Z", "false"), "v1.2.0"},
		{"commit", "v0.0.0-20261201211003-9b11c60a1b2c", vcs(rev, "2026-12-01T21:10:03Z", "false"), "9b11c60a1b2c 2026-12-01T21:10:03Z"},
		{"modified", "v0.0.0-20261201211003-9b11c60a1b2c+dirty", vcs(rev, "2026-12-01T21:10:03Z", "true"), "9b11c60a1b2c+modified 2026-12-01T21:10:03Z"},
		{"modified tag", "v1.2.0+dirty", vcs(rev, "2026-12-01T21:10:03Z", "true"), "9b11c60a1b2c+modified 2026-12-01T21:10:03Z"},
		{"older go", "(devel)", vcs(rev, "2026-12-01T21:10:03Z", "false"), "9b11c60a1b2c 2026-12-01T21:10:03Z"},
	} {
		info := &debug.BuildInfo{Main: debug.Module{Path: "same", Version: tt.version}, Settings: tt.settings}
		if got := versionOf(info); got != tt.want {
			t.Errorf("%s: versionOf(%q, %v) = %q; want %q", tt.name, tt.version, tt.settings, got, tt.want)
		}
	}
}

func TestVersionLine(t *testing.T) {
	want := "x " + Version() + ", " + runtime.Version() + ", plan format 1\n"
	if got := VersionLine("x", "plan format 1"); got != want {
		t.Errorf("VersionLine = %q; want %q", got, want)
	}
}
