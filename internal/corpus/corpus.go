//go:build linux

package corpus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BlockSize is the block size that generated data is laid out in: runs
// shared between files start at multiples of it.
const BlockSize = 4096

// ErrNotRoot is returned by Images, which loop-mounts filesystems, when the
// process is not root.
var ErrNotRoot = errors.New("needs root to loop-mount disk images")

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

// Images writes a host with disk images of about size bytes of data under
// dir: loose files under dir/loose and two sparse ext4 images under
// dir/images, each holding copies of about 70% of the loose files (under
// host/, at the same relative paths) and files of its own (under
// only-here/). The data of every file is the same for the same size and
// seed; the image files also hold ext4 metadata (UUIDs, timestamps) that
// differs from run to run.
//
// Images needs root (it returns ErrNotRoot otherwise) and mkfs.ext4. Each
// image is loop-mounted on a temporary directory while it is filled, and
// unmounted before Images returns, whatever happens.
func Images(dir string, size int64, seed int64) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("disk images: %w", ErrNotRoot)
	}
	mkfs, err := lookSbin("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("disk images: %w (install e2fsprogs)", err)
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
		err := withImage(mkfs, img, imgSize, func(mnt string) error {
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

// Special adds special entries under dir/special: a FIFO ("fifo"), a
// character device with the numbers of /dev/zero ("zero", 1:5), a unix
// socket ("socket", bound and closed), a symbolic link to the largest
// regular file under dir ("link-to-big"), one to /dev/zero
// ("link-to-dev-zero"), an empty file ("empty") and two hard links to the
// largest file ("hardlink-1", "hardlink-2"). When dir holds no regular
// file, it first writes a 4 MiB one ("special/big").
//
// Making the device needs CAP_MKNOD (root, outside some containers):
// without it Special makes everything else and returns an error wrapping
// fs.ErrPermission.
func Special(dir string) error {
	big, err := largestFile(dir)
	if err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	sp := filepath.Join(dir, "special")
	if err := os.MkdirAll(sp, 0o755); err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	if big == "" {
		big = filepath.Join(sp, "big")
		t := &tree{root: dir, w: newWriter()}
		if err := t.writeStream(filepath.Join("special", "big"), 0x5bec1a1, 4<<20); err != nil {
			return fmt.Errorf("special entries: %w", err)
		}
	}
	target, err := filepath.Rel(sp, big)
	if err != nil {
		return fmt.Errorf("special entries: %w", err)
	}
	steps := []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"socket", makeSocket},
		{"link-to-big", func(p string) error { return os.Symlink(target, p) }},
		{"link-to-dev-zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"empty", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"hardlink-1", func(p string) error { return os.Link(big, p) }},
		{"hardlink-2", func(p string) error { return os.Link(big, p) }},
	}
	for _, s := range steps {
		path := filepath.Join(sp, s.name)
		if err := s.make(path); err != nil {
			return fmt.Errorf("special entry %s: %w", path, err)
		}
	}
	path := filepath.Join(sp, "zero")
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
		return fmt.Errorf("special entry %s: mknod: %w", path, err)
	}
	return nil
}

// makeSocket leaves a unix socket file at path: bound, never listened on,
// closed. A path too long for sockaddr_un is reached through the
// directory's descriptor in /proc/self/fd.
func makeSocket(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	name := path
	if len(name) >= 100 {
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return err
		}
		defer d.Close()
		name = fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path))
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// largestFile returns the largest regular file under dir (the first in
// lexical order among equals), or "" when there is none.
func largestFile(dir string) (string, error) {
	var best string
	var bestSize int64 = -1
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > bestSize {
			best, bestSize = path, fi.Size()
		}
		return nil
	})
	return best, err
}

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

// fillBlock fills b, at most BlockSize bytes, with the start of block idx
// of stream seed.
func fillBlock(b []byte, seed, idx uint64) {
	var p rand.PCG
	p.Seed(seed, splitmix(idx))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], p.Uint64())
	}
	if i < len(b) {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], p.Uint64())
		copy(b[i:], tail[:])
	}
}

