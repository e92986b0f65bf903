package index

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fiemap"
	"same/internal/fsys"
	"same/schema"
)

// openT opens the index at path and closes it when the test ends.
func openT(tb testing.TB, path string) *Index {
	tb.Helper()
	ix, err := Open(path)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", path, err)
	}
	tb.Cleanup(func() { ix.Close() })
	return ix
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// A new index is 0600 in directories created 0700, and so are the WAL
// files SQLite makes beside it, whatever the umask.
func TestPrivate(t *testing.T) {
	for _, umask := range []int{0, 0o022} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			defer syscall.Umask(syscall.Umask(umask))
			top := t.TempDir()
			path := filepath.Join(top, "a", "b", "index.db")
			ix := openT(t, path)
			if err := ix.UseBlockSize(4096); err != nil { // writes: the WAL exists
				t.Fatal(err)
			}
			for _, p := range []string{filepath.Join(top, "a"), filepath.Join(top, "a", "b")} {
				if got := perm(t, p); got != 0o700 {
					t.Errorf("mode of %s = %04o; want 0700", p, got)
				}
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if got := perm(t, p); got != 0o600 {
					t.Errorf("mode of %s = %04o; want 0600", p, got)
				}
			}
			if w := ix.Warnings(); w != nil {
				t.Errorf("Warnings() = %q; want none", w)
			}
		})
	}
}

// An index others can read, or in a directory others can write, is
// opened, with one warning naming what is open to them.
func TestPrivateWarning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	path := filepath.Join(dir, "index.db")
	openT(t, path).Close()
	tests := []struct {
		file, dir os.FileMode
		want      string // "" for no warning
	}{
		{0o600, 0o700, ""},
		{0o600, 0o755, ""}, // others may list it, not read the index
		{0o600, 0o1777, fmt.Sprintf("%s mode 0777", dir)},
		{0o640, 0o700, fmt.Sprintf("%s mode 0640, %s-wal mode 0640, %s-shm mode 0640", path, path, path)},
		{0o644, 0o775, fmt.Sprintf("%s mode 0644, %s-wal mode 0644, %s-shm mode 0644, %s mode 0775", path, path, path, dir)},
	}
	for _, tt := range tests {
		// The log and its shared memory are kept beside the index.
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if err := os.Chmod(p, tt.file); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(dir, tt.dir); err != nil {
			t.Fatal(err)
		}
		var want []string
		if tt.want != "" {
			want = []string{fmt.Sprintf("index %s is open to group or others (%s; want 0600 files in a 0700 directory): it names files and holds sums of their blocks", path, tt.want)}
		}
		for _, open := range []func(string) (*Index, error){Open, OpenExisting} {
			ix, err := open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := ix.Warnings(); !slices.Equal(got, want) {
				t.Errorf("file %04o in directory %04o: Warnings() = %q; want %q", tt.file, tt.dir, got, want)
			}
			ix.Close()
		}
	}
}

// rawDB opens path with no index code in the way.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// dbAtVersion makes at path an index of version v, as the migrations up
// to v made it, with a block size of 4096, and returns it open without
// this package.
func dbAtVersion(t *testing.T, path string, v int) *sql.DB {
	t.Helper()
	db := rawDB(t, path)
	for k := 1; k <= v; k++ {
		names, err := fs.Glob(schema.FS, fmt.Sprintf("%03d_*.sql", k))
		if err != nil || len(names) != 1 {
			t.Fatalf("migration %d: %v %v", k, names, err)
		}
		body, err := schema.FS.ReadFile(names[0])
		if err != nil {
			t.Fatal(err)
		}
		sqlExec(t, db, string(body))
	}
	sqlExec(t, db, fmt.Sprintf("PRAGMA user_version = %d", v))
	sqlExec(t, db, fmt.Sprintf("PRAGMA application_id = %d", int32(ApplicationID)))
	sqlExec(t, db, "INSERT INTO meta(key, value) VALUES('block_size', '4096')")
	return db
}

func sqlExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestNotIndex(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	db := rawDB(t, foreign)
	sqlExec(t, db, "CREATE TABLE people(name TEXT); CREATE TABLE pets(name TEXT); PRAGMA application_id = 42; PRAGMA user_version = 3")
	db.Close()
	bare := filepath.Join(dir, "bare.db") // no application_id, tables that are not ours
	db = rawDB(t, bare)
	sqlExec(t, db, "CREATE TABLE t(x); PRAGMA user_version = 1")
	db.Close()
	noTables := filepath.Join(dir, "notables.db")
	db = rawDB(t, noTables)
	sqlExec(t, db, "PRAGMA application_id = -1")
	db.Close()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		path     string
		existing bool // OpenExisting, not Open
		want     string
	}{
		{text, false, text + " is not a same index (not an SQLite database)"},
		{text, true, text + " is not a same index (not an SQLite database)"},
		{foreign, false, foreign + " is not a same index (application_id 0x0000002a, tables: people, pets)"},
		{foreign, true, foreign + " is not a same index (application_id 0x0000002a, tables: people, pets)"},
		{bare, false, bare + " is not a same index (application_id 0x00000000, tables: t)"},
		{noTables, true, noTables + " is not a same index (application_id 0xffffffff, tables: none)"},
		{empty, true, empty + " is not a same index (empty file)"},
		{sub, false, "open index: open " + sub + ": is a directory"},
		{filepath.Join(dir, "missing.db"), true, "open index " + filepath.Join(dir, "missing.db") + ": no index (run hashfile first)"},
	}
	for _, tt := range tests {
		before, _ := os.ReadFile(tt.path)
		open, name := Open, "Open"
		if tt.existing {
			open, name = OpenExisting, "OpenExisting"
		}
		ix, err := open(tt.path)
		if err == nil {
			ix.Close()
			t.Errorf("%s(%s) = nil error; want %q", name, tt.path, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s(%s) = %q; want %q", name, tt.path, err, tt.want)
		}
		if !errors.Is(err, ErrNotIndex) && !errors.Is(err, ErrNotExist) && !errors.Is(err, syscall.EISDIR) {
			t.Errorf("%s(%s) = %v; want ErrNotIndex, ErrNotExist or EISDIR", name, tt.path, err)
		}
		// Nothing was written into it, nor beside it.
		if after, _ := os.ReadFile(tt.path); !bytes.Equal(after, before) {
			t.Errorf("%s(%s) changed the file", name, tt.path)
		}
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if _, err := os.Lstat(tt.path + suffix); err == nil {
				t.Errorf("%s(%s) left %s%s", name, tt.path, tt.path, suffix)
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "missing.db")); err == nil {
		t.Errorf("OpenExisting created the missing index")
	}
}

// An empty file given to Open becomes an index.
func TestOpenEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
}

// checkCurrent checks that ix is marked as an index and at this binary's
// version.
func checkCurrent(t *testing.T, ix *Index) {
	t.Helper()
	var id, v int64
	if err := ix.DB().QueryRow("PRAGMA application_id").Scan(&id); err != nil || id != ApplicationID {
		t.Errorf("application_id = %#x, %v; want %#x", id, err, ApplicationID)
	}
	if err := ix.DB().QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != int64(Version()) {
		t.Errorf("user_version = %d, %v; want %d", v, err, Version())
	}
	// blocks has rowids (schema 13): a lookup by key does not read the
	// rows of sums it passes.
	if _, err := ix.DB().Exec("SELECT rowid FROM blocks LIMIT 1"); err != nil {
		t.Errorf("blocks has no rowid: %v", err)
	}
}

func TestVersion(t *testing.T) {
	names, err := schema.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != len(names) || Version() != len(names) {
		t.Errorf("%d migrations, Version() = %d; want %d (one per file, numbered from 1)", len(m), Version(), len(names))
	}
}

