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
package cli
