package main

import (
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"same/internal/cli"
	"same/internal/plan"
)

// report sums a plan up for a person, as findsame -report prints it
// instead of the plan: totals, the largest runs, the directories with the
// most to deduplicate, and the rewrites.
type report struct {
	lines, dests, rewrites         int64
	bytes, freed, written, rwFreed int64
	runs                           []*plan.Dedupe // the largest, at most top
	dirs                           map[string]int64
}

const reportTop = 10

func newReport() *report { return &report{dirs: make(map[string]int64)} }

// add counts one plan record.
func (r *report) add(rec plan.Record) error {
	r.lines++
	switch rec := rec.(type) {
	case *plan.Rewrite:
		r.rewrites++
		r.written += rec.Bytes
		r.rwFreed += rec.Freed
	case *plan.Dedupe:
		r.dests += int64(len(rec.Dst))
		r.bytes += rec.Len * int64(len(rec.Dst))
		r.freed += rec.Freed
		for _, d := range rec.Dst {
			r.dirs[filepath.Dir(d.Path)] += rec.Len
		}
		r.runs = append(r.runs, rec)
		if len(r.runs) > 4*reportTop {
			r.trim()
		}
	}
	return nil
}

func weight(d *plan.Dedupe) int64 { return d.Len * int64(len(d.Dst)) }

// trim keeps the largest runs.
func (r *report) trim() {
	slices.SortStableFunc(r.runs, func(a, b *plan.Dedupe) int { return cmp.Compare(weight(b), weight(a)) })
	r.runs = r.runs[:min(len(r.runs), reportTop)]
}

// write prints the report.
func (r *report) write(w io.Writer) error {
	r.trim()
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("plan: %d lines, %d destinations, %s to deduplicate; about %s to be freed\n",
		r.lines-r.rewrites, r.dests, cli.Bytes(r.bytes), cli.Bytes(r.freed+r.rwFreed))
	if r.rewrites > 0 {
		p("rewrites: %d extents, %s to write, freeing about %s net\n", r.rewrites, cli.Bytes(r.written), cli.Bytes(r.rwFreed))
	}
	if len(r.runs) > 0 {
		p("largest runs (length x destinations):\n")
		for _, d := range r.runs {
			p("  %10s  %s +%d -> %d x, first %s +%d\n", cli.Bytes(weight(d)), d.Src.Path, d.Src.Off, len(d.Dst), d.Dst[0].Path, d.Dst[0].Off)
		}
	}
	type dir struct {
		path  string
		bytes int64
	}
	var dirs []dir
	for p, b := range r.dirs {
		dirs = append(dirs, dir{p, b})
	}
	slices.SortFunc(dirs, func(a, b dir) int {
		if c := cmp.Compare(b.bytes, a.bytes); c != 0 {
			return c
		}
		return cmp.Compare(a.path, b.path)
	})
	if len(dirs) > 0 {
		p("directories with the most to deduplicate:\n")
		for _, d := range dirs[:min(len(dirs), reportTop)] {
			p("  %10s  %s\n", cli.Bytes(d.bytes), d.path)
		}
	}
	_, err := fmt.Fprint(w)
	return err
}
