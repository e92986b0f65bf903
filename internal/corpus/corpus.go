//go:build linux

package corpus

// BlockSize is the block size that generated data is laid out in: runs
// shared between files start at multiples of it.
const BlockSize = 4096
