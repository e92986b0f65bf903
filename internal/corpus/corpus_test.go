//go:build linux

package corpus

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// treeSums describes every entry under dir, keyed by relative path: the
// hex SHA-256 of a regular file, the target of a symbolic link, the type
// of anything else.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := make(map[string]string)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
			sums[rel] = hex.EncodeToString(h.Sum(nil))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			sums[rel] = "-> " + target
		default:
			sums[rel] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("treeSums(%s): %v", dir, err)
	}
	return sums
}

// treeSize returns the number of regular files under dir and the sum of
// their sizes.
func treeSize(t *testing.T, dir string) (files, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("treeSize(%s): %v", dir, err)
	}
	return files, bytes
}

func TestMixedDeterministic(t *testing.T) {
	gen := func(seed int64) map[string]string {
		dir := t.TempDir()
		if err := Mixed(dir, 8*mib, seed); err != nil {
			t.Fatalf("Mixed(%d): %v", seed, err)
		}
		if err := Special(dir); err != nil && !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Special: %v", err)
		}
		return treeSums(t, dir)
	}
	a, b, c := gen(1), gen(1), gen(2)
	if len(a) < 100 {
		t.Errorf("Mixed(8 MiB) made %d entries; want at least 100", len(a))
	}
	for path, sum := range a {
		if b[path] != sum {
			t.Errorf("seed 1, second run: %s = %q; want %q", path, b[path], sum)
		}
	}
	for path := range b {
		if _, ok := a[path]; !ok {
			t.Errorf("seed 1, second run: extra entry %s", path)
		}
	}
	if maps.Equal(a, c) {
		t.Errorf("seeds 1 and 2 made the same tree; want different trees")
	}
}

func TestMixedContent(t *testing.T) {
	const size = 32 * mib
	dir := t.TempDir()
	if err := Mixed(dir, size, 7); err != nil {
		t.Fatalf("Mixed: %v", err)
	}
	files, bytes := treeSize(t, dir)
	if bytes < size*85/100 || bytes > size*120/100 {
		t.Errorf("Mixed(%d) wrote %d bytes; want about %d", size, bytes, size)
	}
	o, err := Ceiling(dir, BlockSize)
	if err != nil {
		t.Fatalf("Ceiling: %v", err)
	}
	t.Logf("%d files, %d bytes: %+v (%.1f%%)", files, bytes, o, 100*float64(o.Ceiling)/float64(bytes))
	if o.Files != files {
		t.Errorf("Ceiling().Files = %d; want %d", o.Files, files)
	}
	if lo, hi := bytes*30/100, bytes*50/100; o.Ceiling < lo || o.Ceiling > hi {
		t.Errorf("Ceiling().Ceiling = %d; want between %d and %d (30%%-50%% of %d)", o.Ceiling, lo, hi, bytes)
	}
	if o.NonZero == o.Blocks {
		t.Errorf("Ceiling() = %+v: no zero blocks; want holes and zero blocks", o)
	}

	// Each kind of file is there, and the tree is nested.
	kinds := map[string]int{}
	var unaligned, sparse, deep int
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		kind, _, _ := strings.Cut(d.Name(), "-")
		kinds[kind]++
		fi, _ := d.Info()
		if fi.Size()%BlockSize != 0 {
			unaligned++
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 < fi.Size()-BlockSize {
			sparse++
		}
		rel, _ := filepath.Rel(dir, path)
		if strings.Count(rel, string(filepath.Separator)) >= 2 {
			deep++
		}
		return nil
	})
	for _, kind := range []string{"uniq", "copy", "mosaic", "sparse", "shifted", "small"} {
		if kinds[kind] == 0 {
			t.Errorf("no %q files in %v; want some", kind, kinds)
		}
	}
	if kinds["small"] < 20 {
		t.Errorf("%d small files; want at least 20", kinds["small"])
	}
	if unaligned == 0 || sparse == 0 || deep == 0 {
		t.Errorf("files not block-aligned %d, sparse %d, two or more levels deep %d; want some of each", unaligned, sparse, deep)
	}
}

