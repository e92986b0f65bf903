//go:build linux

package dedupe_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"same/internal/dedupe"
	"same/internal/fsys"
	"same/internal/testfs"
)

// identity returns path's identity as hashfile would record it, named by
// its st_dev.
func identity(t testing.TB, path string) fsys.Identity {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fsys.FromStat(&st).Identity(fsys.Volume{})
}

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// open opens path with dedupe.Open and its current identity.
func open(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := dedupe.Open(path, identity(t, path))
	if err != nil {
		t.Fatalf("dedupe.Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func checkContent(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Errorf("SHA-256 of %s changed by dedupe", path)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("hello"))
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	id := identity(t, file)
	with := func(f func(*fsys.Identity)) fsys.Identity {
		r := id
		f(&r)
		return r
	}
	tests := []struct {
		name  string
		path  string
		want  fsys.Identity
		err   string
		stale bool
	}{
		{"ok", file, id, "", false},
		{"size", file, with(func(r *fsys.Identity) { r.Size = 4096 }), "stale: size 5, plan says 4096", true},
		{"mtime", file, with(func(r *fsys.Identity) { r.Mtime++ }), "stale: mtime", true},
		{"ino", file, with(func(r *fsys.Identity) { r.Ino++ }), "stale: ino", true},
		{"dev", file, with(func(r *fsys.Identity) { r.Dev++ }), "stale: dev", true},
		{"directory", dir, id, "is a directory", false},
		{"fifo", fifo, id, "is a FIFO", false},
		{"socket", sock, id, "is a socket", false}, // refused before any open(2)
		{"symlink", link, id, "is a symlink", false},
		{"missing", filepath.Join(dir, "nope"), id, "no such file or directory", false},
		{"char device", "/dev/null", id, "is a character device", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := dedupe.Open(tt.path, tt.want)
			if f != nil {
				f.Close()
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("dedupe.Open(%s) = %v; want nil", tt.path, err)
			case tt.err == "":
				return
			case err == nil:
				t.Fatalf("dedupe.Open(%s) = nil; want %q", tt.path, tt.err)
			case !strings.HasPrefix(err.Error(), tt.err):
				t.Errorf("dedupe.Open(%s) = %q; want %q...", tt.path, err, tt.err)
			}
			if got := errors.Is(err, dedupe.ErrStale); got != tt.stale {
				t.Errorf("errors.Is(%v, dedupe.ErrStale) = %v; want %v", err, got, tt.stale)
			}
		})
	}
}

func TestOpenSymlinkErrno(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), nil)
	os.Symlink("f", filepath.Join(dir, "l"))
	_, err := dedupe.Open(filepath.Join(dir, "l"), fsys.Identity{})
	if got := dedupe.ErrnoName(err); got != "ELOOP" {
		t.Errorf("dedupe.ErrnoName(%v) = %q; want ELOOP", err, got)
	}
	if !errors.Is(err, dedupe.ErrNotRegular) {
		t.Errorf("errors.Is(%v, dedupe.ErrNotRegular) = false; want true", err)
	}
}

// TestRange dedupes on real btrfs and XFS filesystems.
func TestRange(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := testfs.Mount(t, fstype, "512M")
			testRange(t, mnt)
		})
	}
}

