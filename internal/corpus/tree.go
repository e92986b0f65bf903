//go:build linux

package corpus

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// A genFile is a generated file whose data is one stream from block 0:
// it can be written again, or in part, without reading it.
type genFile struct {
	path string // relative to the tree's root
	seed uint64
	size int64
}

// tree writes generated files under root, drawing every choice from rng.
type tree struct {
	root   string
	prefix string // top directory of new files
	rng    *rand.Rand
	w      *writer
	dirs   []string  // directories made so far, relative to root
	files  []genFile // unique files: sources of copies and runs
	small  []genFile // small files: sources of small copies
	seq    int
}

func newTree(dir string, seed int64) (*tree, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &tree{
		root: dir,
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x636f72707573)), // "corpus"
		w:    newWriter(),
	}, nil
}

// maxFile is the largest generated file for a tree or part of size bytes.
func (t *tree) maxFile(size int64) int64 {
	return min(max(size/10, 64<<10), 64<<20)
}

// fileSize draws a size between 4 KiB and limit, log-uniform (so there are
// many small files and a few big ones), block-aligned half of the time.
func (t *tree) fileSize(limit int64) int64 {
	hi := 12
	for int64(1)<<(hi+1) <= limit {
		hi++
	}
	e := 12 + t.rng.IntN(hi-12+1)
	n := int64(1)<<e + t.rng.Int64N(int64(1)<<e)
	n = min(n, limit)
	if t.rng.IntN(2) == 0 {
		n = max(n&^(BlockSize-1), BlockSize)
	}
	return n
}

// newPath returns a fresh relative file path for a file of the given kind,
// in a directory that is sometimes new and nested in an existing one.
func (t *tree) newPath(kind string) (string, error) {
	if len(t.dirs) == 0 || t.rng.IntN(6) == 0 {
		parent := t.prefix
		if len(t.dirs) > 0 && t.rng.IntN(3) > 0 {
			parent = t.dirs[t.rng.IntN(len(t.dirs))]
		}
		if strings.Count(parent, string(filepath.Separator)) >= 5 {
			parent = t.prefix
		}
		d := filepath.Join(parent, fmt.Sprintf("d%03d", len(t.dirs)))
		if err := os.MkdirAll(filepath.Join(t.root, d), 0o755); err != nil {
			return "", err
		}
		t.dirs = append(t.dirs, d)
	}
	t.seq++
	d := t.dirs[t.rng.IntN(len(t.dirs))]
	return filepath.Join(d, fmt.Sprintf("%s-%05d", kind, t.seq)), nil
}

// writeStream writes a file of size bytes of stream seed at rel.
func (t *tree) writeStream(rel string, seed uint64, size int64) error {
	if err := os.MkdirAll(filepath.Dir(filepath.Join(t.root, rel)), 0o755); err != nil {
		return err
	}
	if err := t.w.create(filepath.Join(t.root, rel)); err != nil {
		return err
	}
	t.w.data(seed, 0, size)
	return t.w.close()
}
