package cli

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		s    Meter
		want string
	}{
		{Meter{Phase: "hashing", Done: 3 << 29, Total: 6 << 30, Elapsed: 3 * time.Second},
			"hashing: 1.5 GiB of 6.0 GiB (25%), 512.0 MiB/s, ETA 9s"},
		{Meter{Phase: "hashing", Done: 1 << 30, Total: 4 << 30, Estimate: true, Elapsed: 2 * time.Second, Extra: "1200 files"},
			"hashing: 1.0 GiB of ~4.0 GiB (~25%), 512.0 MiB/s, ETA ~6s, 1200 files"},
		{Meter{Phase: "applying", Done: 120, Total: 4001, Unit: "lines", Elapsed: 3 * time.Second, Extra: "1.2 GiB deduped"},
			"applying: 120 of 4001 lines (2%), 40 lines/s, ETA 1m37s, 1.2 GiB deduped"},
		{Meter{Phase: "applying", Done: 120, Unit: "lines", Elapsed: 3 * time.Second},
			"applying: 120 lines, 40 lines/s"},
		{Meter{Phase: "grouping (pass 1 of 3)", Done: 12_345_678, Total: 98_765_432, Unit: "blocks", Elapsed: 10 * time.Second},
			"grouping (pass 1 of 3): 12.3M of 98.8M blocks (12%), 1.2M blocks/s, ETA 1m10s"},
		// Nothing done yet, or no time passed: no rate, no ETA.
		{Meter{Phase: "loading", Done: 0, Total: 10, Unit: "files", Elapsed: time.Minute}, "loading: 0 of 10 files (0%)"},
		{Meter{Phase: "loading", Done: 5, Total: 10, Unit: "files"}, "loading: 5 of 10 files (50%)"},
		// Done past an estimated total: 100%, no ETA.
		{Meter{Phase: "hashing", Done: 5 << 20, Total: 4 << 20, Estimate: true, Elapsed: time.Second},
			"hashing: 5.0 MiB of ~4.0 MiB (~100%), 5.0 MiB/s"},
		{Meter{Phase: "x", Done: 1, Total: 1000, Unit: "lines", Elapsed: time.Second}, "x: 1 of 1000 lines (0%), 1 lines/s, ETA 16m39s"},
	} {
		if got := Format(tt.s); got != tt.want {
			t.Errorf("Format(%+v) =\n\t%q; want\n\t%q", tt.s, got, tt.want)
		}
	}
}

func TestCountDuration(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 99999: "99999", 100000: "100.0k", 1234567: "1.2M", 5e9: "5.0G"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q; want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 1499 * time.Millisecond: "1s", 61 * time.Second: "1m01s", 2*time.Hour + 5*time.Minute: "2h05m", 76 * time.Hour: "3d04h"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q; want %q", d, got, want)
		}
	}
}

// On a terminal Progress draws each line over the last one, at most every
// Interval in one phase, and at once in a new phase; Clear removes it.
// Elsewhere it draws nothing.
func TestProgress(t *testing.T) {
	if p := NewProgress(&bytes.Buffer{}); p != nil {
		t.Errorf("NewProgress(a buffer) = %v; want nil", p)
	}
	var nilp *Progress
	nilp.Update(Meter{Phase: "x"}) // no panic
	nilp.Clear()
	var buf bytes.Buffer
	nilp.Printf(&buf, "x %d\n", 1)
	if buf.String() != "x 1\n" {
		t.Errorf("nil Progress Printf wrote %q; want %q", buf.String(), "x 1\n")
	}

	ptm, tty := openPTY(t)
	p := NewProgress(tty)
	if p == nil {
		t.Fatal("NewProgress(a terminal) = nil")
	}
	p.Update(Meter{Phase: "a", Done: 1, Unit: "lines"})
	p.Update(Meter{Phase: "a", Done: 2, Unit: "lines"}) // too soon: not drawn
	p.Update(Meter{Phase: "b", Done: 3, Unit: "lines"})
	p.Printf(tty, "warning %d\n", 1)
	p.Update(Meter{Phase: "b", Done: 4, Unit: "lines"}) // drawn again at once
	p.Clear()
	p.Clear() // nothing shown: nothing to clear
	tty.Close()
	out, _ := io.ReadAll(ptm)
	want := "\r\033[Ka: 1 lines\r\033[Kb: 3 lines\r\033[Kwarning 1\r\n\r\033[Kb: 4 lines\r\033[K"
	if string(out) != want {
		t.Errorf("terminal got %q; want %q", out, want)
	}
}
