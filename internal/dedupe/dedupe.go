package dedupe

import (
	"errors"
	"fmt"
	"os"
)

// DefaultChunk is the number of bytes deduped per call by default. The
// kernel locks both files for the duration of a call; 16 MiB keeps that
// short while amortising the call's cost.
const DefaultChunk = 16 << 20

// MaxDests is the kernel's limit on destinations per call: the argument
// must fit in one 4 KiB page.
const MaxDests = 127

// Status says what became of one destination of Range.
type Status int

// Destination statuses. The zero Status is a destination not finished.
const (
	// Deduped: the whole range now shares the source's storage.
	Deduped Status = iota + 1
	// Differs: the kernel found different bytes (Outcome.Err is
	// ErrDiffers).
	Differs
	// Failed: the kernel refused (Outcome.Err says why).
	Failed
	// Skipped: the context was cancelled before its turn.
	Skipped
)

func (s Status) String() string {
	switch s {
	case Deduped:
		return "deduped"
	case Differs:
		return "differs"
	case Failed:
		return "failed"
	case Skipped:
		return "skipped"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Span is a range of a file.
type Span struct {
	Off, Len int64
}

// ErrStale matches a *StaleError.
var ErrStale = errors.New("stale")

// ErrNotRegular matches the error Open returns for anything but a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// sharingBack marks an error of Rewrite in sharing the copy back into the
// file, rather than in making the copy.
type sharingBack struct{ error }

func (e sharingBack) Unwrap() error { return e.error }

// SharingBack reports whether err, from Rewrite, arose in sharing the copy
// back into the file (in the file's volume), rather than in making the
// copy (in the directory it is made in).
func SharingBack(err error) bool { return errors.As(err, new(sharingBack)) }

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
	Status Status
	// Bytes deduped, counted from the start of the range, also when the
	// destination stopped early.
	Bytes int64
	// Err explains Failed and Differs. An error from the kernel wraps
	// its syscall.Errno (see ErrnoName).
	Err error
}

// ErrDiffers is the error of a destination whose bytes differ.
var ErrDiffers = errors.New("contents differ from the source")
