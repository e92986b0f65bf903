package main

import (
	"fmt"
	"regexp"
	"strings"
)

// man renders p as a section 1 manual page in roff (man macros).
func (p *page) man(date, source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Made by scripts/gendoc from '%s -help'; edit the help text, not this page.\n", p.name)
	fmt.Fprintf(&b, ".TH %s 1 %s %s \"User Commands\"\n", quote(strings.ToUpper(p.name)), quote(date), quote(source))
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", esc(p.name), esc(p.summary))
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	for _, l := range p.synopsis {
		l = esc(l)
		if rest, ok := strings.CutPrefix(l, esc(p.name)); ok {
			l = `\fB` + esc(p.name) + `\fR` + rest
		}
		b.WriteString(line(l))
	}
	b.WriteString(".fi\n.SH DESCRIPTION\n")
	writeBlocks(&b, p.desc)
	if len(p.flags) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, f := range p.flags {
			fmt.Fprintf(&b, ".TP\n\\fB\\-%s\\fR", esc(f.name))
			if f.arg != "" {
				fmt.Fprintf(&b, " \\fI%s\\fR", esc(f.arg))
			}
			b.WriteString("\n" + line(esc(f.text)))
		}
	}
	for _, s := range p.sections {
		fmt.Fprintf(&b, ".SH %s\n", quote(strings.ToUpper(s.title)))
		if s.title == "See also" {
			for _, bl := range s.blocks {
				b.WriteString(line(seeAlso.ReplaceAllString(esc(strings.Join(bl.lines, " ")), `\fB$1\fR($2)`)))
			}
			continue
		}
		writeBlocks(&b, s.blocks)
	}
	return b.String()
}

var seeAlso = regexp.MustCompile(`([a-z][a-z0-9\\-]*)\(([0-9])\)`)

func writeBlocks(b *strings.Builder, blocks []block) {
	for i, bl := range blocks {
		switch bl.kind {
		case text:
			if i > 0 {
				b.WriteString(".PP\n")
			}
			for _, l := range bl.lines {
				b.WriteString(line(esc(l)))
			}
		case pre:
			b.WriteString(".PP\n.RS 4\n.nf\n")
			for _, l := range bl.lines {
				b.WriteString(line(esc(strings.TrimPrefix(l, "  "))))
			}
			b.WriteString(".fi\n.RE\n")
		case list:
			for _, it := range bl.items {
				fmt.Fprintf(b, ".TP\n.B %s\n", quote(esc(it.term)))
				b.WriteString(line(esc(it.text)))
			}
			if i+1 < len(blocks) {
				b.WriteString(".PP\n")
			}
		}
	}
}

// esc escapes text for roff: backslashes, and hyphens that are minus signs
// (in flags and commands, so that they can be searched and copied).
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// line ends s with a newline, guarding a leading dot or quote, which roff
// would read as a request.
func line(s string) string {
	s = strings.TrimRight(s, " ")
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s + "\n"
}

// quote makes s one argument of a roff request.
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
