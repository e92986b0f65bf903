//go:build linux

package pipeline

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"same/internal/fsys"
	"same/internal/testfs"
)

// TestChurn runs nights on a btrfs (a live subvolume, read-only snapshots
// taken and deleted), the same mounted with compress=zstd, the same with
// files of three owners planned with -same-owner, the same with a snapshot
// every five changes (twelve kept), and an XFS, each after a
// day of changes drawn at random from what hosts do to files: new files
// and whole copies, copies reflinked, ranges overwritten in place,
// appends, truncations, holes punched, space preallocated inside and
// beyond the end, renames, hard links, deletions, images holding other
// files, NOCOW files. A day ends now and then with a reboot (a remount
// that changes every st_dev), and a night now and then applies only the
// first lines of its plan. Every night:
//
//   - hashfile and findsame exit 0, and findsame, which regroups only what
//     changed with the table of sums it keeps, prints the plan that
//     findsame -full prints on the same index;
//   - applysame does every line it is given, and every file's SHA-256 is
//     what it was;
//   - every snapshot is still read-only;
//   - the space statfs reports free does not shrink (by more than
//     metadataSlack) when the whole plan is applied: nothing is planned
//     that frees nothing.
//
// Nights without changes end it, and must come to a plan of nothing
// within three (a night may plan what the one before made pay: units left
// out for the metadata they would cost, whose leaves that night's sharing
// rewrote; leftovers its lines made).
//
// SAME_CHURN_NIGHTS and SAME_CHURN_SEED (numbers) run more nights, or
// other days, than the defaults (6 nights, seeds 1 and 2); scripts/churn
// runs many. With SAME_CHURN_KEEP set to a directory, a night whose plans
// differ leaves there what replays its findsame (see keeper).
func TestChurn(t *testing.T) {
	nights := envInt(t, "SAME_CHURN_NIGHTS", 6)
	seeds := []int{1, 2}
	if os.Getenv("SAME_CHURN_SEED") != "" {
		seeds = []int{envInt(t, "SAME_CHURN_SEED", 0)}
	}
	for _, fs := range []struct {
		name, fstype, compress string
		owners, hourly         bool
	}{
		{"btrfs", "btrfs", "", false, false},
		{"btrfs-zstd", "btrfs", "zstd", false, false},
		{"btrfs-owners", "btrfs", "", true, false},
		{"btrfs-hourly", "btrfs", "", false, true},
		{"xfs", "xfs", "", false, false},
	} {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%s/seed%d", fs.name, seed), func(t *testing.T) {
				churnNights(t, fs.fstype, fs.compress, fs.owners, fs.hourly, seed, nights)
			})
		}
	}
}

// churnNights runs TestChurn's nights, with the days seed draws, on a new
// filesystem of fstype mounted with the compress option given ("" for
// none). With owners, files belong to one of three owners, and findsame
// plans with -same-owner (the nightly service's default).
func churnNights(t *testing.T, fstype, compress string, owners, hourly bool, seed, nights int) {
	mnt := testfs.Mount(t, fstype, "1G")
	c := &churn{t: t, rng: rand.New(rand.NewPCG(uint64(seed), 7)), mnt: mnt, btrfs: fstype == "btrfs", compress: compress, owners: owners, hourly: hourly}
	if owners {
		c.findArgs = []string{"-same-owner"}
	}
	c.mountOptions()
	c.live = mnt
	if c.btrfs {
		c.live = filepath.Join(mnt, "live")
		testfs.Run(t, "btrfs", "subvolume", "create", c.live)
	}
	c.seed()
	db := filepath.Join(t.TempDir(), "index.db")
	for night := range nights {
		c.day(night)
		// Now and then only the start of the plan is applied, as when
		// applysame is stopped between lines or given the first lines
		// alone (head -n): the nights after mend it.
		partial := c.rng.IntN(3) == 0
		c.night(db, fmt.Sprintf("night %d", night), partial)
	}
	// Nights without changes come to a plan of nothing, within three:
	// a night's sharing can leave part of an extent referred to by no
	// file, or make a unit left out for the metadata it would cost pay,
	// which the night after plans.
	for quiet := range quietNights {
		got := c.night(db, fmt.Sprintf("night %d (no changes)", nights+quiet), false)
		if got == "" {
			return
		}
		if quiet == quietNights-1 {
			t.Errorf("night %d, the %s without changes, planned\n%s", nights+quiet, ordinal[quiet], got)
		}
	}
}

