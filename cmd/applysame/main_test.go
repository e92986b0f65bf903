//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"same/internal/cli"
	"same/internal/dedupe"
	"same/internal/plan"
	"same/internal/testfs"
)

// runTest calls run and returns its exit status, stdout and stderr.
func runTest(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	code := cli.Report("applysame", err, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsage(t *testing.T) {
	const more = "Run 'applysame -help' for usage.\n"
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", []string{"-h"}, 0, ""},
		{"unknown flag", []string{"-x"}, 2, "applysame: flag provided but not defined: -x\n" + more},
		{"chunk too small", []string{"-chunk", "512K"}, 2, "applysame: -chunk 512K: want 1M to 1G\n" + more},
		{"chunk too large", []string{"--chunk=2GiB"}, 2, "applysame: -chunk 2G: want 1M to 1G\n" + more},
		{"chunk garbage", []string{"-chunk", "lots"}, 2, `applysame: invalid value "lots" for flag -chunk: bad size "lots": want a number of bytes such as 4096, 128K or 16MiB` + "\n" + more},
		{"two plans", []string{"a", "b"}, 2, "applysame: more than one PLAN: a b\n" + more},
		{"negative max-time", []string{"-max-time", "-1s"}, 2, "applysame: -max-time: -1s is negative\n" + more},
		{"reserve garbage", []string{"-reserve", "lots"}, 2, `applysame: invalid value "lots" for flag -reserve: bad size "lots": want a number of bytes such as 4096, 128K or 16MiB` + "\n" + more},
		{"missing plan", []string{"/nonexistent/plan.jsonl"}, 1, "applysame: open /nonexistent/plan.jsonl: no such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runTest(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("run(%q) exit status = %d; want %d", tt.args, code, tt.code)
			}
			if stderr != tt.stderr {
				t.Errorf("run(%q) stderr = %q; want %q", tt.args, stderr, tt.stderr)
			}
			if tt.name == "help" {
				if !strings.HasPrefix(stdout, "Usage: applysame") {
					t.Errorf("run(-h) stdout = %q; want the usage text", stdout)
				}
			} else if stdout != "" {
				t.Errorf("run(%q) stdout = %q; want nothing", tt.args, stdout)
			}
		})
	}
}

func TestInvalidLines(t *testing.T) {
	in := "{\"type\":\"dedupe\",\n\n{\"type\":\"dedupe\",\"v\":3,\"len\":1}\n{\"type\":\"x\",\"v\":1}\n"
	for _, args := range [][]string{{"-q"}, {"-q", "-"}} {
		code, stdout, stderr := runTest(t, in, args...)
		if code != 3 {
			t.Errorf("run(%q) exit status = %d; want 3", args, code)
		}
		wantErr := "applysame: line 1: malformed JSON at byte 17: unexpected end of JSON input\n" +
			"applysame: line 3: unsupported plan version 3 (this applysame reads versions 1 to 2)\n" +
			"applysame: line 4: unknown record type \"x\"\n"
		if stderr != wantErr {
			t.Errorf("run(%q) stderr =\n%s\nwant\n%s", args, stderr, wantErr)
		}
		wantOut := `{"type":"result","v":2,"line":1,"status":"invalid","error":"malformed JSON at byte 17: unexpected end of JSON input"}` + "\n" +
			`{"type":"result","v":2,"line":3,"status":"invalid","error":"unsupported plan version 3 (this applysame reads versions 1 to 2)"}` + "\n" +
			`{"type":"result","v":2,"line":4,"status":"invalid","error":"unknown record type \"x\""}` + "\n"
		if stdout != wantOut {
			t.Errorf("run(%q) stdout =\n%s\nwant\n%s", args, stdout, wantOut)
		}
	}
}

func TestEmptyPlan(t *testing.T) {
	code, stdout, stderr := runTest(t, "\n\n")
	want := "applysame: 0 lines, 0 destinations deduped, 0 bytes deduplicated (0 B), 0 extents rewritten (0 B written), 0 differ, 0 stale, 0 errors, 0 skipped, 0 invalid lines\n"
	if code != 0 || stdout != "" || stderr != want {
		t.Errorf("run(empty plan) = %d, %q, %q; want 0, \"\", %q", code, stdout, stderr, want)
	}
}