func TestCeiling(t *testing.T) {
	block := func(seed uint64) []byte {
		b := make([]byte, BlockSize)
		fillBlock(b, seed, 0)
		return b
	}
	a, b, c := block(1), block(2), block(3)
	zero := make([]byte, BlockSize)
	tail := a[:100] // a partial block: not the same as a
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	fa := write("a", cat(a, b, c))        // 3 blocks, 3 non-zero
	write("sub/b", cat(a, zero, b, tail)) // 4 blocks, 3 non-zero
	write("sub/deeper/c", cat(tail))      // 1 block, a copy of b's tail
	write("sub/e", cat(b[:BlockSize-1]))  // 1 block, distinct
	write("empty", nil)                   // no block
	fd := write("d", nil)                 // 2 blocks of hole, then c
	f, err := os.OpenFile(fd, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(c, 2*BlockSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Neither opened nor counted twice.
	if err := os.Link(fa, filepath.Join(dir, "sub", "hardlink-to-a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fa, filepath.Join(dir, "symlink-to-a")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := Ceiling(dir, BlockSize)
	if err != nil {
		t.Fatalf("Ceiling: %v", err)
	}
	// a b c | a 0 b t | t | b' | - | 0 0 c: non-zero a b c a b t t b' c,
	// distinct a b c t b'.
	want := Oracle{Files: 6, Blocks: 12, NonZero: 9, Distinct: 5, Ceiling: 4 * BlockSize}
	if got != want {
		t.Errorf("Ceiling(%s, %d) = %+v; want %+v", dir, BlockSize, got, want)
	}

	// With 8 KiB blocks: ab c, a0 bt, t, b', -, 00 c: non-zero ab c a0
	// bt t b' c, distinct ab c a0 bt t b'.
	want = Oracle{Files: 6, Blocks: 8, NonZero: 7, Distinct: 6, Ceiling: 2 * BlockSize}
	if got, err := Ceiling(dir, 2*BlockSize); err != nil || got != want {
		t.Errorf("Ceiling(%s, %d) = %+v, %v; want %+v, nil", dir, 2*BlockSize, got, err, want)
	}

	if _, err := Ceiling(dir, 0); err == nil {
		t.Errorf("Ceiling(%s, 0) = nil error; want an error", dir)
	}
	if _, err := Ceiling(filepath.Join(dir, "missing"), BlockSize); err == nil {
		t.Errorf("Ceiling(missing dir) = nil error; want an error")
	}
}

func TestSpecial(t *testing.T) {
	dir := t.TempDir()
	if err := Mixed(dir, 4*mib, 3); err != nil {
		t.Fatalf("Mixed: %v", err)
	}
	big, err := largestFile(dir)
	if err != nil || big == "" {
		t.Fatalf("largestFile = %q, %v; want a file", big, err)
	}
	before, err := Ceiling(dir, BlockSize)
	if err != nil {
		t.Fatalf("Ceiling: %v", err)
	}

	noDevice := false
	if err := Special(dir); err != nil {
		if !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Special: %v", err)
		}
		noDevice = true
		t.Logf("no device node: %v", err)
	}
	bigInfo, err := os.Stat(big)
	if err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "special")
	tests := []struct {
		name string
		typ  fs.FileMode
	}{
		{"fifo", fs.ModeNamedPipe},
		{"zero", fs.ModeDevice | fs.ModeCharDevice},
		{"socket", fs.ModeSocket},
		{"link-to-big", fs.ModeSymlink},
		{"link-to-dev-zero", fs.ModeSymlink},
		{"empty", 0},
		{"hardlink-1", 0},
		{"hardlink-2", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(sp, tt.name)
			if tt.name == "zero" && noDevice {
				t.Skip("no CAP_MKNOD: Special made no device node")
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Type(); got != tt.typ {
				t.Errorf("Lstat(%s).Mode().Type() = %v; want %v", path, got, tt.typ)
			}
			switch tt.name {
			case "zero":
				rdev := fi.Sys().(*syscall.Stat_t).Rdev
				if maj, min := unix.Major(rdev), unix.Minor(rdev); maj != 1 || min != 5 {
					t.Errorf("device %s = %d:%d; want 1:5", path, maj, min)
				}
			case "link-to-dev-zero":
				if got, _ := os.Readlink(path); got != "/dev/zero" {
					t.Errorf("Readlink(%s) = %q; want /dev/zero", path, got)
				}
			case "link-to-big", "hardlink-1", "hardlink-2":
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if !os.SameFile(fi, bigInfo) {
					t.Errorf("%s is not %s; want the same file", path, big)
				}
			case "empty":
				if fi.Size() != 0 {
					t.Errorf("size of %s = %d; want 0", path, fi.Size())
				}
			}
		})
	}

	// The oracle opens none of them and counts the big file once: only
	// the empty file is new.
	after, err := Ceiling(dir, BlockSize)
	if err != nil {
		t.Fatalf("Ceiling after Special: %v", err)
	}
	want := before
	want.Files++
	if after != want {
		t.Errorf("Ceiling after Special = %+v; want %+v", after, want)
	}
}

func TestSpecialEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := Special(dir); err != nil && !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Special: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "special", "link-to-big"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 4*mib {
		t.Errorf("size of the big file = %d; want %d", fi.Size(), 4*mib)
	}
}

func TestImages(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("Images needs root to loop-mount ext4 images, and CI=true")
		}
		t.Skip("Images needs root to loop-mount ext4 images")
	}
	if _, err := lookSbin("mkfs.ext4"); err != nil {
		t.Skipf("no mkfs.ext4: %v", err)
	}
	const size = 64 * mib
	dir := t.TempDir()
	if err := Images(dir, size, 1); err != nil {
		t.Fatalf("Images: %v", err)
	}
	for _, img := range []string{"disk1.img", "disk2.img"} {
		path := filepath.Join(dir, "images", img)
		out, err := exec.Command("losetup", "-j", path).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("losetup -j %s = %q, %v; want no loop device", path, out, err)
		}
		mounts, err := os.ReadFile("/proc/self/mounts")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(mounts), "corpus-mnt-") {
			t.Errorf("/proc/self/mounts holds a corpus mount:\n%s", mounts)
		}
		// An ext4 superblock: magic 0xef53 at 1024+56.
		b := make([]byte, 2)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(b, 1024+56)
		f.Close()
		if err != nil || b[0] != 0x53 || b[1] != 0xef {
			t.Errorf("ext4 magic of %s = %x, %v; want 53ef", path, b, err)
		}
	}
	loose, err := Ceiling(filepath.Join(dir, "loose"), BlockSize)
	if err != nil {
		t.Fatalf("Ceiling(loose): %v", err)
	}
	all, err := Ceiling(dir, BlockSize)
	if err != nil {
		t.Fatalf("Ceiling: %v", err)
	}
	t.Logf("loose %+v, all %+v", loose, all)
	if loose.Ceiling != 0 {
		t.Errorf("Ceiling(loose).Ceiling = %d; want 0 (unique loose files)", loose.Ceiling)
	}
	// About 1.4 of 2.6 parts are copies of loose files in the images.
	if lo := int64(size * 40 / 100); all.Ceiling < lo {
		t.Errorf("Ceiling().Ceiling = %d; want at least %d", all.Ceiling, lo)
	}
}

