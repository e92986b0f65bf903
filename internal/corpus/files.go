//go:build linux

package corpus

import (
	"fmt"
	"path/filepath"
)

// Files writes count small files of 1 KiB to maxSize bytes (at least
// 2 KiB), 1000 to a directory, a fifth of them copies of another: a tree
// for measuring per-file costs.
func Files(dir string, count int, maxSize, seed int64) error {
	maxSize = max(maxSize, 2048)
	t, err := newTree(dir, seed)
	if err != nil {
		return err
	}
	var made []genFile
	for i := range count {
		f := genFile{path: filepath.Join(fmt.Sprintf("d%04d", i/1000), fmt.Sprintf("f%06d", i)), seed: t.rng.Uint64(), size: 1024 + t.rng.Int64N(maxSize-1024+1)}
		if len(made) > 0 && t.rng.IntN(5) == 0 {
			src := made[t.rng.IntN(len(made))]
			f.seed, f.size = src.seed, src.size
		} else if len(made) < 10000 {
			made = append(made, f)
		}
		if err := t.writeStream(f.path, f.seed, f.size); err != nil {
			return err
		}
	}
	return nil
}
