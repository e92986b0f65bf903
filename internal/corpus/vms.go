//go:build linux

package corpus

import (
	"fmt"
	"os"
	"path/filepath"
)

// VMs writes the disks of three virtual machines cloned from one
// template, each written at random since, as a guest's writes reach its
// disk: under dir/vms, three image files of about size/3 bytes. Each is
// the template's blocks (one stream), written whole, then overwritten at
// random places, 4 KiB at a time with data of its own and an fsync every
// 256 writes: as many writes as 5% of its blocks for vm1.img, 20% for
// vm2.img and 60% for vm3.img (some places twice). So each overwritten
// block is an extent of its own on btrfs (vm3.img holds about a hundred
// thousand at 2 GiB), and the blocks the images still share with the
// template lie in runs of a few blocks to a few dozen between them:
// deduplication that works extent by extent and call by call pays for
// each.
func VMs(dir string, size, seed int64) error {
	t, err := newTree(dir, seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "vms"), 0o755); err != nil {
		return fmt.Errorf("vms: %w", err)
	}
	blocks := max(size/3/BlockSize, 16)
	template := t.rng.Uint64()
	buf := make([]byte, BlockSize)
	for i, percent := range []int64{5, 20, 60} {
		i++
		path := filepath.Join(dir, "vms", fmt.Sprintf("vm%d.img", i))
		if err := t.w.create(path); err != nil {
			return fmt.Errorf("vms: %w", err)
		}
		t.w.data(template, 0, blocks*BlockSize)
		if err := t.w.close(); err != nil {
			return fmt.Errorf("vms: write %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("vms: %w", err)
		}
		own := t.rng.Uint64()
		writes := blocks * percent / 100
		for k := range writes {
			fillBlock(buf, own, uint64(k))
			_, err = f.WriteAt(buf, t.rng.Int64N(blocks)*BlockSize)
			if err == nil && (k%256 == 255 || k == writes-1) {
				err = f.Sync()
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("vms: write %s: %w", path, err)
			}
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("vms: %w", err)
		}
	}
	return nil
}
