// Package fsimg finds scripts/fsimg, which makes, mounts and unmounts the
// sparse filesystem images that integration tests and generated corpora
// live on, in the source tree.
//
// # Where
//
// The script is looked for in the directory holding go.mod, searched
// upwards first from the working directory (a test's package directory,
// or wherever a script was run from) and then from this package's source,
// so that a binary built from the tree finds it from anywhere.
package fsimg

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Script returns the path of scripts/fsimg in the source tree.
func Script() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, "scripts", "fsimg")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("scripts/fsimg, which makes the images, not found above %q: run from the source tree", starts)
}