// lookSbin finds a command in PATH or in the sbin directories, which a
// non-login PATH may lack.
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// TestVMs checks the VM images: three of size/3, the same for the same
// seed, each the template's blocks but for those written over at random
// places (as many writes as 5, 20 and 60% of its blocks, some places
// twice), none of those alike.
func TestVMs(t *testing.T) {
	gen := func(seed int64) (string, map[string]string) {
		dir := t.TempDir()
		if err := VMs(dir, 6*mib, seed); err != nil {
			t.Fatalf("VMs(%d): %v", seed, err)
		}
		return dir, treeSums(t, dir)
	}
	dir, a := gen(1)
	_, b := gen(1)
	_, c := gen(2)
	if want := []string{".", "vms", "vms/vm1.img", "vms/vm2.img", "vms/vm3.img"}; !slices.Equal(slices.Sorted(maps.Keys(a)), want) {
		t.Fatalf("VMs made %q; want %q", slices.Sorted(maps.Keys(a)), want)
	}
	if !maps.Equal(a, b) {
		t.Errorf("seed 1 twice: %v and %v; want the same", a, b)
	}
	if maps.Equal(a, c) {
		t.Errorf("seeds 1 and 2 made the same images")
	}
	var imgs [3][]byte
	for i := range imgs {
		var err error
		if imgs[i], err = os.ReadFile(filepath.Join(dir, "vms", fmt.Sprintf("vm%d.img", i+1))); err != nil {
			t.Fatal(err)
		}
		if len(imgs[i]) != 512*BlockSize {
			t.Errorf("vm%d.img holds %d bytes; want %d", i+1, len(imgs[i]), 512*BlockSize)
		}
	}
	tr, err := newTree(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	template := tr.rng.Uint64() // VMs' first draw
	own := make(map[string]bool)
	var over [3]int
	for k := range int64(512) {
		blk := func(i int) string { return string(imgs[i][k*BlockSize : (k+1)*BlockSize]) }
		b := make([]byte, BlockSize)
		fillBlock(b, template, uint64(k))
		tmpl := string(b)
		for i := range imgs {
			if blk(i) != tmpl {
				if own[blk(i)] {
					t.Errorf("block %d of vm%d.img is also elsewhere", k, i+1)
				}
				own[blk(i)] = true
				over[i]++
			}
		}
	}
	// n writes at random places over 512 blocks leave 512 * (1 -
	// (511/512)^n) of them written: 25, 95 and 232 for 25, 102 and 307.
	for i, want := range [3][2]int{{22, 25}, {85, 102}, {215, 250}} {
		if over[i] < want[0] || over[i] > want[1] {
			t.Errorf("vm%d.img: %d blocks written over the template's; want %d to %d", i+1, over[i], want[0], want[1])
		}
	}
}
