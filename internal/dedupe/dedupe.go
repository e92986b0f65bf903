package dedupe

import (
	"errors"
	"fmt"
	"os"

	"same/internal/plan"
)

// DefaultChunk is the number of bytes deduped per call by default. The
// kernel locks both files for the duration of a call; 16 MiB keeps that
// short while amortising the call's cost.
const DefaultChunk = 16 << 20

// MaxDests is the kernel's limit on destinations per call.
const MaxDests = plan.MaxDests

// ErrStale matches a *StaleError.
var ErrStale = errors.New("stale")

// ErrNotRegular matches the error Open returns for anything but a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// ErrUnsupported is returned on platforms without FIDEDUPERANGE.
var ErrUnsupported = errors.New("dedupe is not supported on this platform")

// StaleError says that a file is not the one the plan was made for.
type StaleError struct {
	Field     string // "fs", "subvol", "dev", "ino", "size" or "mtime"
	Got, Want string // as the plan writes them (mtime: date and ns)
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("stale: %s %s, plan says %s", e.Field, e.Got, e.Want)
}

// Is reports whether target is ErrStale.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// notRegular says what a path is instead of a regular file, e.g.
// "is a directory".
type notRegular string

func (e notRegular) Error() string        { return string(e) }
func (e notRegular) Is(target error) bool { return target == ErrNotRegular }

// Dest is one destination range of a Range call.
type Dest struct {
	File *os.File
	Off  int64
}

// Outcome is what became of one destination.
type Outcome struct {
	// Status is plan.DstDeduped, plan.DstDiffers, plan.DstError or
	// plan.DstSkipped.
	Status plan.Status
	// Bytes deduped, counted from the start of the range, also when the
	// destination stopped early.
	Bytes int64
	// Err explains DstError and DstDiffers. An error from the kernel wraps
	// its syscall.Errno (see ErrnoName).
	Err error
}

// ErrDiffers is the error of a destination whose bytes differ.
var ErrDiffers = errors.New("contents differ from the source")
