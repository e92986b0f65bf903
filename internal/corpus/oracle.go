//go:build linux

package corpus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/minio/sha256-simd"
)

// Oracle is the fixed-block oracle of a tree: what a deduplicator sharing
// identical aligned blocks could free at best.
type Oracle struct {
	Files    int64 `json:"files"`    // regular files read, each inode once
	Blocks   int64 `json:"blocks"`   // blocks, a partial last block included
	NonZero  int64 `json:"non_zero"` // blocks that are not all zeros
	Distinct int64 `json:"distinct"` // distinct non-zero blocks
	Ceiling  int64 `json:"ceiling"`  // (NonZero - Distinct) * block size, in bytes
}

// Ceiling computes the oracle of the regular files under dir with blocks
// of bs bytes. It opens nothing but regular files, follows no symbolic
// link, and reads each inode once however many hard links it has. A
// partial last block is a block of its own length: it matches only
// another one of the same length and content. Holes read as zeros. Any
// error stops the count: a measurement is exact or it is nothing.
func Ceiling(dir string, bs int) (Oracle, error) {
	if bs <= 0 {
		return Oracle{}, fmt.Errorf("oracle: bad block size %d", bs)
	}
	type inode struct{ dev, ino uint64 }
	seen := make(map[inode]bool)
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode number", path)
		}
		id := inode{uint64(st.Dev), st.Ino}
		if !seen[id] {
			seen[id] = true
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return Oracle{}, fmt.Errorf("oracle: %w", err)
	}

	// Workers hash files; this goroutine counts their blocks.
	type batch struct {
		zeros  int64
		hashes [][32]byte
		err    error
	}
	work := make(chan string)
	results := make(chan batch, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range work {
				err := hashFile(path, bs, func(zeros int64, hashes [][32]byte) bool {
					select {
					case results <- batch{zeros: zeros, hashes: hashes}:
						return true
					case <-stop:
						return false
					}
				})
				if err != nil {
					select {
					case results <- batch{err: err}:
					case <-stop:
					}
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, p := range paths {
			select {
			case work <- p:
			case <-stop:
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	o := Oracle{Files: int64(len(paths))}
	distinct := make(map[[32]byte]struct{})
	for b := range results {
		if b.err != nil {
			if err == nil {
				err = b.err
				close(stop)
			}
			continue
		}
		o.Blocks += b.zeros + int64(len(b.hashes))
		o.NonZero += int64(len(b.hashes))
		for _, h := range b.hashes {
			distinct[h] = struct{}{}
		}
	}
	if err != nil {
		return Oracle{}, fmt.Errorf("oracle: %w", err)
	}
	o.Distinct = int64(len(distinct))
	o.Ceiling = (o.NonZero - o.Distinct) * int64(bs)
	return o, nil
}

// hashFile reads the regular file at path in blocks of bs bytes and passes
// emit, batch by batch, the number of zero blocks and the SHA-256 of the
// others. It stops when emit returns false.
func hashFile(path string, bs int, emit func(zeros int64, hashes [][32]byte) bool) error {
	// O_NOFOLLOW and O_NONBLOCK: should path have become a symlink or a
	// FIFO since the walk, the open fails or does not hang, and the type
	// check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file any more", path)
	}
	per := max(1, (1<<20)/bs)
	buf := make([]byte, per*bs)
	zero := make([]byte, bs)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			var zeros int64
			hashes := make([][32]byte, 0, (n+bs-1)/bs)
			for off := 0; off < n; off += bs {
				b := buf[off:min(off+bs, n)]
				if bytes.Equal(b, zero[:len(b)]) {
					zeros++
					continue
				}
				hashes = append(hashes, sha256.Sum256(b))
			}
			if !emit(zeros, hashes) {
				return nil
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		default:
			return err // an *fs.PathError naming the file
		}
	}
}