// v1 builds an index as version 1 of the tools left it: the schema of
// 001_init.sql, user_version 1, no application_id, some rows.
func v1(t *testing.T, path string) {
	t.Helper()
	body, err := schema.FS.ReadFile("001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path+"?_pragma=journal_mode(WAL)")
	defer db.Close()
	sqlExec(t, db, string(body))
	sqlExec(t, db, "PRAGMA user_version = 1")
	sqlExec(t, db, "INSERT INTO meta(key, value) VALUES('block_size', '4096')")
	sqlExec(t, db, "INSERT INTO devices(dev, fstype, fsblock) VALUES(42, 2435016766, 4096)")
	sqlExec(t, db, "INSERT INTO files(id, path, dev, ino, size, mtime, ctime) VALUES(1, '/d/a', 42, 100, 8192, 11, 12), (2, NULL, 42, 101, 4096, 21, 22)")
	sqlExec(t, db, "INSERT INTO blocks(file, chunk, hashes) VALUES(1, 0, x'01020304050607081112131415161718'), (2, 0, x'2122232425262728')")
	sqlExec(t, db, "INSERT INTO extents(file, logical, physical, length, flags) VALUES(1, 0, 1048576, 8192, 8193)")
}

func TestMigrateV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	v1(t, path)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, path)
	checkCurrent(t, ix)
	ctx := context.Background()

	if bs, err := ix.BlockSize(); err != nil || bs != 4096 {
		t.Errorf("BlockSize() = %d, %v; want 4096", bs, err)
	}
	var files []File
	if err := ix.Files(ctx, func(f File) error { files = append(files, f); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(files, func(a, b File) int { return int(a.ID - b.ID) })
	want := []File{
		{ID: 1, Path: "/d/a", NoCOW: NoCOWUnknown, UID: UIDUnknown, Identity: fsys.Identity{Vol: LegacyVolume(42), Ino: 100, Size: 8192, Mtime: 11, Ctime: 12}},
		{ID: 2, Path: "", NoCOW: NoCOWUnknown, UID: UIDUnknown, Identity: fsys.Identity{Vol: LegacyVolume(42), Ino: 101, Size: 4096, Mtime: 21, Ctime: 22}},
	}
	if !slices.Equal(files, want) {
		t.Errorf("Files() = %+v; want %+v", files, want)
	}
	// The device becomes a volume named by its st_dev, until hashfile
	// meets that st_dev again and learns its names.
	vols, err := ix.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := vols[LegacyVolume(42)]; len(vols) != 1 || v != (fsys.Info{Volume: LegacyVolume(42), Magic: 2435016766, BlockSize: 4096}) {
		t.Errorf("Volumes() = %+v; want dev:42, btrfs, 4096", vols)
	}
	for id, hex := range map[int64]string{1: "01020304050607081112131415161718", 2: "2122232425262728"} {
		sums, err := ix.Sums(ctx, id)
		if got := fmt.Sprintf("%x", sums); err != nil || got != hex {
			t.Errorf("Sums(%d) = %s, %v; want %s", id, got, err, hex)
		}
	}
	var n int
	err = ix.ScanExtents(ctx, 1, func(_ int, file int64, e fiemap.Extent) error {
		n++
		if want := (fiemap.Extent{Logical: 0, Physical: 1048576, Length: 8192, Flags: 8193}); file != 1 || e != want {
			t.Errorf("extent of file %d = %+v; want of file 1 %+v", file, e, want)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("ScanExtents: %d extents, %v; want 1", n, err)
	}
	var check string
	if err := ix.DB().QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
}

// An index without application_id but not ours by its tables, at version
// 1 or more, is refused, and so is one newer than this binary.
func TestNewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	openT(t, path).Close()
	db := rawDB(t, path)
	sqlExec(t, db, fmt.Sprintf("PRAGMA user_version = %d", Version()+1))
	db.Close()
	want := fmt.Sprintf("open index %s: index format version %d is newer than this tool's %d: upgrade the tools", path, Version()+1, Version())
	for _, open := range []func(string) (*Index, error){Open, OpenExisting} {
		if ix, err := open(path); err == nil || err.Error() != want {
			if err == nil {
				ix.Close()
			}
			t.Errorf("open of a newer index = %v; want %q", err, want)
		}
	}
}

// Tools opening a new index, or one to migrate, at the same time all
// succeed: each migration reads the version in the transaction that
// applies it.
func TestConcurrentOpen(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "v1.db")
	v1(t, old)
	// A clean copy of the v1 index, without its WAL.
	var pristine []byte
	{
		db := rawDB(t, old)
		sqlExec(t, db, "PRAGMA journal_mode = DELETE")
		db.Close()
		var err error
		if pristine, err = os.ReadFile(old); err != nil {
			t.Fatal(err)
		}
	}
	const rounds, opens = 20, 3
	for i := range rounds {
		fresh := filepath.Join(dir, fmt.Sprintf("new%d", i), "index.db")
		older := filepath.Join(dir, fmt.Sprintf("old%d.db", i))
		if err := os.WriteFile(older, pristine, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{fresh, older} {
			var wg sync.WaitGroup
			errs := make([]error, opens)
			for k := range opens {
				wg.Go(func() {
					open := Open
					if k == opens-1 && path == older {
						open = OpenExisting // a reader too
					}
					ix, err := open(path)
					if err == nil {
						err = ix.Close()
					}
					errs[k] = err
				})
			}
			wg.Wait()
			for k, err := range errs {
				if err != nil {
					t.Fatalf("round %d, open %d of %s = %v", i, k, path, err)
				}
			}
			ix := openT(t, path)
			checkCurrent(t, ix)
			ix.Close()
		}
	}
}

// A path holding '?', '#', '%' or a space is the file SQLite opens, not
// the part of it before them.
func TestPathEscape(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"q?x.db", "h#x.db", "p%41.db", "s p.db", "a?b#c%25d e&f=g.db", ":colon.db"} {
		path := filepath.Join(dir, name)
		ix := openT(t, path)
		if err := ix.UseBlockSize(8192); err != nil {
			t.Fatal(err)
		}
		ix.Close()
		ix, err := OpenExisting(path)
		if err != nil {
			t.Fatalf("OpenExisting(%q) = %v", path, err)
		}
		if bs, err := ix.BlockSize(); err != nil || bs != 8192 {
			t.Errorf("BlockSize() of %q = %d, %v; want 8192", path, bs, err)
		}
		ix.Close()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	var want []string
	for _, name := range []string{":colon.db", "a?b#c%25d e&f=g.db", "h#x.db", "p%41.db", "q?x.db", "s p.db"} {
		want = append(want, name, name+"-shm", name+"-wal") // the log and its shared memory are kept
	}
	if !slices.Equal(got, want) {
		t.Errorf("files made = %q; want %q", got, want)
	}
}

// tmpfsT mounts a tmpfs of size (tmpfs's size= option) on a temporary
// directory for the test and returns it; the test is skipped where it
// cannot be mounted.
func tmpfsT(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := unix.Mount("same-test", mnt, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	return mnt
}

// An index that cannot be opened says why in words, not SQLite's "unable
// to open database file".
func TestReadOnlyFS(t *testing.T) {
	mnt := tmpfsT(t, "8m")
	path := filepath.Join(mnt, "index.db")
	openT(t, path).Close()
	if err := unix.Mount("same-test", mnt, "tmpfs", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		open func(string) (*Index, error)
		path string
		want string
	}{
		{OpenExisting, path, "open index: open " + path + ": read-only file system"},
		{Open, path, "open index: open " + path + ": read-only file system"},
		{Open, filepath.Join(mnt, "new.db"), "open index: open " + filepath.Join(mnt, "new.db") + ": read-only file system"},
		{Open, filepath.Join(mnt, "sub", "new.db"), "open index: mkdir " + filepath.Join(mnt, "sub") + ": read-only file system"},
	}
	for _, tt := range tests {
		ix, err := tt.open(tt.path)
		if err == nil {
			ix.Close()
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("open(%s) = %v; want %q", tt.path, err, tt.want)
		}
	}
}

// deniedEnv, when set, makes the test binary open the index it names and
// print the error: TestDeniedDirectory runs it so as another user.
const deniedEnv = "SAME_INDEX_TEST_OPEN"

func TestMain(m *testing.M) {
	if path := os.Getenv(deniedEnv); path != "" {
		ix, err := OpenExisting(path)
		if err == nil {
			ix.Close()
		}
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// An index in a directory the user may not write: SQLite could not make
// its -wal and -shm files there.
func TestDeniedDirectory(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "idx")
	path := filepath.Join(dir, "index.db")
	openT(t, path).Close()
	want := fmt.Sprintf("open index %s: cannot create files in %s: permission denied", path, dir)

	if os.Geteuid() != 0 {
		// Without the log and its shared memory kept beside it.
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Remove(path + suffix); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		ix, err := OpenExisting(path)
		if err == nil {
			ix.Close()
		}
		if err == nil || err.Error() != want {
			t.Errorf("OpenExisting(%s) = %v; want %q", path, err, want)
		}
		return
	}
	// Root may write anywhere: run this test's binary as nobody, on an
	// index nobody owns in a directory nobody may not write.
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) not found, cannot run as nobody: %v", err)
	}
	const nobody = 65534
	bin := filepath.Join(top, "index.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := top; d != "/"; d = filepath.Dir(d) { // let nobody reach it
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(want string) {
		t.Helper()
		cmd := exec.Command(setpriv, fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups", bin)
		cmd.Env = append(os.Environ(), deniedEnv+"="+path)
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("OpenExisting(%s) as nobody = %q, %v; want %q", path, got, err, want)
		}
	}
	// The log kept beside the index is root's.
	asNobody(fmt.Sprintf("open index %s: cannot open %s-wal: permission denied", path, path))
	// Without it, and its shared memory, nobody cannot make them.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil {
			t.Fatal(err)
		}
	}
	asNobody(want)
}

// An index opened to be written caches 64 MiB a connection; one opened to
// be read, which reads each page once, a little, and so does a Cursor's
// connection, which gives the writer's back as it found it.
func TestCacheSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	cacheOf := func(ix *Index) int {
		t.Helper()
		var n int
		if err := ix.DB().QueryRow("PRAGMA cache_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ix := openT(t, path)
	c := ix.Under(context.Background(), "/")
	c.Peek()
	c.Close()
	if got := cacheOf(ix); got != -65536 {
		t.Errorf("writer's cache_size = %d; want -65536", got)
	}
	ix.Close()
	ix, err := OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got := cacheOf(ix); got != -4096 {
		t.Errorf("reader's cache_size = %d; want -4096", got)
	}
}

// TestIdleConnections checks that the connections a run uses at once are
// kept once given back, with their page caches, not closed.
func TestIdleConnections(t *testing.T) {
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	var conns []*sql.Conn
	for range 6 {
		c, err := ix.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if st := ix.DB().Stats(); st.Idle != 6 || st.MaxIdleClosed != 0 {
		t.Errorf("after 6 connections given back: %d idle, %d closed; want 6 idle, none closed", st.Idle, st.MaxIdleClosed)
	}
}
