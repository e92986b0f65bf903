//go:build linux

package corpus

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"same/internal/fsimg"
	"strconv"
	"strings"
)

// ErrNotRoot is returned by Images, which loop-mounts filesystems, when the
// process is not root.
var ErrNotRoot = errors.New("needs root to loop-mount disk images")

// Images writes a host with disk images of about size bytes of data under
// dir: loose files under dir/loose and two sparse ext4 images under
// dir/images, each holding copies of about 70% of the loose files (under
// host/, at the same relative paths) and files of its own (under
// only-here/). The data of every file is the same for the same size and
// seed; the image files also hold ext4 metadata (UUIDs, timestamps) that
// differs from run to run.
//
// Images needs root (it returns ErrNotRoot otherwise) and the source
// tree: scripts/fsimg makes each image (installing mkfs.ext4 if need be)
// and loop-mounts it on a temporary directory while it is filled; it is
// unmounted before Images returns, whatever happens.
func Images(dir string, size int64, seed int64) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("disk images: %w", ErrNotRoot)
	}
	t, err := newTree(dir, seed)
	if err != nil {
		return err
	}
	// size = loose + 2 * (0.7 * loose + 0.1 * loose)
	loose := size * 10 / 26
	t.prefix = "loose"
	if err := t.uniqFiles(loose, t.maxFile(loose)); err != nil {
		return fmt.Errorf("disk images: %w", err)
	}
	looseFiles := t.files
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return fmt.Errorf("disk images: %w", err)
	}
	for i := 1; i <= 2; i++ {
		var in []genFile
		var data int64
		for _, f := range looseFiles {
			if t.rng.IntN(10) < 7 {
				in = append(in, f)
				data += f.size
			}
		}
		own := loose / 10
		data += own
		// Room for ext4's metadata and journal, and for rounding.
		imgSize := (data*5/4 + 48<<20 + 1<<20 - 1) &^ (1<<20 - 1)
		img := filepath.Join(dir, "images", fmt.Sprintf("disk%d.img", i))
		err := withImage(img, imgSize, func(mnt string) error {
			it := &tree{root: mnt, rng: t.rng, w: t.w, prefix: "only-here"}
			for _, f := range in {
				rel := filepath.Join("host", strings.TrimPrefix(f.path, "loose"+string(filepath.Separator)))
				if err := it.writeStream(rel, f.seed, f.size); err != nil {
					return err
				}
			}
			return it.uniqFiles(own, it.maxFile(own))
		})
		if err != nil {
			return fmt.Errorf("disk image %s: %w", img, err)
		}
	}
	return nil
}

// withImage makes a sparse ext4 image of size bytes at img and mounts it
// on a temporary directory, both with scripts/fsimg, calls fill with the
// mountpoint, and unmounts it, whatever fill returns.
func withImage(img string, size int64, fill func(mnt string) error) (err error) {
	script, err := fsimg.Script()
	if err != nil {
		return err
	}
	mnt, err := os.MkdirTemp("", "corpus-mnt-")
	if err != nil {
		return err
	}
	if out, err := exec.Command(script, "mount", "ext4", strconv.FormatInt(size, 10), img, mnt).CombinedOutput(); err != nil {
		os.Remove(mnt)
		return fmt.Errorf("fsimg mount: %v: %s", err, bytes.TrimSpace(out))
	}
	defer func() {
		if out, uerr := exec.Command(script, "umount", mnt, img).CombinedOutput(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("fsimg umount: %v: %s", uerr, bytes.TrimSpace(out)))
			return // leave the directory: something may still be there
		}
		os.Remove(mnt)
	}()
	return fill(mnt)
}
