// Package blockhash hashes files in fixed-size blocks with SHA-256.
//
// # Data model
//
// A file of size S hashed with block size B has ceil(S/B) blocks; the last
// may be partial. Each block is stored as a Sum: the first 8 bytes of its
// SHA-256 (a partial block is hashed over its bytes alone). An all-zero
// block, which holds nothing worth sharing, is stored as the zero Sum
// without hashing.
//
// Eight bytes are enough: the index only proposes candidates, and the
// kernel compares the bytes under lock before it shares anything, so a
// false match costs one "differs" result, never data. Among 10^9 distinct
// blocks the chance of any such collision is about 3%; among 10^8, 0.03%.
//
// SHA-256 comes from github.com/minio/sha256-simd, which uses the SHA-NI
// instructions where the CPU has them. Where the CPU has AVX-512, a
// Reader hashes the full non-zero blocks of each buffer 16 at once, one
// in each lane of the wide registers (sha256-simd's 16-lane code, reached
// directly: its own way in is a server of goroutines built for long
// streams), when a timing at the first Reader finds that faster than one
// block after another; the Sums are the same. Path names the code in use.
package blockhash
