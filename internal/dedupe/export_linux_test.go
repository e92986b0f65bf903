package dedupe

// SetAfterCopy makes Rewrite call f between the copy and the swap.
func SetAfterCopy(f func()) { afterCopy = f }

// SetReadFault makes Rewrite call f before each read of the file it
// copies; an error f returns is the read's.
func SetReadFault(f func(off int64) error) { readFault = f }
