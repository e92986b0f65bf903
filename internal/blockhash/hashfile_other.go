//go:build !linux

package blockhash

import (
	"context"
	"errors"
	"os"
)

// HashFile hashes the first size bytes of f and appends their Sums to sums,
// less the zero blocks at its end (see the Linux version). Here it reads f
// to its end; the caller's second fstat tells whether it changed
// meanwhile.
func (h *Reader) HashFile(ctx context.Context, f *os.File, size int64, sums []byte) ([]byte, int64, error) {
	base := len(sums)
	sums, n, err := h.Hash(f, sums)
	if h.Progress != nil {
		h.Progress(n, 0)
	}
	return trimZero(sums, base), n, err
}

// ErrShrunk says a file became shorter while it was hashed.
var ErrShrunk = errors.New("file shrank while being read")
