package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Meter is the state of a long phase of work, as a progress line shows
// it.
type Meter struct {
	Phase string // what is being done: "hashing", "grouping (pass 1 of 3)"
	Done  int64
	// Total is what Done counts up to; 0 or less when unknown (then the
	// line shows Done and the rate only).
	Total int64
	// Estimate says Total is an estimate, shown with a "~".
	Estimate bool
	// Unit names what Done counts ("lines", "blocks"); "" means bytes.
	Unit string
	// Elapsed is the time the phase has taken; Progress fills it in
	// when it is 0.
	Elapsed time.Duration
	Extra   string // appended after a comma, if not ""
}

// Format returns the progress line for s: done, total, percentage, rate
// and ETA, as far as they are known.
//
//	hashing: 1.5 GiB of 6.0 GiB (25%), 512.0 MiB/s, ETA 9s
//	applying: 120 of 4001 lines (3%), 40 lines/s, ETA 1m37s, 1.2 GiB deduped
//	reading the plan: 120 lines, 40 lines/s
func Format(s Meter) string {
	var b strings.Builder
	b.WriteString(s.Phase)
	b.WriteString(": ")
	est := ""
	if s.Estimate {
		est = "~"
	}
	if s.Total > 0 {
		done := Count(s.Done)
		if s.Unit == "" {
			done = Bytes(s.Done)
		}
		fmt.Fprintf(&b, "%s of %s%s (%s%d%%)", done, est, s.amount(s.Total), est, min(100, s.Done*100/s.Total))
	} else {
		b.WriteString(s.amount(s.Done))
	}
	if s.Elapsed >= time.Second/10 && s.Done > 0 {
		rate := float64(s.Done) / s.Elapsed.Seconds()
		fmt.Fprintf(&b, ", %s/s", s.amount(int64(rate)))
		if s.Total > s.Done {
			left := time.Duration(float64(s.Total-s.Done) / rate * float64(time.Second))
			fmt.Fprintf(&b, ", ETA %s%s", est, Duration(left))
		}
	}
	if s.Extra != "" {
		b.WriteString(", ")
		b.WriteString(s.Extra)
	}
	return b.String()
}

func (s Meter) amount(n int64) string {
	if s.Unit == "" {
		return Bytes(n)
	}
	return Count(n) + " " + s.Unit
}

// Count formats a count for people: 999, 12345, 123.4k, 12.3M, 1.2G.
func Count(n int64) string {
	switch {
	case n < 100000:
		return fmt.Sprint(n)
	case n < 100e6:
		if n < 1e6 {
			return fmt.Sprintf("%.1fk", float64(n)/1e3)
		}
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	default:
		return fmt.Sprintf("%.1fG", float64(n)/1e9)
	}
}

// Duration formats a time left, to the second: 9s, 1m37s, 2h05m, 3d04h.
func Duration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

// Progress draws a Meter line on a terminal, redrawn in place (carriage
// return, line cleared) at most every Interval, and cut to the terminal's
// width so that it never wraps. A nil *Progress draws nothing: NewProgress
// returns nil when the output is not a terminal. Its methods may be called
// from several goroutines.
type Progress struct {
	w     io.Writer
	fd    int
	mu    sync.Mutex
	phase string
	start time.Time // of the phase
	last  time.Time // of the last line drawn
	shown bool      // a line is on the screen
}

// Interval is the least time between two lines Progress draws.
const Interval = 200 * time.Millisecond

// NewProgress returns a Progress drawing on w, or nil if w is not a
// terminal.
func NewProgress(w io.Writer) *Progress {
	if !IsTerminal(w) {
		return nil
	}
	return &Progress{w: w, fd: int(w.(*os.File).Fd())}
}

// Update draws s, unless a line was drawn less than Interval ago in the
// same phase.
func (p *Progress) Update(s Meter) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if s.Phase != p.phase {
		p.phase, p.start = s.Phase, now
	} else if now.Sub(p.last) < Interval {
		return
	}
	if s.Elapsed == 0 {
		s.Elapsed = now.Sub(p.start)
	}
	p.last = now
	line := Format(s)
	if ws, err := unix.IoctlGetWinsize(p.fd, unix.TIOCGWINSZ); err == nil && ws.Col > 1 {
		line = cut(line, int(ws.Col)-1)
	}
	fmt.Fprint(p.w, "\r\033[K"+line)
	p.shown = true
}

// Clear removes the line, so that what is printed next starts on a clean
// line. The next Update draws at once.
func (p *Progress) Clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.shown, p.phase = false, ""
}

// Printf writes a message to w, on a line of its own: with p not nil, it
// clears the progress line first, and the next Update draws it again at
// once.
func (p *Progress) Printf(w io.Writer, format string, args ...any) {
	if p == nil {
		fmt.Fprintf(w, format, args...)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(w, format, args...)
	p.shown, p.last = false, time.Time{}
}

// cut shortens s to at most n characters.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
