//go:build linux

package apply

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"same/internal/dedupe"
	"same/internal/fsys"
	"same/internal/plan"
	"same/internal/testfs"
)

func TestLineStatus(t *testing.T) {
	d := func(s plan.Status, bytes int64) plan.DstResult { return plan.DstResult{Status: s, Bytes: bytes} }
	tests := []struct {
		name   string
		dsts   []plan.DstResult
		dryRun bool
		want   plan.Status
	}{
		{"all deduped", []plan.DstResult{d(plan.DstDeduped, 1), d(plan.DstDeduped, 1)}, false, plan.StatusDone},
		{"one differs", []plan.DstResult{d(plan.DstDeduped, 1), d(plan.DstDiffers, 0)}, false, plan.StatusPartial},
		{"all differ", []plan.DstResult{d(plan.DstDiffers, 0)}, false, plan.StatusPartial},
		{"interrupted before", []plan.DstResult{d(plan.DstSkipped, 0), d(plan.DstSkipped, 0)}, false, plan.StatusSkipped},
		{"interrupted during", []plan.DstResult{d(plan.DstSkipped, 4096), d(plan.DstSkipped, 0)}, false, plan.StatusPartial},
		{"busy", []plan.DstResult{d(plan.DstDeduped, 1), d(plan.DstBusy, 0)}, false, plan.StatusBusy},
		{"busy and differs", []plan.DstResult{d(plan.DstBusy, 0), d(plan.DstDiffers, 0)}, false, plan.StatusPartial},
		{"dry run", []plan.DstResult{d(plan.DstChecked, 0)}, true, plan.StatusChecked},
		{"dry run stale", []plan.DstResult{d(plan.DstChecked, 0), d(plan.DstStale, 0)}, true, plan.StatusPartial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lineStatus(tt.dsts, tt.dryRun); got != tt.want {
				t.Errorf("lineStatus(%v, %v) = %s; want %s", tt.dsts, tt.dryRun, got, tt.want)
			}
		})
	}
}

func TestCheckAlign(t *testing.T) {
	tests := []struct {
		off, length, size int64
		want              string
	}{
		{0, 8192, 8192, ""},
		{4096, 8192, 20000, ""},
		{0, 5000, 5000, ""},
		{4096, 904, 5000, ""},
		{100, 4096, 8192, "offset 100 is not a multiple of the filesystem block size 4096"},
		{0, 5000, 8192, "len 5000 is not a multiple of the filesystem block size 4096 and the range [0, 5000) does not end at EOF (size 8192)"},
	}
	for _, tt := range tests {
		err := checkAlign(plan.Range{Off: tt.off, Identity: fsys.Identity{Size: tt.size}}, tt.length, 4096)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("checkAlign(off %d, len %d, size %d) = %q; want %q", tt.off, tt.length, tt.size, got, tt.want)
		}
	}
}

func TestFdupesSource(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"a": "same", "b": "same", "c": "other size", "d": "same"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "hl")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	in := "\n" + p("a") + "\n" + "b\n" + p("c") + "\n" + p("hl") + "\n" + p("gone") + "\n\n\n" + p("d") + "\n\n" + p("b") + "\r\n" + p("d")

	type got struct {
		line   int
		src    string
		srcErr bool
		dsts   []string
		status []string
	}
	want := []got{
		{2, p("a"), false, []string{p("b"), p("c"), p("hl"), p("gone")}, []string{"", "differs", "skipped", "stale"}},
		{-9, "", false, nil, nil},
		{11, p("b"), false, []string{p("d")}, []string{""}},
	}
	s := newFdupesSource(strings.NewReader(in))
	for i, w := range want {
		it, err := s.next()
		if w.line == -9 {
			var le *plan.LineError
			if !errors.As(err, &le) || le.Line != 9 || !strings.Contains(err.Error(), "group of one file") {
				t.Errorf("next() #%d = %v; want a LineError for line 9, group of one file", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("next() #%d = %v", i, err)
		}
		g := got{line: it.line, src: it.d.Src.Path, srcErr: it.srcErr != nil}
		for k, d := range it.d.Dst {
			g.dsts = append(g.dsts, d.Path)
			var st string
			if err := it.dstErr[k]; err != nil {
				var dr plan.DstResult
				new(applier).setDst(&dr, err)
				st = string(dr.Status)
			}
			g.status = append(g.status, st)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("next() #%d = %+v; want %+v", i, g, w)
		}
		if it.d.Len != 4 || !it.whole {
			t.Errorf("next() #%d len %d whole %v; want 4, true", i, it.d.Len, it.whole)
		}
	}
	if _, err := s.next(); err != io.EOF {
		t.Errorf("next() at end = %v; want io.EOF", err)
	}
}

// id returns a plan range for path at off with its current identity.
func id(t testing.TB, path string, off int64) plan.Range {
	t.Helper()
	id, err := dedupe.IdentityOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return plan.Range{Path: path, Off: off, Identity: id}
}

func planLine(t testing.TB, length int64, src plan.Range, dsts ...plan.Range) string {
	t.Helper()
	b, err := json.Marshal(plan.Dedupe{Type: plan.TypeDedupe, V: plan.Version, Len: length, Src: src, Dst: dsts})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func results(t testing.TB, out string) []plan.Result {
	t.Helper()
	var rs []plan.Result
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r plan.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("result line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs
}

// statuses sums a result up as "line-status dst-status...".
func statuses(r plan.Result) string {
	s := string(r.Status)
	for _, d := range r.Dst {
		s += " " + string(d.Status)
	}
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestRun(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		for _, jobs := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/jobs=%d", fstype, jobs), func(t *testing.T) {
				testRun(t, testfs.Mount(t, fstype, "512M"), jobs)
			})
		}
	}
}