func testRange(t *testing.T, mnt string) {
	ctx := context.Background()
	n := 0
	// files writes a source and destinations with the given contents.
	files := func(datas ...[]byte) []string {
		n++
		var paths []string
		for i, d := range datas {
			p := filepath.Join(mnt, "f"+strconv.Itoa(n)+"-"+strconv.Itoa(i))
			writeFile(t, p, d)
			paths = append(paths, p)
		}
		return paths
	}
	dests := func(paths []string, off int64) []dedupe.Dest {
		var ds []dedupe.Dest
		for _, p := range paths {
			ds = append(ds, dedupe.Dest{open(t, p), off})
		}
		return ds
	}
	type want struct {
		status dedupe.Status
		bytes  int64
	}
	check := func(t *testing.T, got []dedupe.Outcome, w []want) {
		t.Helper()
		if len(got) != len(w) {
			t.Fatalf("Range returned %d outcomes; want %d", len(got), len(w))
		}
		for i := range got {
			if got[i].Status != w[i].status || got[i].Bytes != w[i].bytes {
				t.Errorf("outcome %d = %s %d bytes (%v); want %s %d", i, got[i].Status, got[i].Bytes, got[i].Err, w[i].status, w[i].bytes)
			}
		}
	}

	t.Run("identical", func(t *testing.T) {
		data := randomData(1, 1<<20)
		p := files(data, data, data)
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 0)
		check(t, got, []want{{dedupe.Deduped, 1 << 20}, {dedupe.Deduped, 1 << 20}})
		for _, path := range p {
			checkContent(t, path, data)
		}
	})

	t.Run("differs", func(t *testing.T) {
		data := randomData(2, 64<<10)
		other := append([]byte(nil), data...)
		other[9000] ^= 1 // in the third 4 KiB block
		p := files(data, other, data)
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 4096)
		check(t, got, []want{{dedupe.Differs, 8192}, {dedupe.Deduped, 64 << 10}})
		if !errors.Is(got[0].Err, dedupe.ErrDiffers) {
			t.Errorf("differs error = %v; want dedupe.ErrDiffers", got[0].Err)
		}
		checkContent(t, p[1], other)
	})

	t.Run("large with partial tail", func(t *testing.T) {
		size := 40<<20 + 1000
		data := randomData(3, size)
		p := files(data, data)
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(size), dests(p[1:], 0), 16<<20)
		check(t, got, []want{{dedupe.Deduped, int64(size)}})
		checkContent(t, p[1], data)
	})

	t.Run("unaligned chunk", func(t *testing.T) {
		data := randomData(4, 100_000)
		p := files(data, data)
		// The chunk is rounded down to 4096 bytes: the kernel would report
		// 6000 bytes deduped after sharing 4096.
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 6000)
		check(t, got, []want{{dedupe.Deduped, 100_000}})
	})

	t.Run("inner ranges", func(t *testing.T) {
		block := randomData(5, 32<<10)
		src := append(append(randomData(6, 8192), block...), randomData(7, 4096)...)
		dst := append(randomData(8, 16384), block...)
		p := files(src, dst)
		got := dedupe.Range(ctx, open(t, p[0]), 8192, int64(len(block)), dests(p[1:], 16384), 0)
		check(t, got, []want{{dedupe.Deduped, int64(len(block))}})
		checkContent(t, p[1], dst)
	})

	t.Run("more than 127 destinations", func(t *testing.T) {
		data := randomData(9, 8192+100)
		datas := make([][]byte, 131)
		for i := range datas {
			datas[i] = data
		}
		p := files(datas...)
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 0)
		w := make([]want, 130)
		for i := range w {
			w[i] = want{dedupe.Deduped, int64(len(data))}
		}
		check(t, got, w)
	})

	t.Run("misaligned offset", func(t *testing.T) {
		data := randomData(10, 16384)
		p := files(data, data)
		got := dedupe.Range(ctx, open(t, p[0]), 0, 8192, dests(p[1:], 100), 0)
		check(t, got, []want{{dedupe.Failed, 0}})
		if name := dedupe.ErrnoName(got[0].Err); name != "EINVAL" {
			t.Errorf("errno = %q (%v); want EINVAL", name, got[0].Err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		data := randomData(11, 8192)
		p := files(data, data, data)
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 0)
		check(t, got, []want{{dedupe.Skipped, 0}, {dedupe.Skipped, 0}})
	})

	// The pages the kernel read to compare a destination that had none
	// cached are dropped again; those of a destination that was cached
	// (a file someone reads) and the source's stay. (XFS drops the
	// destination range's pages itself before it remaps it.)
	t.Run("page cache", func(t *testing.T) {
		data := randomData(9, 4<<20)
		p := files(data, data, data)
		for _, path := range p {
			dropCache(t, path)
		}
		if _, err := os.ReadFile(p[2]); err != nil {
			t.Fatal(err)
		}
		if got := resident(t, p[2]); got != len(data) {
			t.Fatalf("%s read whole: %d bytes cached; want %d", p[2], got, len(data))
		}
		got := dedupe.Range(ctx, open(t, p[0]), 0, int64(len(data)), dests(p[1:], 0), 1<<20)
		check(t, got, []want{{dedupe.Deduped, int64(len(data))}, {dedupe.Deduped, int64(len(data))}})
		kept := len(data)
		if fs, err := fsys.StatFS(open(t, p[0])); err != nil {
			t.Fatal(err)
		} else if fs.Type == "xfs" {
			kept = 0
		}
		for i, w := range []int{len(data), 0, kept} {
			if got := resident(t, p[i]); got != w {
				t.Errorf("after the dedupe, %s has %d bytes cached; want %d", p[i], got, w)
			}
		}
		for _, path := range p {
			checkContent(t, path, data)
		}
	})

	t.Run("statfs", func(t *testing.T) {
		p := files([]byte("x"))
		fs, err := fsys.StatFS(open(t, p[0]))
		if err != nil {
			t.Fatal(err)
		}
		if fs.BlockSize != 4096 || fs.Free <= 0 || fs.ID == "" || (fs.Type != "btrfs" && fs.Type != "xfs") {
			t.Errorf("StatFS = %+v; want block size 4096, free > 0, btrfs or xfs", fs)
		}
		if err := fsys.SyncFS(open(t, p[0])); err != nil {
			t.Errorf("fsys.SyncFS = %v", err)
		}
	})
}

