//go:build linux

package testfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func TestMount(t *testing.T) {
	tests := []struct {
		fstype string
		magic  int64
	}{
		{"btrfs", unix.BTRFS_SUPER_MAGIC},
		{"xfs", unix.XFS_SUPER_MAGIC},
		{"ext4", unix.EXT4_SUPER_MAGIC},
	}
	for _, tt := range tests {
		t.Run(tt.fstype, func(t *testing.T) {
			t.Parallel() // also exercises concurrent loop device set-up
			var mnt, image string
			// The subtest's cleanup has run when t.Run returns.
			t.Run("use", func(t *testing.T) {
				mnt = Mount(t, tt.fstype, "512M")
				image = backingFile(t, mnt)
				if got := Magic(t, mnt); got != tt.magic {
					t.Errorf("statfs(%s).Type = %#x; want %#x", mnt, got, tt.magic)
				}

				before := FreeBytes(t, mnt)
				data := randomBytes(8 * mib)
				writeFile(t, filepath.Join(mnt, "dir", "file"), data)
				written := FreeBytes(t, mnt)
				if drop := before - written; drop < 8*mib {
					t.Errorf("FreeBytes dropped by %d after writing 8 MiB; want >= %d", drop, 8*mib)
				}
				got := SHA256Tree(t, mnt)
				want := map[string]string{"dir/file": hexSHA256(data)}
				if !maps.Equal(got, want) {
					t.Errorf("SHA256Tree(%s) = %v; want %v", mnt, got, want)
				}

				if err := os.Remove(filepath.Join(mnt, "dir", "file")); err != nil {
					t.Fatal(err)
				}
				removed := FreeBytes(t, mnt)
				t.Logf("free bytes: %d empty, %d with 8 MiB, %d after removal", before, written, removed)
				if freed := removed - written; freed < 8*mib {
					t.Errorf("FreeBytes rose by %d after removing 8 MiB; want >= %d", freed, 8*mib)
				}
			})
			if mnt == "" {
				return // skipped, and reported as such
			}
			checkGone(t, mnt, image)
		})
	}
}

func TestMountError(t *testing.T) {
	requireRoot(t, "xfs", Root(), os.Getenv("CI"))
	tests := []struct {
		fstype, size string
		want         string // in the failure message
	}{
		{"xfs", "10M", "mkfs xfs"}, // below XFS's 300 MB minimum
		{"vfat", "512M", "unknown filesystem type 'vfat'"},
		{"btrfs", "lots", "bad size 'lots'"},
	}
	for _, tt := range tests {
		f := &fakeTB{TB: t} // TempDir and Cleanup go to t
		done := make(chan struct{})
		go func() {
			defer close(done)
			Mount(f, tt.fstype, tt.size)
		}()
		<-done
		if !strings.Contains(f.failed, tt.want) {
			t.Errorf("Mount(%s, %s) failure = %q; want it to contain %q", tt.fstype, tt.size, f.failed, tt.want)
		}
	}
}

// TestCleanupOnFailure checks that a test that fails or panics after Mount
// still leaves no mount, loop device or image behind. The failing test runs
// in a child process so that its failure does not fail this one.
func TestCleanupOnFailure(t *testing.T) {
	requireRoot(t, "btrfs", Root(), os.Getenv("CI"))
	for _, how := range []string{"fatal", "panic"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFailingHelper$", "-test.v")
			cmd.Env = append(os.Environ(), "TESTFS_HELPER="+how)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("helper exited 0; want a failure\n%s", out)
			}
			var mnt, image string
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if _, err := fmt.Sscanf(sc.Text(), "testfs-helper mnt=%s image=%s", &mnt, &image); err == nil {
					break
				}
			}
			if mnt == "" {
				t.Fatalf("helper printed no mountpoint\n%s", out)
			}
			if want := "on purpose"; !strings.Contains(string(out), want) {
				t.Errorf("helper output lacks %q\n%s", want, out)
			}
			checkGone(t, mnt, image)
		})
	}
}

// TestFailingHelper mounts btrfs and then fails as TESTFS_HELPER says. It
// runs only as TestCleanupOnFailure's child.
func TestFailingHelper(t *testing.T) {
	how := os.Getenv("TESTFS_HELPER")
	if how == "" {
		t.Skip("helper for TestCleanupOnFailure; runs only in its child process")
	}
	mnt := Mount(t, "btrfs", "512M")
	fmt.Printf("testfs-helper mnt=%s image=%s\n", mnt, backingFile(t, mnt))
	writeFile(t, filepath.Join(mnt, "file"), randomBytes(mib))
	switch how {
	case "fatal":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	}
}

