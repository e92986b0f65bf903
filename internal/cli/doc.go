// Package cli holds what the three commands share at their edges: the exit
// statuses and the errors that select them, byte sizes as flags take and
// print them, and whether an output is a terminal.
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