// quietNights is how many nights without changes may plan something
// before one plans nothing.
const quietNights = 3

var ordinal = []string{"first", "second", "third"}

// envInt returns the number in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, s)
	}
	return n
}

// churn changes a tree at random, as a day on a host would.
type churn struct {
	t     *testing.T
	rng   *rand.Rand
	mnt   string
	live  string // the tree changed: mnt, or btrfs's live subvolume
	btrfs bool   // snapshots and NOCOW files too
	// compress is the mount's compress option, "" for none.
	compress string
	rebooted bool // since the last night
	// owners gives new files, and now and then others, one of three
	// owners; findArgs are findsame's arguments beside -db.
	owners   bool
	findArgs []string
	// hourly takes a snapshot every five changes of a day too, as
	// snapper's hourly timeline does on a busy host, and keeps twelve.
	hourly bool
	blobs  [][]byte // data new files are made of, so that they repeat
	files  []string // regular files under live, by path
	snaps  []string // read-only snapshots of live, oldest first
	n      int      // names given
}

// seed writes the blobs and the first files. Half the blobs compress
// (bytes from 16 letters: each block still its own).
func (c *churn) seed() {
	for i := range 12 {
		b := random(c.rng, (16+c.rng.IntN(240))<<12)
		if i%2 == 1 {
			for j := range b {
				b[j] = 'a' + b[j]&15
			}
		}
		c.blobs = append(c.blobs, b)
	}
	for range 30 {
		c.newFile()
	}
}

// name returns a new path under live, in one of a few directories.
func (c *churn) name() string {
	c.n++
	return filepath.Join(c.live, fmt.Sprintf("d%d", c.rng.IntN(4)), fmt.Sprintf("f%04d", c.n))
}

// data returns a mix of blob pieces, block-aligned in the blob or not,
// and random bytes: up to about 1 MiB.
func (c *churn) data() []byte {
	var b []byte
	for range 1 + c.rng.IntN(4) {
		switch blob := c.blobs[c.rng.IntN(len(c.blobs))]; c.rng.IntN(4) {
		case 0:
			b = append(b, random(c.rng, 1+c.rng.IntN(64<<10))...)
		case 1:
			b = append(b, blob...)
		default:
			at := c.rng.IntN(len(blob)/4096) * 4096
			if c.rng.IntN(3) == 0 {
				at += c.rng.IntN(4096)
			}
			b = append(b, blob[at:min(len(blob), at+(1+c.rng.IntN(64))<<12)]...)
		}
	}
	return b
}

// pick returns one of the files, at random.
func (c *churn) pick() (int, string) {
	i := c.rng.IntN(len(c.files))
	return i, c.files[i]
}

func (c *churn) newFile() {
	p := c.name()
	write(c.t, p, c.data())
	c.own(p)
	c.files = append(c.files, p)
}

// own gives p one of three owners, at random, with owners.
func (c *churn) own(p string) {
	if !c.owners {
		return
	}
	uid := 1000 * c.rng.IntN(3)
	if err := os.Lchown(p, uid, uid); err != nil {
		c.t.Fatal(err)
	}
}

// mountOptions gives the mount its compress option.
func (c *churn) mountOptions() {
	if c.compress != "" {
		testfs.Run(c.t, "mount", "-o", "remount,compress="+c.compress, c.mnt)
	}
}

