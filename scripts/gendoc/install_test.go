//go:build linux

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/testfs"
)

var tools = []string{"hashfile", "findsame", "applysame"}

// install runs scripts/install --prefix into a new directory and returns
// the prefix.
func install(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not in PATH: cannot build the tools")
	}
	prefix := filepath.Join(t.TempDir(), "usr")
	cmd := exec.Command("../install", "--prefix", prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/install --prefix %s: %v\n%s", prefix, err, stderr.Bytes())
	}
	return prefix
}

// TestInstall installs into a temporary prefix and checks what a user
// gets: the tools with their version, manual pages that man renders and
// that list every flag, completions, and systemd units that systemd
// accepts.
func TestInstall(t *testing.T) {
	prefix := install(t)
	files := map[string]os.FileMode{
		"bin/same-nightly":                           0o755,
		"share/man/man1/same-nightly.1":              0o644,
		"lib/systemd/system/same-dedupe.service":     0o644,
		"lib/systemd/system/same-dedupe.timer":       0o644,
		"etc/default/same":                           0o644,
		"share/doc/same/LICENSE":                     0o644,
		"share/doc/same/README.md":                   0o644,
		"share/doc/same/plan-format.md":              0o644,
		"share/bash-completion/completions/findsame": 0o644,
	}
	for _, tool := range tools {
		files["bin/"+tool] = 0o755
		files["share/man/man1/"+tool+".1"] = 0o644
		files["share/bash-completion/completions/"+tool] = 0o644
		files["share/zsh/site-functions/_"+tool] = 0o644
	}
	for name, mode := range files {
		st, err := os.Stat(filepath.Join(prefix, name))
		if err != nil {
			t.Errorf("installed %s: %v", name, err)
		} else if st.Mode() != mode {
			t.Errorf("installed %s: mode %v; want %v", name, st.Mode(), mode)
		}
	}

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Skipf("git rev-parse HEAD: %v: the source is not a git tree, the tools say \"devel\"", err)
		}
		rev := string(out[:12])
		for _, tool := range tools {
			got := output(t, filepath.Join(prefix, "bin", tool), "--version")
			if !regexp.MustCompile(`^` + tool + ` ` + rev + `(\+modified)? [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z, go`).MatchString(got) {
				t.Errorf("%s --version = %q; want %s %s[+modified] TIME, go...", tool, got, tool, rev)
			}
		}
	})

	t.Run("man", func(t *testing.T) {
		if _, err := exec.LookPath("man"); err != nil {
			t.Skip("man is not installed (scripts/setup installs man-db)")
		}
		for _, tool := range append(tools, "same-nightly") {
			page := filepath.Join(prefix, "share/man/man1", tool+".1")
			cmd := exec.Command("man", "--warnings", "-l", page)
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("man -l %s: %v\n%s", page, err, stderr.Bytes())
				continue
			}
			text := stdout.String()
			if !regexp.MustCompile(`NAME\n +` + tool + ` +- +[a-z]`).MatchString(text) {
				t.Errorf("man %s: no NAME line \"%s - ...\":\n%s", tool, tool, text)
			}
			for _, want := range []string{"\nSYNOPSIS\n", "\nDESCRIPTION\n", "\nEXIT STATUS\n", "\nSEE ALSO\n"} {
				if !strings.Contains(text, want) {
					t.Errorf("man %s lacks %q:\n%s", tool, want, text)
				}
			}
			help := output(t, filepath.Join(prefix, "bin", tool), "-help")
			for _, f := range flagNames(help) {
				if !strings.Contains(text, "\n       -"+f+"\n") && !strings.Contains(text, "\n       -"+f+" ") {
					t.Errorf("man %s: OPTIONS lacks -%s", tool, f)
				}
			}
		}
	})

	t.Run("systemd", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Skip("systemd-analyze is not installed (scripts/setup installs systemd)")
		}
		dir := filepath.Join(prefix, "lib/systemd/system")
		unit, err := os.ReadFile(filepath.Join(dir, "same-dedupe.service"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"ExecStart=" + prefix + "/bin/same-nightly\n",
			"Environment=SAME_CONFIG=" + prefix + "/etc/default/same\n",
			"StateDirectory=same\n", "StateDirectoryMode=0700\n", "UMask=0077\n",
			"IOSchedulingClass=idle\n", "Nice=19\n",
		} {
			if !bytes.Contains(unit, []byte(want)) {
				t.Errorf("same-dedupe.service lacks %q", want)
			}
		}
		// verify looks up the Documentation= pages with man and the
		// ExecStart= program; it needs no running systemd.
		cmd := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "same-dedupe.service"), filepath.Join(dir, "same-dedupe.timer"))
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share/man"))
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("bash", func(t *testing.T) {
		docs := filepath.Join(prefix, "share/doc/same")
		for _, tt := range []struct {
			words []string
			want  string
		}{
			{[]string{"hashfile", "-d"}, "-db"},
			{[]string{"hashfile", "-db", docs + "/LIC"}, docs + "/LICENSE"},
			{[]string{"hashfile", "--db", "=", docs + "/LIC"}, docs + "/LICENSE"},
			{[]string{"hashfile", "-j", ""}, ""},
			{[]string{"hashfile", docs + "/REA"}, docs + "/README.md"},
			{[]string{"findsame", "-no"}, "-no-keep\n-no-readonly\n-no-rewrite"},
			{[]string{"findsame", "-in"}, "-include"},
			{[]string{"findsame", docs + "/REA"}, ""},
			{[]string{"applysame", "-keep"}, "-keep-going"},
			{[]string{"applysame", docs + "/plan"}, docs + "/plan-format.md"},
		} {
			script := `. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _same_` + tt.words[0] + `; printf '%s\n' "${COMPREPLY[@]}"`
			args := append([]string{"-c", script, "bash", filepath.Join(prefix, "share/bash-completion/completions", tt.words[0])}, tt.words...)
			got := strings.TrimSpace(output(t, "bash", args...))
			if got != tt.want {
				t.Errorf("bash completion of %q = %q; want %q", tt.words, got, tt.want)
			}
		}
	})

	t.Run("zsh", func(t *testing.T) {
		if _, err := exec.LookPath("zsh"); err != nil {
			t.Skip("zsh is not installed (scripts/setup installs it)")
		}
		for _, tool := range tools {
			output(t, "zsh", "-n", filepath.Join(prefix, "share/zsh/site-functions", "_"+tool))
		}
	})
}