// testRun applies a plan of every kind of line, jobs lines at once: the
// results come in plan order whatever jobs is, and so do the reports with
// one job.
func testRun(t *testing.T, mnt string, jobs int) {
	write := func(name string, data []byte) string {
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data := randomBytes(4<<20 + 123)
	n := int64(len(data))
	a, b, c := write("a", data), write("b", data), write("c", data)
	other := append([]byte(nil), data...)
	other[1<<20] ^= 1
	d := write("d", other)
	e := write("e", data)
	tail := write("tail", append(randomBytes(8192), data[:8192]...))

	staleID := id(t, e, 0)
	staleID.Size = 4096 // as if e grew since it was hashed

	in := planLine(t, n, id(t, a, 0), id(t, b, 0), id(t, c, 0), id(t, d, 0)) + // partial: d differs
		"{not json\n" +
		planLine(t, n, id(t, a, 0), staleID) + // invalid: range past the recorded size
		planLine(t, 4096, staleID, id(t, e, 4096)) + // source stale
		planLine(t, 8192, id(t, a, 0), id(t, tail, 8192)) + // done: an inner range
		planLine(t, 5000, id(t, a, 0), id(t, tail, 8192)) + // len unaligned, not at EOF
		planLine(t, 4096, id(t, a, 0), id(t, tail, 100)) // destination offset unaligned

	before := testfs.SHA256Tree(t, mnt)
	var out bytes.Buffer
	var reports []string
	stats, err := Run(context.Background(), strings.NewReader(in), &out, Options{
		Chunk:  1 << 20,
		Jobs:   jobs,
		Report: func(err error) { reports = append(reports, err.Error()) },
	})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if after := testfs.SHA256Tree(t, mnt); !reflect.DeepEqual(after, before) {
		t.Errorf("file contents changed:\nbefore %v\nafter  %v", before, after)
	}

	rs := results(t, out.String())
	want := []struct {
		line   int
		status string
	}{
		{1, "partial deduped deduped differs"},
		{2, "invalid"},
		{3, "invalid"},
		{4, "stale skipped"},
		{5, "done deduped"},
		{6, "error skipped"},
		{7, "partial error"},
	}
	if len(rs) != len(want) {
		t.Fatalf("Run wrote %d results; want %d:\n%s", len(rs), len(want), out.String())
	}
	for i, w := range want {
		if rs[i].Line != w.line || statuses(rs[i]) != w.status {
			t.Errorf("result %d = line %d %q; want line %d %q", i, rs[i].Line, statuses(rs[i]), w.line, w.status)
		}
	}
	if got := rs[0].Dst[2].Bytes; got != 1<<20 {
		t.Errorf("differing destination deduped %d bytes; want %d (up to the difference)", got, 1<<20)
	}

	wantReports := []string{
		"line 1: " + d + ": contents differ from the source",
		"line 2: malformed JSON at byte 2: invalid character 'n' looking for beginning of object key string",
		`line 3: field "dst[0].off": range [0, 4194427) ends past the file's size 4096`,
		"line 4: " + e + ": stale: size 4194427, plan says 4096",
		"line 6: " + a + ": len 5000 is not a multiple of the filesystem block size 4096 and the range [0, 5000) does not end at EOF (size 4194427)",
		"line 7: " + tail + ": offset 100 is not a multiple of the filesystem block size 4096",
	}
	if jobs > 1 {
		slices.Sort(reports) // as lines finish; each names its line
		slices.Sort(wantReports)
	}
	if !reflect.DeepEqual(reports, wantReports) {
		t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(reports, "\n"), strings.Join(wantReports, "\n"))
	}

	wantStats := Stats{Lines: 7, Invalid: 2, Dests: 7, Deduped: 3, Bytes: 2*n + 1<<20 + 8192, Differs: 1, Stale: 1, Errors: 2, Skipped: 2}
	gotStats := *stats
	gotStats.FS = nil
	if !reflect.DeepEqual(gotStats, wantStats) {
		t.Errorf("stats = %+v; want %+v", gotStats, wantStats)
	}
	if stats.Failed() != 6 {
		t.Errorf("Failed() = %d; want 6", stats.Failed())
	}
	if len(stats.FS) != 1 || stats.FS[0].Err != nil || stats.FS[0].Freed() < 2*n-1<<20 {
		t.Errorf("FS = %+v; want one filesystem that freed at least %d bytes", stats.FS, 2*n-1<<20)
	}
}

