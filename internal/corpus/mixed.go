//go:build linux

package corpus

import (
	"fmt"
	"path/filepath"
)

// Shares of the requested size that Mixed spends on each kind of file.
// Copies and the runs inside mosaics (about 70% of their bytes) are the
// duplicated content that block deduplication can find: about 40%.
var mixedShares = []struct {
	kind  string
	share float64
}{
	{"uniq", 0.39},
	{"copy", 0.25},
	{"mosaic", 0.20},
	{"sparse", 0.06},
	{"shifted", 0.04},
	{"small", 0.02},
}

// Mixed writes a mixed tree of about size bytes (apparent size) under dir,
// which is created if needed; see the package documentation for its
// content. Existing files of the same names are not overwritten: Mixed
// fails instead. The tree is the same for the same size and seed.
func Mixed(dir string, size int64, seed int64) error {
	t, err := newTree(dir, seed)
	if err != nil {
		return err
	}
	for _, s := range mixedShares {
		budget := int64(float64(size) * s.share)
		var err error
		switch s.kind {
		case "uniq":
			err = t.uniqFiles(budget, t.maxFile(size))
		case "copy":
			err = t.copies(budget)
		case "mosaic":
			err = t.mosaics(budget, t.maxFile(size))
		case "sparse":
			err = t.sparseFiles(budget, t.maxFile(size))
		case "shifted":
			err = t.shiftedFiles(budget)
		case "small":
			err = t.smallFiles(budget)
		}
		if err != nil {
			return fmt.Errorf("mixed tree: %w", err)
		}
	}
	return nil
}

// uniqFiles writes files of unique random data until budget bytes.
func (t *tree) uniqFiles(budget, maxSize int64) error {
	for done := int64(0); done < budget; {
		f := genFile{seed: t.rng.Uint64(), size: min(t.fileSize(maxSize), max(budget-done, 1))}
		var err error
		if f.path, err = t.newPath("uniq"); err != nil {
			return err
		}
		if err := t.writeStream(f.path, f.seed, f.size); err != nil {
			return err
		}
		t.files = append(t.files, f)
		done += f.size
	}
	return nil
}

// copies writes whole-file copies of unique files until budget bytes.
func (t *tree) copies(budget int64) error {
	for done := int64(0); done < budget && len(t.files) > 0; {
		// A file much bigger than what is left would overshoot: draw again
		// a few times, then stop.
		src := t.files[t.rng.IntN(len(t.files))]
		for try := 0; src.size > 2*(budget-done) && try < 4; try++ {
			src = t.files[t.rng.IntN(len(t.files))]
		}
		if src.size > 2*(budget-done) {
			break
		}
		path, err := t.newPath("copy")
		if err != nil {
			return err
		}
		if err := t.writeStream(path, src.seed, src.size); err != nil {
			return err
		}
		done += src.size
	}
	return nil
}

// mosaics writes files made of block-aligned runs of unique files, with
// unique filler between them, until budget bytes.
func (t *tree) mosaics(budget, maxSize int64) error {
	for done := int64(0); done < budget && len(t.files) > 0; {
		size := max(min(t.fileSize(maxSize), budget-done), 8*BlockSize)
		path, err := t.newPath("mosaic")
		if err != nil {
			return err
		}
		if err := t.w.create(filepath.Join(t.root, path)); err != nil {
			return err
		}
		filler, fillBlock := t.rng.Uint64(), int64(0)
		for t.w.off < size {
			n := 1 + t.rng.Int64N(16)
			t.w.data(filler, fillBlock, n*BlockSize)
			fillBlock += n
			src := t.files[t.rng.IntN(len(t.files))]
			blocks := src.size / BlockSize
			if blocks == 0 {
				continue
			}
			n = min(4+t.rng.Int64N(61), blocks)
			first := t.rng.Int64N(blocks - n + 1)
			t.w.data(src.seed, first, n*BlockSize)
		}
		if t.rng.IntN(2) == 0 {
			// End mid-block, on filler.
			t.w.data(filler, fillBlock, 1+t.rng.Int64N(BlockSize-1))
		}
		done += t.w.off
		if err := t.w.close(); err != nil {
			return err
		}
	}
	return nil
}

// sparseFiles writes files, like disk images, of data runs (unique, or
// taken from unique files), holes and explicit zero blocks, until budget
// bytes.
func (t *tree) sparseFiles(budget, maxSize int64) error {
	for done := int64(0); done < budget; {
		size := max(min(t.fileSize(maxSize), budget-done), 16*BlockSize)
		path, err := t.newPath("sparse")
		if err != nil {
			return err
		}
		if err := t.w.create(filepath.Join(t.root, path)); err != nil {
			return err
		}
		own, ownBlock := t.rng.Uint64(), int64(0)
		for t.w.off < size {
			n := 1 + t.rng.Int64N(32)
			switch t.rng.IntN(4) {
			case 0:
				t.w.hole(n * BlockSize)
			case 1:
				t.w.zeros(n * BlockSize)
			case 2:
				if len(t.files) > 0 {
					src := t.files[t.rng.IntN(len(t.files))]
					if blocks := src.size / BlockSize; blocks > 0 {
						n = min(n, blocks)
						t.w.data(src.seed, t.rng.Int64N(blocks-n+1), n*BlockSize)
						break
					}
				}
				fallthrough
			default:
				t.w.data(own, ownBlock, n*BlockSize)
				ownBlock += n
			}
		}
		if t.rng.IntN(2) == 0 {
			t.w.hole((1 + t.rng.Int64N(64)) * BlockSize) // a trailing hole
		}
		done += t.w.off
		if err := t.w.close(); err != nil {
			return err
		}
	}
	return nil
}

// shiftedFiles writes files holding runs of unique files at offsets that
// are not block-aligned (behind a header of odd length), which block
// deduplication cannot find, until budget bytes.
func (t *tree) shiftedFiles(budget int64) error {
	for done := int64(0); done < budget && len(t.files) > 0; {
		src := t.files[t.rng.IntN(len(t.files))]
		blocks := src.size / BlockSize
		if blocks == 0 {
			if src = t.files[0]; src.size < BlockSize {
				break
			}
			blocks = src.size / BlockSize
		}
		path, err := t.newPath("shifted")
		if err != nil {
			return err
		}
		if err := t.w.create(filepath.Join(t.root, path)); err != nil {
			return err
		}
		own := t.rng.Uint64()
		t.w.data(own, 0, 1+t.rng.Int64N(BlockSize-1))
		n := min(blocks, max((budget-done)/BlockSize, 1), 4096)
		t.w.data(src.seed, t.rng.Int64N(blocks-n+1), n*BlockSize)
		t.w.data(own, 1, 1+t.rng.Int64N(4*BlockSize))
		done += t.w.off
		if err := t.w.close(); err != nil {
			return err
		}
	}
	return nil
}

// smallFiles writes files of less than a block, a third of them copies of
// earlier ones, until budget bytes (at least 20 files, at most 2000).
func (t *tree) smallFiles(budget int64) error {
	count := min(max(budget/2048, 20), 2000)
	for range count {
		path, err := t.newPath("small")
		if err != nil {
			return err
		}
		f := genFile{path: path, seed: t.rng.Uint64(), size: 1 + t.rng.Int64N(BlockSize-1)}
		if len(t.small) > 0 && t.rng.IntN(3) == 0 {
			src := t.small[t.rng.IntN(len(t.small))]
			f.seed, f.size = src.seed, src.size
		} else {
			t.small = append(t.small, f)
		}
		if err := t.writeStream(path, f.seed, f.size); err != nil {
			return err
		}
	}
	return nil
}
