package main

import (
	"reflect"
	"strings"
	"testing"
)

const sampleHelp = `Usage: tool [flags] PATH...
       other | tool -

Does one thing well. And more.

Tool reads each PATH.
A second line, with a \backslash.

  tool -x a
  .hidden

Examples:
  tool /srv
  tool -db x.db  /srv

Environment:
  TOOL_DB   the index
  LONG_NAME_HERE  a text that goes
                  on

Exit status:
  0    done
  130  interrupted

See also: other(1), jq(1)

Flags:
  -0	NUL-separated
  -db file
    	index file (default: $TOOL_DB)
  -exclude glob
    	leave out glob (repeatable)
`

func TestParse(t *testing.T) {
	p, err := parse("tool", sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tool [flags] PATH...", "other | tool -"}; !reflect.DeepEqual(p.synopsis, want) {
		t.Errorf("synopsis = %q; want %q", p.synopsis, want)
	}
	if want := "does one thing well"; p.summary != want {
		t.Errorf("summary = %q; want %q", p.summary, want)
	}
	if len(p.desc) != 3 || p.desc[2].kind != pre {
		t.Errorf("desc = %+v; want text, text, pre", p.desc)
	}
	var titles []string
	for _, s := range p.sections {
		titles = append(titles, s.title)
	}
	if want := []string{"Examples", "Environment", "Exit status", "See also"}; !reflect.DeepEqual(titles, want) {
		t.Errorf("sections = %q; want %q", titles, want)
	}
	// Examples stay as written even where they hold two spaces.
	if b := p.sections[0].blocks; len(b) != 1 || b[0].kind != pre {
		t.Errorf("Examples = %+v; want one pre block", b)
	}
	wantItems := []item{{"TOOL_DB", "the index"}, {"LONG_NAME_HERE", "a text that goes on"}}
	if b := p.sections[1].blocks; len(b) != 1 || b[0].kind != list || !reflect.DeepEqual(b[0].items, wantItems) {
		t.Errorf("Environment = %+v; want list %v", b, wantItems)
	}
	wantFlags := []flagDoc{{"0", "", "NUL-separated"}, {"db", "file", "index file (default: $TOOL_DB)"}, {"exclude", "glob", "leave out glob (repeatable)"}}
	if !reflect.DeepEqual(p.flags, wantFlags) {
		t.Errorf("flags = %+v; want %+v", p.flags, wantFlags)
	}
	if names, rep := p.positional(); !reflect.DeepEqual(names, []string{"PATH"}) || !rep {
		t.Errorf("positional() = %q, %v; want [PATH], true", names, rep)
	}
}

func TestParseErrors(t *testing.T) {
	for _, help := range []string{"tool does things\n", "Usage: tool\n\nExamples:\n  tool\n"} {
		if _, err := parse("tool", help); err == nil {
			t.Errorf("parse(%q) = nil error; want one", help)
		}
	}
}

func TestPositional(t *testing.T) {
	for _, tt := range []struct {
		synopsis string
		names    []string
		repeats  bool
	}{
		{"applysame [-chunk SIZE] [-dry-run] [-j N] [-stop-on-error] [PLAN]", []string{"PLAN"}, false},
		{"findsame [flags] > plan.jsonl", nil, false},
		{"tool -j N FILE", []string{"FILE"}, false},
	} {
		p := &page{synopsis: []string{tt.synopsis}}
		names, rep := p.positional()
		if !reflect.DeepEqual(names, tt.names) || rep != tt.repeats {
			t.Errorf("positional(%q) = %q, %v; want %q, %v", tt.synopsis, names, rep, tt.names, tt.repeats)
		}
	}
}

func TestMan(t *testing.T) {
	p, err := parse("tool", sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	man := p.man("2026-12-01", "same v1")
	for _, want := range []string{
		".TH \"TOOL\" 1 \"2026-12-01\" \"same v1\" \"User Commands\"\n",
		".SH NAME\ntool \\- does one thing well\n",
		".SH SYNOPSIS\n.nf\n\\fBtool\\fR [flags] PATH...\nother | tool \\-\n.fi\n",
		"A second line, with a \\ebackslash.\n",
		"tool \\-x a\n\\&.hidden\n",
		".SH OPTIONS\n.TP\n\\fB\\-0\\fR\nNUL\\-separated\n.TP\n\\fB\\-db\\fR \\fIfile\\fR\nindex file (default: $TOOL_DB)\n",
		".SH \"ENVIRONMENT\"\n.TP\n.B \"TOOL_DB\"\nthe index\n",
		".SH \"SEE ALSO\"\n\\fBother\\fR(1), \\fBjq\\fR(1)\n",
	} {
		if !strings.Contains(man, want) {
			t.Errorf("man page lacks %q:\n%s", want, man)
		}
	}
	// OPTIONS comes right after DESCRIPTION, the help's sections after it.
	if d, o, e := strings.Index(man, ".SH DESCRIPTION"), strings.Index(man, ".SH OPTIONS"), strings.Index(man, ".SH \"EXAMPLES\""); !(d < o && o < e) {
		t.Errorf("sections out of order (DESCRIPTION %d, OPTIONS %d, EXAMPLES %d)", d, o, e)
	}
}

func TestCompletions(t *testing.T) {
	p, err := parse("tool", sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	bash := p.bash()
	for _, want := range []string{
		"\t\tdb)\n\t\t\tcompopt -o filenames", "\t\texclude)\n\t\t\treturn",
		`compgen -W "-0 -db -exclude"`, "complete -F _same_tool tool\n",
	} {
		if !strings.Contains(bash, want) {
			t.Errorf("bash completion lacks %q:\n%s", want, bash)
		}
	}
	zsh := p.zsh()
	for _, want := range []string{
		"#compdef tool\n",
		"\t'(-db --db)'{-db,--db}'[index file]:file:_files' \\\n",
		"\t'*'{-exclude,--exclude}'[leave out glob]:glob: ' \\\n",
		"\t'*:path:_files'\n",
	} {
		if !strings.Contains(zsh, want) {
			t.Errorf("zsh completion lacks %q:\n%s", want, zsh)
		}
	}
}
