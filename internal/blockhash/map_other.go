//go:build !linux

package blockhash

import (
	"errors"
	"os"
)

// HashFile hashes the first size bytes of f and appends their Sums to sums.
// Here it reads f to its end; the caller's second fstat tells whether it
// changed meanwhile.
func (h *Reader) HashFile(f *os.File, size int64, sums []byte) ([]byte, int64, error) {
	return h.Hash(f, sums)
}

// ErrShrunk says a file became shorter while it was hashed.
var ErrShrunk = errors.New("file shrank while being read")