func TestRangeUnsupported(t *testing.T) {
	mnt := testfs.Mount(t, "ext4", "64M")
	data := randomData(1, 8192)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	writeFile(t, a, data)
	writeFile(t, b, data)
	got := dedupe.Range(context.Background(), open(t, a), 0, 8192, []dedupe.Dest{{open(t, b), 0}}, 0)
	o := got[0]
	if o.Status != dedupe.Failed || dedupe.ErrnoName(o.Err) != "EOPNOTSUPP" || o.Err.Error() != "filesystem does not support dedupe" {
		t.Errorf("Range on ext4 = %s %q %v; want error EOPNOTSUPP \"filesystem does not support dedupe\"", o.Status, dedupe.ErrnoName(o.Err), o.Err)
	}
}

func TestRangeCrossDevice(t *testing.T) {
	m1 := testfs.Mount(t, "btrfs", "256M")
	m2 := testfs.Mount(t, "btrfs", "256M")
	data := randomData(1, 8192)
	a, b := filepath.Join(m1, "a"), filepath.Join(m2, "b")
	writeFile(t, a, data)
	writeFile(t, b, data)
	got := dedupe.Range(context.Background(), open(t, a), 0, 8192, []dedupe.Dest{{open(t, b), 0}}, 0)
	o := got[0]
	if o.Status != dedupe.Failed || !errors.Is(o.Err, syscall.EXDEV) || !strings.Contains(o.Err.Error(), "on another filesystem") {
		t.Errorf("Range across filesystems = %s %v; want error EXDEV \"on another filesystem\"", o.Status, o.Err)
	}
}

// TestStatFSSubvolumes: btrfs gives each subvolume its own st_dev and
// f_fsid, but StatFS names the filesystem by its UUID, the one blkid
// reports, so that files in subvolumes count as one filesystem; another
// btrfs has another ID.
func TestStatFSSubvolumes(t *testing.T) {
	m1 := testfs.Mount(t, "btrfs", "256M")
	m2 := testfs.Mount(t, "btrfs", "256M")
	sub := filepath.Join(m1, "sub")
	if out, err := exec.Command("btrfs", "subvolume", "create", sub).CombinedOutput(); err != nil {
		t.Fatalf("btrfs subvolume create: %v\n%s", err, out)
	}
	a, b, c := filepath.Join(m1, "a"), filepath.Join(sub, "b"), filepath.Join(m2, "c")
	for _, p := range []string{a, b, c} {
		writeFile(t, p, []byte("x"))
	}
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	if sa.Dev == sb.Dev {
		t.Fatalf("a and b have the same st_dev %d: the subvolume is not one", sa.Dev)
	}
	id := func(p string) string {
		fs, err := fsys.StatFS(open(t, p))
		if err != nil {
			t.Fatal(err)
		}
		return fs.ID
	}
	out, err := exec.Command("findmnt", "-no", "UUID", "--target", m1).Output()
	if err != nil {
		t.Fatalf("findmnt: %v", err)
	}
	uuid := strings.ReplaceAll(strings.TrimSpace(string(out)), "-", "")
	if got := id(a); got != uuid {
		t.Errorf("StatFS(%s).ID = %s; want the filesystem's UUID %s", a, got, uuid)
	}
	if got := id(b); got != uuid {
		t.Errorf("StatFS(%s).ID = %s, in a subvolume; want the filesystem's UUID %s", b, got, uuid)
	}
	if got := id(c); got == uuid {
		t.Errorf("StatFS(%s).ID = %s, on another btrfs; want another ID", c, got)
	}
}

// dropCache writes path's pages back and drops them from the page cache,
// and fails unless none stays.
func dropCache(t testing.TB, path string) {
	t.Helper()
	testfs.DropCache(t, path)
	if n := resident(t, path); n != 0 {
		t.Fatalf("%s: %d bytes still cached after POSIX_FADV_DONTNEED", path, n)
	}
}

// resident returns how many bytes of path's pages are in the page cache,
// as mincore(2) sees them through a mapping that touches none.
func resident(t testing.TB, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		return 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return min(n*page, len(m))
}
