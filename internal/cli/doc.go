// Package cli holds what the three commands share at their edges: the exit
// statuses and the errors that select them, byte sizes as flags take and
// print them, the help text's list of flags, the version a build reports,
// and whether an output is a terminal.
//
// # Help and manual pages
//
// Each command's -help is the one source of its manual page and shell
// completions (scripts/gendoc makes them at install time): a "Usage:"
// synopsis, a description whose first sentence names what the command
// does, sections that start with a line "Heading:" (Examples, Environment,
// Files, Exit status, See also), indented lines kept as written, and the
// flags as PrintUsage lists them. Defaults that depend on the machine are
// described in the flag's text, "(default: one per CPU)", not printed.
//
// # Version
//
// -version prints the module version of a tagged build, else the commit
// the binary was built from (go build records it), "+modified" when the
// tree had changes, and the commit's time.
//
// # Exit status
//
//	0    all done
//	1    fatal error
//	2    usage error
//	3    partial: some items failed, were stale or differed
//	130  interrupted (SIGINT or SIGTERM); the work so far is kept
//
// # Signals
//
// WithSignals makes the context a command runs with: the first SIGINT or
// SIGTERM cancels it, and the command stops within about a second, keeping
// its work so far (exit status 130); a second one ends the process at once.
//
// # Progress
//
// Progress draws one line on standard error while a long phase runs, when
// standard error is a terminal, and nothing otherwise: what is done, of
// what total, the percentage, the rate and the time left, as Format
// writes them. A total marked "~" is an estimate.
package cli
