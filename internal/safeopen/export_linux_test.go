package safeopen

// UseOpenat2 makes Lookup use openat2 (true) or walk the path one
// component at a time (false), and returns a function that restores it.
func UseOpenat2(use bool) (restore func()) {
	old := noOpenat2.Load()
	noOpenat2.Store(!use)
	return func() { noOpenat2.Store(old) }
}

// WithoutProc makes Open behave as without /proc mounted, and returns a
// function that restores it.
func WithoutProc() (restore func()) {
	old := procFD
	procFD = "/nonexistent/proc/self/fd/"
	return func() { procFD = old }
}
