package main

import (
	"errors"
	"regexp"
	"strings"
	"unicode"
)

// page is a command's help text, parsed.
type page struct {
	name     string
	synopsis []string  // the lines of "Usage:", without it
	summary  string    // the first sentence of the description
	desc     []block   // the description
	sections []section // in the order of the help text
	flags    []flagDoc
}

type section struct {
	title  string
	blocks []block
}

// block is a paragraph of text, or lines kept as written (pre), or a list
// of terms and their text.
type block struct {
	kind  blockKind
	lines []string
	items []item
}

type blockKind int

const (
	text blockKind = iota
	pre
	list
)

type item struct{ term, text string }

type flagDoc struct {
	name, arg, text string
}

var heading = regexp.MustCompile(`^([A-Z][A-Za-z ]*):(?:\s+(.*))?$`)

// parse reads help text as cli.PrintUsage writes it.
func parse(name, help string) (*page, error) {
	p := &page{name: name}
	body, flags, _ := strings.Cut(help, "\nFlags:\n")
	p.flags = parseFlags(flags)
	var cur *section
	for i, para := range strings.Split(strings.Trim(body, "\n"), "\n\n") {
		lines := strings.Split(strings.Trim(para, "\n"), "\n")
		if i == 0 {
			if !strings.HasPrefix(lines[0], "Usage: ") {
				return nil, errors.New(`help does not start with "Usage: "`)
			}
			for _, l := range lines {
				t := strings.TrimSpace(strings.TrimPrefix(l, "Usage:"))
				if n := len(p.synopsis); n > 0 && strings.HasPrefix(l, "   ") && strings.HasPrefix(t, "[") {
					// A long synopsis wrapped onto the next line, under
					// its flags.
					p.synopsis[n-1] += " " + t
					continue
				}
				p.synopsis = append(p.synopsis, t)
			}
			continue
		}
		if m := heading.FindStringSubmatch(lines[0]); m != nil {
			p.sections = append(p.sections, section{title: m[1]})
			cur = &p.sections[len(p.sections)-1]
			lines = lines[1:]
			if m[2] != "" {
				lines = append([]string{m[2]}, lines...)
			}
		}
		blocks := parseBlocks(lines, cur != nil && cur.title != "Examples")
		if cur == nil {
			p.desc = append(p.desc, blocks...)
		} else {
			cur.blocks = append(cur.blocks, blocks...)
		}
	}
	if len(p.desc) == 0 || p.desc[0].kind != text {
		return nil, errors.New("no description after the usage lines")
	}
	p.summary = firstSentence(strings.Join(p.desc[0].lines, " "))
	return p, nil
}

// parseBlocks splits lines into runs of text and indented lines; indented
// runs that read as terms and their text become lists when lists is set.
func parseBlocks(lines []string, lists bool) []block {
	var out []block
	for len(lines) > 0 {
		indented := strings.HasPrefix(lines[0], " ")
		n := 1
		for n < len(lines) && strings.HasPrefix(lines[n], " ") == indented {
			n++
		}
		b := block{kind: text, lines: lines[:n]}
		if indented {
			b.kind = pre
			if items, ok := parseList(lines[:n]); ok && lists {
				b = block{kind: list, items: items}
			}
		}
		out = append(out, b)
		lines = lines[n:]
	}
	return out
}

var itemLine = regexp.MustCompile(`^  (\S+)( {2,})(\S.*)$`)

// parseList reads lines of the form "  term  text", continued by lines
// indented to the text.
func parseList(lines []string) ([]item, bool) {
	var items []item
	col := 0
	for _, l := range lines {
		if m := itemLine.FindStringSubmatch(l); m != nil {
			items = append(items, item{term: m[1], text: m[3]})
			col = 2 + len(m[1]) + len(m[2])
			continue
		}
		if len(items) == 0 || len(l)-len(strings.TrimLeft(l, " ")) < col {
			return nil, false
		}
		items[len(items)-1].text += " " + strings.TrimSpace(l)
	}
	return items, len(items) > 0
}

// parseFlags reads flag.PrintDefaults output.
func parseFlags(s string) []flagDoc {
	var flags []flagDoc
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "  -"):
			head, usage, _ := strings.Cut(l[3:], "\t")
			name, arg, _ := strings.Cut(strings.TrimSpace(head), " ")
			flags = append(flags, flagDoc{name: name, arg: arg, text: usage})
		case strings.HasPrefix(l, "    \t") && len(flags) > 0:
			f := &flags[len(flags)-1]
			f.text = strings.TrimSpace(f.text + " " + strings.TrimPrefix(l, "    \t"))
		}
	}
	return flags
}

// firstSentence returns s up to its first full stop or semicolon, with a
// lower-case first letter, as a manual page's NAME line has it.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "; "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, ".")
	r := []rune(s)
	if len(r) > 1 && unicode.IsUpper(r[0]) && !unicode.IsUpper(r[1]) {
		r[0] = unicode.ToLower(r[0])
	}
	return string(r)
}

// positional returns the names of the arguments that are not flags in the
// first synopsis line, and whether the last repeats (PATH...).
func (p *page) positional() (names []string, repeats bool) {
	if len(p.synopsis) == 0 {
		return nil, false
	}
	fields := strings.Fields(p.synopsis[0])
	for i, f := range fields {
		if i == 0 {
			continue
		}
		// An argument of a flag: "-j N", "[-chunk SIZE]".
		prev := fields[i-1]
		if strings.HasPrefix(strings.TrimPrefix(prev, "["), "-") && !strings.HasSuffix(prev, "]") {
			continue
		}
		w := strings.Trim(f, "[]")
		rep := strings.HasSuffix(w, "...")
		w = strings.TrimSuffix(w, "...")
		if w == "" || strings.ToUpper(w) != w || !unicode.IsLetter(rune(w[0])) {
			continue
		}
		names = append(names, w)
		repeats = rep
	}
	return names, repeats
}

// takesFile reports whether a flag's argument names a file.
func (f flagDoc) takesFile() bool {
	switch f.arg {
	case "file", "path", "dir", "plan":
		return true
	}
	return false
}
