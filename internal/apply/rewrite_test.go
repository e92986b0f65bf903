//go:build linux

package apply

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/plan"
	"same/internal/testfs"
)

// TestRewrite applies rewrite lines: one that frees the extent together
// with its dedupe line, and those refused before anything is written.
func TestRewrite(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	data := randomBytes(2 << 20)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	if err := os.WriteFile(a, data[:1<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	ext := writeOneExtent(t, b, data)
	// b's second half is copied; its first half shares a.
	rewrite := func(physical int64) string {
		w := plan.Rewrite{Type: plan.TypeRewrite, V: plan.Version, File: id(t, b, 0), Len: 2 << 20, Physical: physical,
			Copy: []plan.Span{{Off: 1 << 20, Len: 1 << 20}}, Bytes: 1 << 20}
		out, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return string(out) + "\n"
	}
	line := rewrite(ext[0].Physical) + planLine(t, 1<<20, id(t, a, 0), id(t, b, 0))

	tests := []struct {
		name    string
		in      string
		opt     Options
		want    string // rewrite line's status and error
		written int64
	}{
		{"off", line, Options{}, "skipped: rewriting is off (-rewrite-limit 0)", 0},
		{"limit", line, Options{RewriteLimit: 1 << 19}, "skipped: would pass the rewrite limit of 512.0 KiB (-rewrite-limit)", 0},
		// Nothing lies where the plan says: done before, nothing to write.
		{"moved", rewrite(ext[0].Physical + 4096), Options{RewriteLimit: 1 << 30}, "done: ", 0},
		{"dry run", line, Options{RewriteLimit: 1 << 30, DryRun: true}, "checked: ", 0},
		{"done", line, Options{RewriteLimit: 1 << 30}, "done: ", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			st, err := Run(t.Context(), strings.NewReader(tt.in), &out, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			r := results(t, out.String())[0]
			if got := string(r.Status) + ": " + r.Error; got != tt.want {
				t.Errorf("rewrite result %q; want %q", got, tt.want)
			}
			if r.Rewrite == nil || r.Rewrite.Written != tt.written || st.Written != tt.written {
				t.Errorf("rewrite result %+v, stats written %d; want %d written", r.Rewrite, st.Written, tt.written)
			}
		})
	}
	got, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatal("b's content changed")
	}

	// Now b's old extent is gone: its halves lie in a's extent and in the
	// copy, and the rewrite is done already.
	var out strings.Builder
	if _, err := Run(t.Context(), strings.NewReader(rewrite(ext[0].Physical)), &out, Options{RewriteLimit: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if r := results(t, out.String())[0]; r.Status != plan.StatusDone || r.Rewrite.Written != 0 {
		t.Errorf("rewrite of a freed extent: %s %s %+v; want done, nothing written", r.Status, r.Error, r.Rewrite)
	}

	// A reflinked copy shares c's extent: rewriting it would free nothing.
	c, d := filepath.Join(mnt, "c"), filepath.Join(mnt, "d")
	ext = writeOneExtent(t, c, data)
	testfs.Run(t, "cp", "--reflink=always", c, d)
	w, _ := json.Marshal(plan.Rewrite{Type: plan.TypeRewrite, V: plan.Version, File: id(t, c, 0), Len: 2 << 20, Physical: ext[0].Physical,
		Copy: []plan.Span{{Off: 0, Len: 1 << 20}}, Bytes: 1 << 20})
	out.Reset()
	if _, err := Run(t.Context(), strings.NewReader(string(w)+"\n"), &out, Options{RewriteLimit: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if r := results(t, out.String())[0]; r.Status != plan.StatusSkipped || r.Error != errExtentShared.Error() {
		t.Errorf("rewrite of a shared extent: %s %q; want skipped %q", r.Status, r.Error, errExtentShared.Error())
	}
}

// TestRewriteLimitJobs runs four rewrite lines of 1 MiB at once under a
// limit of 2.5 MiB: the limit is shared out in plan order before each line
// starts, so the first two are done and the last two skipped, whatever
// finishes first.
func TestRewriteLimitJobs(t *testing.T) {
	mnt := testfs.Mount(t, "btrfs", "256M")
	var in strings.Builder
	for i := range 4 {
		p := filepath.Join(mnt, fmt.Sprintf("f%d", i))
		ext := writeOneExtent(t, p, randomBytes(2<<20))
		w, _ := json.Marshal(plan.Rewrite{Type: plan.TypeRewrite, V: plan.Version, File: id(t, p, 0), Len: 2 << 20, Physical: ext[0].Physical,
			Copy: []plan.Span{{Off: 1 << 20, Len: 1 << 20}}, Bytes: 1 << 20})
		in.Write(append(w, '\n'))
	}
	before := testfs.SHA256Tree(t, mnt)
	var out strings.Builder
	st, err := Run(t.Context(), strings.NewReader(in.String()), &out, Options{RewriteLimit: 5 << 19, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results(t, out.String()) {
		got = append(got, fmt.Sprintf("%d %s %s", r.Line, r.Status, r.Error))
	}
	want := []string{"1 done ", "2 done ", "3 skipped would pass the rewrite limit of 2.5 MiB (-rewrite-limit)", "4 skipped would pass the rewrite limit of 2.5 MiB (-rewrite-limit)"}
	if !slices.Equal(got, want) {
		t.Errorf("results %q; want %q", got, want)
	}
	if st.Rewrites != 2 || st.Written != 2<<20 || st.Skipped != 2 {
		t.Errorf("stats %+v; want 2 rewrites, 2 MiB written, 2 skipped", st)
	}
	if after := testfs.SHA256Tree(t, mnt); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("content changed:\nbefore %v\nafter  %v", before, after)
	}
}

// writeOneExtent writes data to path in one extent, and returns it.
// Written back while it was being written (other tests, or other work on
// the machine, filling the page cache), a file can land in several
// extents: written again, it lands in one.
func writeOneExtent(t *testing.T, path string, data []byte) []fiemap.Extent {
	t.Helper()
	var ext []fiemap.Extent
	for try := 0; try < 5 && len(ext) != 1; try++ {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ext, err = fiemap.Extents(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(ext) != 1 {
		t.Fatalf("extents of %s = %v; want one", path, ext)
	}
	return ext
}
