package dedupe

// SetAfterCopy makes Rewrite call f between the copy and the swap.
func SetAfterCopy(f func()) { afterCopy = f }
