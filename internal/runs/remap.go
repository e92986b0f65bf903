package runs

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/walk"
)

// ErrChanged marks a file whose identity is no longer the one hashed.
var ErrChanged = errors.New("changed since it was hashed (run hashfile again)")

// remap replaces the recorded extents of every involved file with its
// extents as they are now. Deduplication changes a file's extents
// but not its identity, so the index cannot know what applysame has shared
// since; mapping again (FIEMAP: no data is read) is what keeps a re-run
// from planning it again. Files changed or gone since they were hashed are
// marked stale and reported. It returns how many were.
func remap(files []file, involved []bool, warn func(string, error)) int {
	work := make(chan int)
	var mu sync.Mutex // guards warn and stale
	stale := 0
	var wg sync.WaitGroup
	for range max(2, runtime.NumCPU()) {
		wg.Go(func() {
			for i := range work {
				f := &files[i]
				ext, err := mapNow(f)
				if err != nil {
					f.stale = true
					mu.Lock()
					stale++
					if warn != nil {
						warn(f.path, err)
					}
					mu.Unlock()
					continue
				}
				f.extents = ext
			}
		})
	}
	for i, ok := range involved {
		if ok {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	return stale
}

// mapNow returns f's extents, if f is still the file that was hashed.
func mapNow(f *file) ([]fiemap.Extent, error) {
	h, err := os.OpenFile(f.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: f.path, Err: err}
	}
	id := walk.FromStat(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || id.Dev != f.dev || id.Ino != f.ino || id.Size != f.size || id.Mtime != f.mtime {
		return nil, fmt.Errorf("%s: %w", f.path, ErrChanged)
	}
	ext, err := fiemap.Map(h)
	if errors.Is(err, fiemap.ErrUnsupported) {
		return f.extents, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return ext, nil
}