func TestRequireRoot(t *testing.T) {
	tests := []struct {
		root     bool
		ci       string
		wantSkip bool
		wantFail bool
	}{
		{root: true, ci: ""},
		{root: true, ci: "true"},
		{root: false, ci: "", wantSkip: true},
		{root: false, ci: "false", wantSkip: true},
		{root: false, ci: "true", wantFail: true},
		{root: false, ci: "1", wantFail: true},
	}
	for _, tt := range tests {
		f := &fakeTB{}
		done := make(chan struct{})
		go func() { // Skipf and Fatalf end the goroutine, as in a test.
			defer close(done)
			requireRoot(f, "xfs", tt.root, tt.ci)
		}()
		<-done
		if gotSkip := f.skipped != ""; gotSkip != tt.wantSkip {
			t.Errorf("requireRoot(root=%v, CI=%q) skipped = %v; want %v", tt.root, tt.ci, gotSkip, tt.wantSkip)
		}
		if gotFail := f.failed != ""; gotFail != tt.wantFail {
			t.Errorf("requireRoot(root=%v, CI=%q) failed = %v; want %v", tt.root, tt.ci, gotFail, tt.wantFail)
		}
		if msg := f.skipped + f.failed; msg != "" && !strings.Contains(msg, "root to loop-mount xfs") {
			t.Errorf("requireRoot(root=%v, CI=%q) message = %q; want it to name root and xfs", tt.root, tt.ci, msg)
		}
	}
}

// fakeTB records Skipf and Fatalf, which end the calling goroutine, and
// passes other calls to the TB it embeds.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSHA256Tree(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"empty":       nil,
		"a":           []byte("hello\n"),
		"sub/dir/big": randomBytes(mib + 1),
	}
	want := make(map[string]string)
	for name, data := range files {
		writeFile(t, filepath.Join(dir, name), data)
		want[name] = hexSHA256(data)
	}
	// Not regular files: left out.
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}

	got := SHA256Tree(t, dir)
	if !maps.Equal(got, want) {
		t.Errorf("SHA256Tree = %v; want %v", got, want)
	}
	if got, want := got["a"], "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"; got != want {
		t.Errorf("SHA256Tree[a] = %s; want %s", got, want)
	}
}

func TestRun(t *testing.T) {
	if got, want := Run(t, "sh", "-c", "echo out; echo err >&2"), "out\nerr\n"; got != want {
		t.Errorf("Run(sh) = %q; want %q", got, want)
	}
}

// checkGone fails t if mnt is still mounted, a loop device is still backed
// by image, or image still exists.
func checkGone(t *testing.T, mnt, image string) {
	t.Helper()
	if _, ok := mountSource(t, mnt); ok {
		t.Errorf("%s still in /proc/self/mountinfo after cleanup", mnt)
	}
	if devs := loopDevices(t, image); len(devs) != 0 {
		t.Errorf("loop devices for %s after cleanup = %v; want none", image, devs)
	}
	if _, err := os.Lstat(image); !os.IsNotExist(err) {
		t.Errorf("Lstat(%s) after cleanup: err = %v; want not exist", image, err)
	}
}

// mountSource returns the source of the mount on mnt from
// /proc/self/mountinfo, and whether there is one.
func mountSource(t testing.TB, mnt string) (string, bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	source, found := "", false
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) < 5 || unescape.Replace(fields[4]) != mnt {
			continue
		}
		found = true // the last one wins: it is the top of a stack
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				source = unescape.Replace(fields[i+2])
			}
		}
	}
	return source, found
}

// backingFile returns the image file of the loop device mounted on mnt.
func backingFile(t testing.TB, mnt string) string {
	t.Helper()
	source, ok := mountSource(t, mnt)
	if !ok || !strings.HasPrefix(source, "/dev/loop") {
		t.Fatalf("mount source of %s = %q (found %v); want /dev/loopN", mnt, source, ok)
	}
	data, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(source), "loop", "backing_file"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// loopDevices returns the loop devices backed by image, deleted or not.
// Unlike `losetup -j`, it still works once the image is removed.
func loopDevices(t testing.TB, image string) []string {
	t.Helper()
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)") == image {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	if _, err := os.Stat(image); err == nil {
		if out := strings.TrimSpace(Run(t, "losetup", "-j", image)); out != "" {
			devs = append(devs, out)
		}
	}
	return devs
}

// writeFile writes data to path, making parent directories, and fsyncs it.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// randomBytes returns n reproducible, incompressible bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func hexSHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