// day makes a day's changes, a few dozen, each drawn at random, and now
// and then ends with a reboot (testfs.Remount: every st_dev changes).
func (c *churn) day(night int) {
	t := c.t
	if night > 0 && c.rng.IntN(4) == 0 {
		defer func() {
			testfs.Remount(t, c.mnt)
			c.mountOptions()
			c.rebooted = true
		}()
	}
	if c.btrfs && night > 0 {
		c.snapshot(fmt.Sprintf("snap%d", night))
	}
	for op := range 20 + c.rng.IntN(20) {
		if c.hourly && op > 0 && op%5 == 0 {
			c.snapshot(fmt.Sprintf("snap%d.%d", night, op/5))
		}
		if len(c.files) < 10 {
			c.newFile()
			continue
		}
		i, p := c.pick()
		switch op := c.rng.IntN(15); op {
		case 0, 1:
			c.newFile()
		case 2: // a whole copy, its data written again
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			q := c.name()
			write(t, q, b)
			c.own(q)
			c.files = append(c.files, q)
		case 3: // a reflinked copy, NOCOW like its source (else EINVAL)
			q := c.name()
			write(t, q, nil)
			if c.nocow(p) {
				testfs.Run(t, "chattr", "+C", q)
			}
			testfs.Run(t, "cp", "--reflink=always", p, q)
			c.own(q)
			c.files = append(c.files, q)
		case 4: // an image holding a file, at a block boundary or not
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			pre := random(c.rng, c.rng.IntN(16)<<12)
			if c.rng.IntN(3) == 0 {
				pre = append(pre, random(c.rng, 1+c.rng.IntN(4095))...)
			}
			q := c.name()
			write(t, q, append(append(pre, b...), c.data()...))
			c.own(q)
			c.files = append(c.files, q)
		case 5: // a range overwritten in place
			c.edit(p, func(f *os.File, size int64) error {
				d := c.data()
				_, err := f.WriteAt(d[:min(64<<10, len(d))], c.rng.Int64N(size+1))
				return err
			})
		case 6: // appended to
			c.edit(p, func(f *os.File, size int64) error {
				_, err := f.WriteAt(c.data(), size)
				return err
			})
		case 7: // truncated, shorter or longer
			c.edit(p, func(f *os.File, size int64) error {
				return f.Truncate(c.rng.Int64N(2*size + 4096))
			})
		case 8: // a hole punched
			c.edit(p, func(f *os.File, size int64) error {
				return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
					c.rng.Int64N(size+1)&^4095, (1+c.rng.Int64N(32))<<12)
			})
		case 9: // space preallocated beyond the end, the size kept
			c.edit(p, func(f *os.File, size int64) error {
				return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, size, (1+c.rng.Int64N(64))<<12)
			})
		case 10: // space preallocated over the end, the file longer
			c.edit(p, func(f *os.File, size int64) error {
				return unix.Fallocate(int(f.Fd()), 0, size&^4095, (1+c.rng.Int64N(64))<<12)
			})
		case 11: // renamed
			q := c.name()
			os.MkdirAll(filepath.Dir(q), 0o755)
			if err := os.Rename(p, q); err != nil {
				t.Fatal(err)
			}
			c.files[i] = q
		case 12: // deleted
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			c.files = slices.Delete(c.files, i, i+1)
		case 13: // a second name
			q := c.name()
			os.MkdirAll(filepath.Dir(q), 0o755)
			if err := os.Link(p, q); err != nil {
				t.Fatal(err)
			}
			c.files = append(c.files, q)
		case 14: // a NOCOW file (btrfs), written after the attribute is set
			if !c.btrfs {
				c.newFile()
				break
			}
			q := c.name()
			write(t, q, nil)
			testfs.Run(t, "chattr", "+C", q)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(q, b, 0o644); err != nil {
				t.Fatal(err)
			}
			c.own(q)
			c.files = append(c.files, q)
		}
		if c.owners && len(c.files) > 0 && c.rng.IntN(10) == 0 {
			_, p := c.pick() // given to another owner
			c.own(p)
		}
		if c.rng.IntN(8) == 0 {
			testfs.Run(t, "sync")
		}
	}
	// Names removed or renamed by a change to another name of the same
	// file stay listed: drop those gone.
	c.files = slices.DeleteFunc(c.files, func(p string) bool {
		_, err := os.Lstat(p)
		return err != nil
	})
}

// snapshot takes a read-only snapshot of live named name, and deletes the
// oldest past three (past twelve, with hourly).
func (c *churn) snapshot(name string) {
	t := c.t
	snap := filepath.Join(c.mnt, name)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", c.live, snap)
	c.snaps = append(c.snaps, snap)
	keep := 3
	if c.hourly {
		keep = 12
	}
	if len(c.snaps) > keep {
		testfs.Run(t, "btrfs", "subvolume", "delete", c.snaps[0])
		c.snaps = c.snaps[1:]
	}
}

// nocow reports whether p has the NOCOW attribute.
func (c *churn) nocow(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	return fsys.NoCOW(f)
}

// edit opens p for writing and calls change with it and its size.
func (c *churn) edit(p string, change func(f *os.File, size int64) error) {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := change(f, st.Size()); err != nil {
		c.t.Fatalf("change %s: %v", p, err)
	}
}