// splitmix scrambles a block index so that neighbouring blocks start
// their generators from unrelated states.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// writer writes one file at a time through a buffer, with plain write(2)
// calls only: never copy_file_range or a reflink, which would share
// storage between the copies that are meant to be deduplicated.
type writer struct {
	f   *os.File
	buf []byte
	off int64 // file offset after what is buffered
	err error
}

func newWriter() *writer {
	return &writer{buf: make([]byte, 0, 1<<20)}
}

func (w *writer) create(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w.f, w.buf, w.off, w.err = f, w.buf[:0], 0, nil
	return nil
}

// data appends n bytes of stream seed, from the start of block first.
func (w *writer) data(seed uint64, first, n int64) {
	for b := first; n > 0; b++ {
		k := int(min(n, BlockSize))
		if len(w.buf)+k > cap(w.buf) {
			w.flush()
		}
		l := len(w.buf)
		w.buf = w.buf[:l+k]
		fillBlock(w.buf[l:], seed, uint64(b))
		w.off += int64(k)
		n -= int64(k)
	}
}

// zeros appends n explicit zero bytes.
func (w *writer) zeros(n int64) {
	for n > 0 {
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
		k := min(n, int64(cap(w.buf)-len(w.buf)))
		l := len(w.buf)
		w.buf = w.buf[:l+int(k)]
		clear(w.buf[l:])
		w.off += k
		n -= k
	}
}

// hole skips n bytes, leaving a hole.
func (w *writer) hole(n int64) {
	w.flush()
	if w.err == nil {
		_, w.err = w.f.Seek(n, io.SeekCurrent)
	}
	w.off += n
}

func (w *writer) flush() {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

// close flushes the buffer, extends the file over a trailing hole and
// closes it, returning the first error.
func (w *writer) close() error {
	w.flush()
	if w.err == nil {
		w.err = w.f.Truncate(w.off)
	}
	if err := w.f.Close(); w.err == nil {
		w.err = err
	}
	w.f = nil
	return w.err
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

// withImage makes a sparse ext4 image of size bytes at img, loop-mounts it
// on a temporary directory, calls fill with the mountpoint, and unmounts
// it, whatever fill returns.
func withImage(mkfs, img string, size int64, fill func(mnt string) error) (err error) {
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// 4 KiB blocks whatever the size (mke2fs picks 1 KiB for small
	// filesystems), so that files sit at 4 KiB-aligned offsets.
	out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, bytesTrim(out))
	}
	mnt, err := os.MkdirTemp("", "corpus-mnt-")
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unmount(mnt, img); uerr != nil {
			err = errors.Join(err, uerr)
			return // leave the directory: something may still be there
		}
		os.Remove(mnt)
	}()
	// noinit_itable: no background zeroing of the inode tables that
	// lazy_itable_init left, which would only write zeros into the image.
	mount, err := lookSbin("mount")
	if err != nil {
		return err
	}
	out, err = exec.Command(mount, "-t", "ext4", "-o", "loop,noinit_itable", img, mnt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount: %v: %s", err, bytesTrim(out))
	}
	return fill(mnt)
}

// unmount unmounts mnt, retrying while it is busy and lazily as a last
// resort, then detaches any loop device still backed by img.
func unmount(mnt, img string) error {
	umount, err := lookSbin("umount")
	if err != nil {
		return err
	}
	losetup, err := lookSbin("losetup")
	if err != nil {
		return err
	}
	for i := 0; i < 10 && mounted(mnt); i++ {
		if exec.Command(umount, mnt).Run() != nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if mounted(mnt) {
		// Still busy: detach it now; the kernel finishes when the last
		// user goes.
		if out, err := exec.Command(umount, "-l", mnt).CombinedOutput(); err != nil {
			return fmt.Errorf("umount -l %s: %v: %s", mnt, err, bytesTrim(out))
		}
	}
	// "mount -o loop" sets autoclear, so the loop device normally goes
	// with the mount; make sure.
	for i := 0; i < 50; i++ {
		out, err := exec.Command(losetup, "-j", img).Output()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			return nil
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			dev, _, _ := strings.Cut(line, ":")
			exec.Command(losetup, "-d", dev).Run()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("loop device for %s still busy", img)
}

// mounted reports whether something is mounted on mnt: its device differs
// from its parent's.
func mounted(mnt string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(mnt, &st) != nil || unix.Lstat(filepath.Dir(mnt), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }
