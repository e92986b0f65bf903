package main

import (
	"fmt"
	"strings"
)

// bash renders p as a bash completion: flags after a dash, files for flags
// that take one, and for the command's arguments when it takes any.
func (p *page) bash() string {
	fn := "_same_" + strings.ReplaceAll(p.name, "-", "_")
	var names, files, values []string
	for _, f := range p.flags {
		names = append(names, "-"+f.name)
		switch {
		case f.takesFile():
			files = append(files, f.name)
		case f.arg != "":
			values = append(values, f.name)
		}
	}
	args, _ := p.positional()
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s; made by scripts/gendoc from '%s -help'.\n", p.name, p.name)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev= flag\n")
	b.WriteString("\t((COMP_CWORD < 1)) || prev=${COMP_WORDS[COMP_CWORD-1]}\n")
	b.WriteString("\t# -flag=value: bash splits the word at the \"=\".\n")
	b.WriteString("\tif [[ $prev == = ]] && ((COMP_CWORD >= 2)); then\n\t\tprev=${COMP_WORDS[COMP_CWORD-2]}\n\telif [[ $cur == = ]]; then\n\t\tprev=${COMP_WORDS[COMP_CWORD-1]} cur=\n\tfi\n")
	b.WriteString("\tflag=${prev#-}\n\tflag=${flag#-}\n")
	b.WriteString("\tCOMPREPLY=()\n")
	b.WriteString("\tif [[ $prev == -* ]]; then\n\t\tcase $flag in\n")
	if len(files) > 0 {
		fmt.Fprintf(&b, "\t\t%s)\n\t\t\tcompopt -o filenames 2>/dev/null\n\t\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\t\t\treturn\n\t\t\t;;\n", strings.Join(files, " | "))
	}
	if len(values) > 0 {
		fmt.Fprintf(&b, "\t\t%s)\n\t\t\treturn # a value: nothing to offer\n\t\t\t;;\n", strings.Join(values, " | "))
	}
	b.WriteString("\t\tesac\n\tfi\n")
	fmt.Fprintf(&b, "\tif [[ $cur == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(names, " "))
	if len(args) > 0 {
		fmt.Fprintf(&b, "\t# %s\n\tcompopt -o filenames 2>/dev/null\n\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n", strings.Join(args, ", "))
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn, p.name)
	return b.String()
}

// zsh renders p as a zsh completion function for _arguments.
func (p *page) zsh() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %s\n# zsh completion for %s; made by scripts/gendoc from '%s -help'.\n\n", p.name, p.name, p.name)
	b.WriteString("_arguments -S \\\n")
	for _, f := range p.flags {
		// Each flag may be written with one dash or two.
		both := "{-" + f.name + ",--" + f.name + "}"
		spec := "'(-" + f.name + " --" + f.name + ")'" + both
		if strings.Contains(f.text, "(repeatable)") {
			spec = "'*'" + both
		}
		spec += "'[" + zshEsc(brief(f.text)) + "]"
		switch {
		case f.takesFile():
			spec += ":" + f.arg + ":_files"
		case f.arg != "":
			spec += ":" + f.arg + ": "
		}
		b.WriteString("\t" + spec + "' \\\n")
	}
	args, repeats := p.positional()
	for i, a := range args {
		spec := fmt.Sprintf("'%d:%s:_files'", i+1, strings.ToLower(a))
		if i == len(args)-1 && repeats {
			spec = fmt.Sprintf("'*:%s:_files'", strings.ToLower(a))
		} else if strings.Contains(p.synopsis[0], "["+a+"]") {
			spec = fmt.Sprintf("'::%s:_files'", strings.ToLower(a))
		}
		b.WriteString("\t" + spec + " \\\n")
	}
	return strings.TrimSuffix(b.String(), " \\\n") + "\n"
}

// brief is a flag's text up to its first clause, for a one-line hint
// (zsh shows what follows a colon in the brackets badly).
func brief(s string) string {
	if i := strings.IndexAny(s, ";(:"); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// zshEsc escapes a description inside '...[...]'.
func zshEsc(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`, `:`, `\:`).Replace(s)
	return strings.ReplaceAll(s, "'", `'\''`)
}