// night runs hashfile, findsame (and -full, which must print the same
// plan) and applysame, checks every file's SHA-256 and the snapshots, and
// returns the plan. With partial, applysame is given only the plan's
// first lines, some of them, not all; the free space may then shrink
// (a rewrite's copy made, the lines sharing it not done).
func (c *churn) night(db, name string, partial bool) string {
	t := c.t
	if _, stderr, code := tool(t, nil, "hashfile", "-db", db, c.mnt); code != 0 {
		t.Fatalf("%s: hashfile: exit %d\n%s", name, code, stderr)
	}
	keep := c.keeper(db)
	full, fullErr := fullPlan(t, db, c.findArgs...)
	got, stderr, code := tool(t, nil, "findsame", append([]string{"-db", db}, c.findArgs...)...)
	if code != 0 {
		t.Fatalf("%s: findsame: exit %d\n%s", name, code, stderr)
	}
	if got != full {
		keep(name)
		t.Errorf("%s: findsame printed\n%s\n%s\nfindsame -full\n%s\n%s", name, got, stderr, full, fullErr)
	}
	lines := strings.Count(got, "\n")
	apply := got
	if partial && lines > 0 {
		k := c.rng.IntN(lines)
		apply = got[:indexLine(got, k)]
		name = fmt.Sprintf("%s (%d of %d lines applied)", name, k, lines)
	}
	before := testfs.SHA256Tree(t, c.mnt)
	free := testfs.FreeBytes(t, c.mnt)
	defer func() {
		if freed := testfs.FreeBytes(t, c.mnt) - free; freed < -metadataSlack && apply == got {
			t.Errorf("%s: statfs reports %d bytes less free after applysame\n%s\n%s", name, -freed, got, stderr)
		}
	}()
	results, applyErr, code := tool(t, []byte(apply), "applysame")
	if code != 0 {
		t.Fatalf("%s: applysame: exit %d\n%s\n%s", name, code, results, applyErr)
	}
	allDone(t, results)
	after := testfs.SHA256Tree(t, c.mnt)
	if !maps.Equal(before, after) {
		for p, s := range before {
			if after[p] != s {
				t.Errorf("%s: %s changed: SHA-256 %s, was %s", name, p, after[p], s)
			}
		}
		t.Fatalf("%s: files changed by applysame", name)
	}
	for _, s := range c.snaps {
		out, err := exec.Command("btrfs", "property", "get", "-ts", s, "ro").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ro=true" {
			t.Errorf("%s: snapshot %s: %s %v; want ro=true", name, s, out, err)
		}
	}
	t.Logf("%s: %d files, %d snapshots, rebooted %v; %d plan lines; %s", name, len(c.files), len(c.snaps), c.rebooted,
		lines, lastLine(stderr))
	c.rebooted = false
	return got
}

// keeper returns what keeps, when SAME_CHURN_KEEP names a directory, what
// replays a night's findsame: the index and its table as they are now,
// before findsame runs, and the filesystem's image as it is when called
// (findsame changes nothing in it), with where it was mounted (the index
// names its files by those paths), in a directory of SAME_CHURN_KEEP
// named after the test and the night.
func (c *churn) keeper(db string) func(night string) {
	dir := os.Getenv("SAME_CHURN_KEEP")
	if dir == "" {
		return func(string) {}
	}
	t := c.t
	saved := t.TempDir()
	testfs.Run(t, "sh", "-c", `cp -- "$1"* "$2"/`, "sh", db, saved)
	return func(night string) {
		to := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "-")+"-"+strings.ReplaceAll(night, " ", ""))
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		testfs.Run(t, "sync")
		image := strings.TrimSpace(testfs.Run(t, "sh", "-c", `losetup -nO BACK-FILE "$(findmnt -nvo SOURCE -M "$1")"`, "sh", c.mnt))
		testfs.Run(t, "sh", "-c", `cp -- "$1"/* "$2"/ && cp --sparse=always -- "$3" "$2"/img && echo "$4" > "$2"/mnt-path`, "sh", saved, to, image, c.mnt)
		t.Logf("kept in %s", to)
	}
}

// indexLine returns where line k (from 0) of s starts.
func indexLine(s string, k int) int {
	at := 0
	for range k {
		at += strings.IndexByte(s[at:], '\n') + 1
	}
	return at
}

// lastLine returns the last line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