func TestRunStopOnError(t *testing.T) {
	in := "{}\n" + `{"type":"dedupe","v":2}` + "\n"
	var out bytes.Buffer
	stats, err := Run(context.Background(), strings.NewReader(in), &out, Options{StopOnError: true})
	if err != nil || stats.Lines != 1 || stats.Invalid != 1 {
		t.Errorf("Run = %+v, %v; want 1 invalid line, nil", stats, err)
	}
	if got := strings.Count(out.String(), "\n"); got != 1 {
		t.Errorf("Run wrote %d results; want 1", got)
	}
}

// TestRunInterrupt cancels the context while Run waits for input: it must
// return at once, with the results so far written.
func TestRunInterrupt(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	g := filepath.Join(dir, "g")
	os.WriteFile(f, []byte("x"), 0o644)
	os.WriteFile(g, []byte("x"), 0o644)
	stale := id(t, f, 0)
	stale.Mtime++
	pr, pw := io.Pipe()
	defer pw.Close()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, pr, outW, Options{DryRun: true})
		outW.Close()
		done <- err
	}()
	go pw.Write([]byte(planLine(t, 1, stale, id(t, g, 0))))
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil || !strings.Contains(line, `"status":"stale"`) {
		t.Fatalf("first result = %q, %v; want a stale line", line, err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterrupted) {
			t.Errorf("Run = %v; want ErrInterrupted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the context was cancelled")
	}
}

// Progress is told of every line as its result is written.
func TestProgress(t *testing.T) {
	var lines []int
	var out bytes.Buffer
	_, err := Run(context.Background(), strings.NewReader("x\n\n{}\ny\n"), &out, Options{Jobs: 2, Progress: func(s *Stats) {
		lines = append(lines, s.Lines, s.Invalid)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 1, 2, 2, 3, 3}; fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("Progress saw (lines, invalid) %v; want %v", lines, want)
	}
}

// TestMaxDests: findsame writes at most plan.MaxDests destinations on a
// line, so that applysame can give them to the kernel in one call.
func TestMaxDests(t *testing.T) {
	if plan.MaxDests != dedupe.MaxDests {
		t.Errorf("plan.MaxDests = %d; want dedupe.MaxDests, %d", plan.MaxDests, dedupe.MaxDests)
	}
}

// TestRunGone applies lines naming files deleted since they were planned:
// they are stale (the plan is out of date), not errors.
func TestRunGone(t *testing.T) {
	dir := t.TempDir()
	paths := map[string]string{}
	for _, n := range []string{"src", "dst", "gone-src", "gone-dst"} {
		paths[n] = filepath.Join(dir, n)
		if err := os.WriteFile(paths[n], bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := planLine(t, 4096, id(t, paths["src"], 0), id(t, paths["dst"], 0), id(t, paths["gone-dst"], 0)) +
		planLine(t, 4096, id(t, paths["gone-src"], 0), id(t, paths["dst"], 0))
	for _, n := range []string{"gone-src", "gone-dst"} {
		if err := os.Remove(paths[n]); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	stats, err := Run(context.Background(), strings.NewReader(in), &out, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rs := results(t, out.String())
	if len(rs) != 2 {
		t.Fatalf("%d results; want 2:\n%s", len(rs), out.String())
	}
	// The result names the path: the message need not.
	const want = "no such file or directory"
	if d := rs[0].Dst[1]; rs[0].Status != plan.StatusPartial || d.Status != plan.DstStale || d.Errno != "ENOENT" || d.Error != want {
		t.Errorf("line 1: %s, dst %+v; want partial, the gone destination stale ENOENT %q", rs[0].Status, d, want)
	}
	if rs[1].Status != plan.StatusStale || rs[1].Error != want || rs[1].Dst[0].Status != plan.DstSkipped {
		t.Errorf("line 2: %s %q, dst %+v; want stale %q, destination skipped", rs[1].Status, rs[1].Error, rs[1].Dst, want)
	}
	if stats.Stale != 2 || stats.Errors != 0 {
		t.Errorf("stats %+v; want 2 stale, 0 errors", stats)
	}
}
