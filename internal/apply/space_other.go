//go:build !linux

package apply

import (
	"os"

	"same/internal/dedupe"
)

// space is not known here; rewrites are not supported either.
var space = func(f *os.File) (avail, size int64, err error) { return 0, 0, dedupe.ErrUnsupported }