// fixture is a tree of files on a fresh filesystem, with duplicates.
type fixture struct {
	mnt        string
	size       int64
	a, b, c, d string // a, b and c are equal; d differs in its second MiB
}

func newFixture(t *testing.T, fstype string) *fixture {
	mnt := testfs.Mount(t, fstype, "512M")
	data := make([]byte, 8<<20+777)
	rand.Read(data)
	f := &fixture{mnt: mnt, size: int64(len(data))}
	paths := []*string{&f.a, &f.b, &f.c, &f.d}
	for i, p := range paths {
		*p = filepath.Join(mnt, "dir", strconv.Itoa(i))
		os.MkdirAll(filepath.Dir(*p), 0o755)
		if i == 3 {
			data[1<<20+5] ^= 0xff
		}
		if err := os.WriteFile(*p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// identity returns path's identity as it is now, as a plan range at
// offset 0.
func identity(t *testing.T, path string) plan.Range {
	t.Helper()
	id, err := dedupe.IdentityOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return plan.Range{Path: path, Identity: id}
}

// plan returns a plan that dedupes b, c and d against a.
func (f *fixture) plan(t *testing.T) string {
	b, err := json.Marshal(plan.Dedupe{
		Type: plan.TypeDedupe, V: plan.Version, Len: f.size,
		Src: identity(t, f.a),
		Dst: []plan.Range{identity(t, f.b), identity(t, f.c), identity(t, f.d)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func decodeResults(t *testing.T, out string) []plan.Result {
	t.Helper()
	var rs []plan.Result
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r plan.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("result %q: %v", l, err)
		}
		rs = append(rs, r)
	}
	return rs
}

func dstStatuses(r plan.Result) []plan.Status {
	var s []plan.Status
	for _, d := range r.Dst {
		s = append(s, d.Status)
	}
	return s
}

var freedRE = regexp.MustCompile(`filesystem at \S+: freed (-?\d+) bytes`)

// freed returns the bytes freed that the summary reports.
func freed(t *testing.T, stderr string) int64 {
	t.Helper()
	m := freedRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no freed bytes in summary:\n%s", stderr)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func TestApply(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			f := newFixture(t, fstype)
			planFile := filepath.Join(t.TempDir(), "plan.jsonl")
			os.WriteFile(planFile, []byte(f.plan(t)), 0o644)
			before := testfs.SHA256Tree(t, f.mnt)
			free := testfs.FreeBytes(t, f.mnt)

			code, stdout, stderr := runTest(t, "", "-chunk", "1M", planFile)

			if code != 3 {
				t.Errorf("exit status = %d; want 3 (d differs)\n%s", code, stderr)
			}
			if after := testfs.SHA256Tree(t, f.mnt); !reflect.DeepEqual(after, before) {
				t.Errorf("contents changed:\nbefore %v\nafter  %v", before, after)
			}
			rs := decodeResults(t, stdout)
			want := []plan.Status{plan.DstDeduped, plan.DstDeduped, plan.DstDiffers}
			if len(rs) != 1 || rs[0].Status != plan.StatusPartial || !reflect.DeepEqual(dstStatuses(rs[0]), want) {
				t.Fatalf("results = %s; want one partial line, %v", stdout, want)
			}
			if got := rs[0].Dst[2].Bytes; got != 1<<20 {
				t.Errorf("d deduped %d bytes; want %d", got, 1<<20)
			}
			if !strings.Contains(stderr, "applysame: line 1: "+f.d+": contents differ from the source\n") {
				t.Errorf("stderr lacks the differs message:\n%s", stderr)
			}
			wantSummary := "applysame: 1 lines, 2 destinations deduped, " + strconv.FormatInt(2*f.size+1<<20, 10) + " bytes deduplicated"
			if !strings.Contains(stderr, wantSummary) {
				t.Errorf("stderr lacks %q:\n%s", wantSummary, stderr)
			}
			// b and c are freed whole; the part of d may or may not be.
			if got := freed(t, stderr); got < 2*f.size {
				t.Errorf("summary says %d bytes freed; want at least %d", got, 2*f.size)
			}
			if got := testfs.FreeBytes(t, f.mnt) - free; got < 2*f.size {
				t.Errorf("statfs says %d bytes freed; want at least %d", got, 2*f.size)
			}

			// Dedupe keeps mtime and ctime, so the identities hold and the
			// plan can be applied again.
			code, stdout, _ = runTest(t, f.plan(t), "-q")
			if rs := decodeResults(t, stdout); code != 3 || !reflect.DeepEqual(dstStatuses(rs[0]), want) {
				t.Errorf("second run = %d, %s; want 3, %v", code, stdout, want)
			}
		})
	}
}

func TestDryRun(t *testing.T) {
	f := newFixture(t, "btrfs")
	p := f.plan(t)
	os.Chtimes(f.c, time.Unix(1, 0), time.Unix(1, 0)) // c is now stale
	before := testfs.SHA256Tree(t, f.mnt)
	free := testfs.FreeBytes(t, f.mnt)

	code, stdout, stderr := runTest(t, p, "--dry-run")

	if code != 3 {
		t.Errorf("exit status = %d; want 3 (c stale)", code)
	}
	rs := decodeResults(t, stdout)
	want := []plan.Status{plan.DstChecked, plan.DstStale, plan.DstChecked}
	if len(rs) != 1 || rs[0].Status != plan.StatusPartial || !reflect.DeepEqual(dstStatuses(rs[0]), want) {
		t.Errorf("results = %s; want one partial line, %v", stdout, want)
	}
	wantErr := regexp.MustCompile(`^applysame: line 1: ` + regexp.QuoteMeta(f.c) + `: stale: mtime 1970-01-01T00:00:01Z \(1000000000 ns\), plan says \S+ \(\d+ ns\)\n` +
		`applysame: 1 lines, 2 destinations checked \(dry run\), 0 extents rewritten \(0 B written\), 0 differ, 1 stale, 0 errors, 0 skipped, 0 invalid lines\n$`)
	if !wantErr.MatchString(stderr) {
		t.Errorf("stderr =\n%s\nwant to match\n%s", stderr, wantErr)
	}
	if after := testfs.SHA256Tree(t, f.mnt); !reflect.DeepEqual(after, before) {
		t.Errorf("contents changed")
	}
	if got := testfs.FreeBytes(t, f.mnt) - free; got > 1<<20 || got < -(1<<20) {
		t.Errorf("dry run changed free space by %d bytes; want about 0", got)
	}
}

func TestFromFdupes(t *testing.T) {
	f := newFixture(t, "btrfs")
	other := filepath.Join(f.mnt, "short")
	os.WriteFile(other, []byte("short"), 0o644)
	before := testfs.SHA256Tree(t, f.mnt)
	free := testfs.FreeBytes(t, f.mnt)
	in := f.a + "\n" + f.b + "\n" + other + "\n\n" + f.a + "\n" + f.c + "\n"

	code, stdout, stderr := runTest(t, in, "-from-fdupes")

	if code != 3 {
		t.Errorf("exit status = %d; want 3 (short differs)", code)
	}
	rs := decodeResults(t, stdout)
	if len(rs) != 2 {
		t.Fatalf("results = %s; want 2 lines", stdout)
	}
	type line struct {
		line   int
		status plan.Status
		dsts   []plan.Status
	}
	got := []line{{rs[0].Line, rs[0].Status, dstStatuses(rs[0])}, {rs[1].Line, rs[1].Status, dstStatuses(rs[1])}}
	want := []line{
		{1, plan.StatusPartial, []plan.Status{plan.DstDeduped, plan.DstDiffers}},
		{5, plan.StatusDone, []plan.Status{plan.DstDeduped}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results = %+v; want %+v", got, want)
	}
	if msg := "applysame: line 1: " + other + ": contents differ from the source: size 5, source has " + strconv.FormatInt(f.size, 10) + "\n"; !strings.Contains(stderr, msg) {
		t.Errorf("stderr lacks %q:\n%s", msg, stderr)
	}
	if after := testfs.SHA256Tree(t, f.mnt); !reflect.DeepEqual(after, before) {
		t.Errorf("contents changed")
	}
	if got := testfs.FreeBytes(t, f.mnt) - free; got < 2*f.size {
		t.Errorf("statfs says %d bytes freed; want at least %d", got, 2*f.size)
	}
}