// flagNames returns the flags that -help lists.
func flagNames(help string) []string {
	var names []string
	_, flags, _ := strings.Cut(help, "\nFlags:\n")
	for _, f := range parseFlags(flags) {
		names = append(names, f.name)
	}
	return names
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.Bytes())
	}
	return string(out)
}

// TestNightly runs the installed nightly job on a real btrfs with
// duplicates: it frees space, leaves every file's content alone, keeps
// its index, plan and results private, and refuses to overlap a run that
// holds the lock.
func TestNightly(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "512M") // skips unless root
	prefix := install(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	for i := range data {
		data[i] ^= byte(i / 4096) // distinct blocks
	}
	for _, name := range []string{"a", "b", "sub/c"} {
		p := filepath.Join(mnt, "data", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sums := testfs.SHA256Tree(t, filepath.Join(mnt, "data"))
	state := filepath.Join(t.TempDir(), "state")
	config := filepath.Join(t.TempDir(), "same.conf")
	// -same-owner is what the job passes on multi-user hosts; the files
	// here all belong to root, so either way they are paired.
	owner := "0"
	if strings.Contains(output(t, filepath.Join(prefix, "bin/findsame"), "-help"), "\n  -same-owner\n") {
		owner = "1"
	}
	os.WriteFile(config, []byte("SAME_PATHS="+filepath.Join(mnt, "data")+"\nSAME_SAME_OWNER="+owner+"\nSAME_HASHFILE_FLAGS=\"-q --exclude *.tmp\"\n"), 0o644)
	nightly := func() (int, string) {
		cmd := exec.Command(filepath.Join(prefix, "bin/same-nightly"))
		cmd.Env = append(os.Environ(), "SAME_CONFIG="+config, "STATE_DIRECTORY="+state)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}

	before := testfs.FreeBytes(t, mnt)
	code, out := nightly()
	if code != 0 {
		t.Fatalf("same-nightly: exit status %d\n%s", code, out)
	}
	freed := testfs.FreeBytes(t, mnt) - before
	if freed < 2*int64(len(data))-(1<<20) {
		t.Errorf("same-nightly freed %d bytes; want about %d (two of three copies)\n%s", freed, 2*len(data), out)
	}
	if got := testfs.SHA256Tree(t, filepath.Join(mnt, "data")); len(got) != len(sums) || !mapsEqual(got, sums) {
		t.Errorf("contents changed: %v; want %v", got, sums)
	}
	for name, mode := range map[string]os.FileMode{"": os.ModeDir | 0o700, "index.db": 0o600, "plan.jsonl": 0o600, "results.jsonl": 0o600, "lock": 0o600} {
		st, err := os.Stat(filepath.Join(state, name))
		if err != nil || st.Mode() != mode {
			t.Errorf("state %q: %v, %v; want mode %v", name, st.Mode(), err, mode)
		}
	}
	if results, _ := os.ReadFile(filepath.Join(state, "results.jsonl")); !bytes.Contains(results, []byte(`"status":"done"`)) {
		t.Errorf("results.jsonl = %s; want a line done", results)
	}

	// A run already holds the lock: the next one does not start.
	lock, err := os.OpenFile(filepath.Join(state, "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	code, out = nightly()
	if want := "same-nightly: another run holds " + filepath.Join(state, "lock") + "; not starting\n"; code != 1 || out != want {
		t.Errorf("same-nightly while locked = %d, %q; want 1, %q", code, out, want)
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	// A second run finds nothing more to do.
	code, out = nightly()
	if code != 0 || !strings.Contains(out, "findsame: 0 lines") {
		t.Errorf("second same-nightly = %d; want 0 and an empty plan\n%s", code, out)
	}

	// The state directory inside the directories deduplicated (SAME_PATHS
	// of /, STATE /var/lib/same): its plan and results, new every night,
	// are not hashed.
	more := make([]byte, 1<<20) // 256 blocks, none of them in data
	for i := range more {
		more[i] = byte(7*i + 13*(i/4096))
	}
	for _, name := range []string{"more/x", "more/y"} {
		p := filepath.Join(mnt, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, more, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state = filepath.Join(mnt, "var/lib/same")
	os.WriteFile(config, []byte("SAME_PATHS="+mnt+"\nSAME_SAME_OWNER="+owner+"\n"), 0o644)
	if code, out = nightly(); code != 0 || !strings.Contains(out, "applysame: 1 lines,") {
		t.Fatalf("same-nightly with its state in SAME_PATHS = %d; want 0 and a line applied\n%s", code, out)
	}
	code, out = nightly()
	if want := "hashfile: 5 files seen, 0 hashed ("; code != 0 || !strings.Contains(out, want) {
		t.Errorf("same-nightly with its state in SAME_PATHS, again = %d; want 0 and %q\n%s", code, want, out)
	}
}

func mapsEqual(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}
