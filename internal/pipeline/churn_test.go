//go:build linux

package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
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

	"same/internal/cli"
	"same/internal/fsys"
	"same/internal/plan"
	"same/internal/testfs"
)

// TestChurn runs nights on a btrfs (a live subvolume, read-only snapshots
// taken and deleted), the same mounted with compress=zstd, the same with
// files of three owners planned with -same-owner, the same with a snapshot
// every five changes (twelve kept), the same filled to the last block at
// the end of every day, the same with each snapshot sent to a directory
// of it as a backup host receives them (btrfs send | btrfs receive), an XFS, and an XFS of 16 KiB blocks (where the
// kernel shares whole blocks of it only), each after a day of changes drawn at
// random from what hosts do to files: new files and whole copies, copies
// reflinked, ranges overwritten in place, appends, truncations, holes
// punched, space preallocated inside and beyond the end, renames, hard
// links, deletions, images holding other files, NOCOW files. A day ends now and then with a reboot (a remount
// that changes every st_dev), and a night now and then applies only the
// first lines of its plan, or has applysame killed (SIGKILL) after some
// of its results. With three owners, one of them owns a
// directory of live, and now and then, between findsame and applysame,
// swaps a file or a directory the plan names there: for a symlink to
// another file or directory, a FIFO, or a copy. Every night:
//
//   - hashfile and findsame exit 0, and findsame, which regroups only what
//     changed with the table of sums it keeps, prints the plan that
//     findsame -full prints on the same index;
//   - applysame does every line it is given, and every file's SHA-256 is
//     what it was; but on the full filesystem it may skip a rewrite for
//     want of room, with the destinations sharing its copy, and with
//     owners it must refuse every line and destination naming what the
//     owner swapped;
//   - every snapshot is still read-only;
//   - the space statfs reports free does not shrink (by more than
//     metadataSlack) when the whole plan is applied: nothing is planned
//     that frees nothing.
//
// Nights without changes end it, and must come to a plan of nothing
// within three (a night may plan what the one before made pay: units left
// out for the metadata they would cost, whose leaves that night's sharing
// rewrote; leftovers its lines made), or, on the full filesystem, to one
// that waits for room: its every rewrite left for want of it, and
// nothing freed by the rest.
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
		owners, hourly, full   bool
		received               bool
	}{
		{"btrfs", "btrfs", "", false, false, false, false},
		{"btrfs-zstd", "btrfs", "zstd", false, false, false, false},
		{"btrfs-owners", "btrfs", "", true, false, false, false},
		{"btrfs-hourly", "btrfs", "", false, true, false, false},
		{"btrfs-full", "btrfs", "", false, false, true, false},
		{"btrfs-received", "btrfs", "", false, false, false, true},
		{"xfs", "xfs", "", false, false, false, false},
		{"xfs16k", "xfs16k", "", false, false, false, false},
	} {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%s/seed%d", fs.name, seed), func(t *testing.T) {
				c := &churn{t: t, rng: rand.New(rand.NewPCG(uint64(seed), 7)), btrfs: fs.fstype == "btrfs",
					compress: fs.compress, owners: fs.owners, hourly: fs.hourly, full: fs.full, received: fs.received}
				churnNights(t, c, fs.fstype, nights)
			})
		}
	}
}

// churnNights runs TestChurn's nights, with the days c's generator draws,
// on a new filesystem of fstype. With c.owners, files belong to one of
// three owners, and findsame plans with -same-owner (the nightly
// service's default).
func churnNights(t *testing.T, c *churn, fstype string, nights int) {
	mnt := testfs.Mount(t, fstype, "1G")
	c.mnt = mnt
	if c.owners {
		c.findArgs = []string{"-same-owner"}
	}
	c.mountOptions()
	c.live = mnt
	if c.btrfs {
		c.live = filepath.Join(mnt, "live")
		testfs.Run(t, "btrfs", "subvolume", "create", c.live)
	}
	if c.owners {
		// The user must reach her directory: the test's directories
		// above the mount let others pass.
		for d := filepath.Dir(mnt); strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		sub := filepath.Join(c.userDir(), "sub")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		testfs.Run(t, "chown", "1000:1000", c.userDir(), sub)
	}
	c.seed()
	db := filepath.Join(t.TempDir(), "index.db")
	for night := range nights {
		c.day(night)
		if c.full {
			c.fill()
		}
		// Now and then only the start of the plan is applied, as when
		// applysame is stopped between lines or given the first lines
		// alone (head -n), or applysame is killed (SIGKILL) once it
		// wrote some results: the nights after mend it.
		end := whole
		switch c.rng.IntN(6) {
		case 0, 1:
			end = head
		case 2:
			end = killed
		}
		c.night(db, fmt.Sprintf("night %d", night), end)
	}
	// Nights without changes come to a plan of nothing, within three:
	// a night's sharing can leave part of an extent referred to by no
	// file, or make a unit left out for the metadata it would cost pay,
	// which the night after plans.
	for quiet := range quietNights {
		got := c.night(db, fmt.Sprintf("night %d (no changes)", nights+quiet), calm)
		if got == "" || c.waits {
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
	// full fills the filesystem at the end of every day, to the last
	// block, with space preallocated in a file beside live (filler).
	full bool
	// received sends each snapshot into the directory received of the
	// same filesystem (btrfs send | btrfs receive, incremental from the
	// snapshot before), as a backup host receives them, and deletes it
	// there with its snapshot: each received snapshot but the first is
	// made of the one before and written after it was made.
	received bool
	// waits says that the last night's plan, applied whole, waits for
	// room (full): its every rewrite was left for want of it, and the
	// rest freed nothing.
	waits bool
	blobs [][]byte // data new files are made of, so that they repeat
	files []string // regular files under live, by path
	snaps []string // read-only snapshots of live, oldest first
	recvd []string // with received, the snapshots received, oldest first
	n     int      // names given
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

// name returns a new path under live, in one of a few directories (with
// owners, half of those in d2, which uid 1000 owns, in its subdirectory
// sub).
func (c *churn) name() string {
	c.n++
	d := fmt.Sprintf("d%d", c.rng.IntN(4))
	if c.owners && d == "d2" && c.rng.IntN(2) == 0 {
		d = "d2/sub"
	}
	return filepath.Join(c.live, d, fmt.Sprintf("f%04d", c.n))
}

// userDir is the directory that uid 1000 owns, with owners.
func (c *churn) userDir() string { return filepath.Join(c.live, "d2") }

// meddle has uid 1000, the owner of userDir, swap one of the files or
// the directory the plan p names there: for a symlink (to another file of
// the plan, or to the directory d0), a FIFO, or a copy of the file. It
// returns the paths swapped (a directory's ends in a slash), what it did,
// and what puts them back; nothing when p names nothing there.
func (c *churn) meddle(p string) ([]string, string, func()) {
	t := c.t
	var all, named []string // the paths the plan names, and those in userDir
	for line := range strings.Lines(p) {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatalf("plan line %s: %v", line, err)
		}
		for _, q := range planPaths(rec) {
			if slices.Contains(all, q) {
				continue
			}
			all = append(all, q)
			if strings.HasPrefix(q, c.userDir()+"/") {
				named = append(named, q)
			}
		}
	}
	if len(named) == 0 {
		return nil, "", func() {}
	}
	q := named[c.rng.IntN(len(named))]
	aside := q + ".aside"
	how := c.rng.IntN(4)
	sub := filepath.Join(c.userDir(), "sub")
	if how == 0 && !strings.HasPrefix(q, sub+"/") {
		how = 1
	}
	var script string
	switch how {
	case 0: // the directory, for a symlink to a directory of root's
		q, aside = sub, sub+".aside"
		script = `mv -T -- "$1" "$2" && ln -s ../d0 "$1"`
	case 1: // for a symlink to another file the plan names
		script = `mv -T -- "$1" "$2" && ln -s "$3" "$1"`
	case 2:
		script = `mv -T -- "$1" "$2" && mkfifo "$1"`
	case 3: // for a copy: the same bytes, another inode
		script = `cp -- "$1" "$1.copy" && mv -T -- "$1" "$2" && mv -T -- "$1.copy" "$1"`
	}
	target := all[0]
	if target == q {
		target = all[len(all)-1]
	}
	testfs.Run(t, "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", script, "sh", q, aside, target)
	undo := func() {
		if err := os.RemoveAll(q); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(aside, q); err != nil {
			t.Fatal(err)
		}
	}
	if how == 0 {
		q += "/"
	}
	return []string{q}, q + [...]string{" for a symlink", " for a symlink", " for a FIFO", " for a copy"}[how], undo
}

// planPaths returns the paths a plan record names.
func planPaths(rec plan.Record) []string {
	switch r := rec.(type) {
	case *plan.Dedupe:
		out := []string{r.Src.Path}
		for _, d := range r.Dst {
			out = append(out, d.Path)
		}
		return out
	case *plan.Rewrite:
		if r.CopyNextTo != nil {
			return []string{r.File.Path, r.CopyNextTo.Path}
		}
		return []string{r.File.Path}
	}
	return nil
}

// swapped reports whether path p is one of those swapped, or lies below.
func swapped(swaps []string, p string) bool {
	return slices.ContainsFunc(swaps, func(s string) bool { return p == s || strings.HasSuffix(s, "/") && strings.HasPrefix(p, s) })
}

// doneButSwapped checks applysame's results of plan p after meddle
// swapped swaps: nothing naming them is done, and everything else is
// (but destinations skipped with a rewrite not done). It returns how many
// lines and destinations named what was swapped.
func doneButSwapped(t *testing.T, p, results string, swaps []string) int {
	t.Helper()
	refused := 0
	var recs []plan.Record
	for line := range strings.Lines(p) {
		rec, err := plan.Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	for line := range strings.Lines(results) {
		var r plan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		names := planPaths(recs[r.Line-1])
		touched := slices.ContainsFunc(names, func(q string) bool { return swapped(swaps, q) })
		switch {
		case r.Rewrite != nil || r.Src != nil && swapped(swaps, r.Src.Path):
			if touched == (r.Status == plan.StatusDone) {
				t.Errorf("result %s (swapped %q): want done, unless it names what was swapped", line, swaps)
			}
			if touched {
				refused++
			}
		default:
			for _, d := range r.Dst {
				switch {
				case swapped(swaps, d.Path):
					if d.Status == plan.DstDeduped {
						t.Errorf("result %s: %s deduped, though swapped (%q)", line, d.Path, swaps)
					}
					refused++
				case d.Status != plan.DstDeduped && (d.Status != plan.DstSkipped || !strings.Contains(d.Error, "rewrite")):
					t.Errorf("result %s: %s %s; want deduped (swapped %q)", line, d.Path, d.Status, swaps)
				}
			}
		}
	}
	return refused
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
	if c.full {
		// Room for the day's changes.
		if err := os.Remove(c.filler()); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		testfs.Run(t, "sync")
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
	if c.rng.IntN(5) == 0 && !c.received { // btrfs receive makes no path of PATH_MAX or more
		c.toggleFar()
	}
	// Names removed or renamed by a change to another name of the same
	// file stay listed: drop those gone.
	c.files = slices.DeleteFunc(c.files, func(p string) bool {
		_, err := os.Lstat(p)
		return err != nil
	})
}

// farName is the name of a file in a directory deep below live (deepRel)
// whose path is longer than PATH_MAX, in live and in its snapshots: the
// walk cannot look it up, and hashfile reports it every night.
var farName = strings.Repeat("f", 250)

// deepRel returns where, below live, the directory that holds farName
// lies: with farName, its path in live is at least PATH_MAX (4096) bytes
// long; without, at most 4053 bytes, so that in a snapshot (whose name is
// a few bytes longer than live's) it is still shorter than PATH_MAX.
func (c *churn) deepRel() string {
	rel := "deep"
	for len(filepath.Join(c.live, rel)) < 4096-len(farName)+8 {
		rel = filepath.Join(rel, strings.Repeat("d", 200))
	}
	return rel
}

// toggleFar removes farName from live if it is there, else makes it, in
// its directory with a file beside it that findsame plans with the
// others (and the days change).
func (c *churn) toggleFar() {
	t := c.t
	deep := filepath.Join(c.live, c.deepRel())
	if c.hasFar(c.live) {
		dir, err := os.Open(deep)
		if err == nil {
			err = unix.Unlinkat(int(dir.Fd()), farName, 0)
			dir.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	c.n++
	q := filepath.Join(deep, fmt.Sprintf("f%04d", c.n))
	write(t, q, c.data())
	c.own(q)
	c.files = append(c.files, q)
	dir, err := os.Open(deep)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), farName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, err = unix.Write(fd, c.data())
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
}

// hasFar reports whether tree (live or a snapshot) holds farName.
func (c *churn) hasFar(tree string) bool {
	dir, err := os.Open(filepath.Join(tree, c.deepRel()))
	if err != nil {
		return false
	}
	defer dir.Close()
	var st unix.Stat_t
	return unix.Fstatat(int(dir.Fd()), farName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// filler is the file that fill makes.
func (c *churn) filler() string {
	return filepath.Join(c.mnt, "filler")
}

// fill preallocates space in filler until not one more block fits, and
// commits it: statfs then reports (next to) nothing available.
func (c *churn) fill() {
	testfs.Fill(c.t, c.mnt, 0)
}

// snapshot takes a read-only snapshot of live named name, and deletes the
// oldest past three (past twelve, with hourly).
func (c *churn) snapshot(name string) {
	t := c.t
	snap := filepath.Join(c.mnt, name)
	testfs.Run(t, "btrfs", "subvolume", "snapshot", "-r", c.live, snap)
	if c.received {
		to := filepath.Join(c.mnt, "received")
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		parent := ""
		if len(c.snaps) > 0 {
			parent = c.snaps[len(c.snaps)-1]
		}
		testfs.Receive(t, snap, parent, to)
		c.recvd = append(c.recvd, filepath.Join(to, name))
	}
	c.snaps = append(c.snaps, snap)
	keep := 3
	if c.hourly {
		keep = 12
	}
	if len(c.snaps) > keep {
		testfs.Run(t, "btrfs", "subvolume", "delete", c.snaps[0])
		c.snaps = c.snaps[1:]
		if c.received {
			testfs.Run(t, "btrfs", "subvolume", "delete", c.recvd[0])
			c.recvd = c.recvd[1:]
		}
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
// ending is how much of its plan a night applies.
type ending int

const (
	whole  ending = iota
	head          // the first lines, some of them, not all
	killed        // applysame killed once it wrote some results
	calm          // whole, and no owner swaps what the plan names
)

func (c *churn) night(db, name string, end ending) string {
	t := c.t
	// hashfile reports farName in each tree that holds it, every night,
	// and nothing else.
	var far []string
	for _, tree := range slices.Concat([]string{c.live}, c.snaps, c.recvd) {
		if c.hasFar(tree) {
			far = append(far, fmt.Sprintf("hashfile: lstat %s: file name too long", filepath.Join(tree, c.deepRel(), farName)))
		}
	}
	_, stderr, code := tool(t, nil, "hashfile", "-db", db, c.mnt)
	var failed []string
	for line := range strings.Lines(stderr) {
		if strings.HasSuffix(line, ": file name too long\n") {
			failed = append(failed, strings.TrimSuffix(line, "\n"))
		}
	}
	slices.Sort(far)
	slices.Sort(failed)
	if (code != 0 || far != nil) && (code != cli.ExitPartial || !slices.Equal(failed, far)) {
		t.Fatalf("%s: hashfile: exit %d; want %d, reporting %q\n%s", name, code, map[bool]int{true: cli.ExitPartial}[far != nil], far, stderr)
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
	// With the sums and mappings in temporary files (the partitions
	// packed), a few pairs each, the plan is the same.
	if spilled, spilledErr := fullPlan(t, db, append(slices.Clone(c.findArgs), "-mem", "32K")...); spilled != full {
		keep(name)
		t.Errorf("%s: findsame -full -mem 32K printed\n%s\n%s\nfindsame -full\n%s\n%s", name, spilled, spilledErr, full, fullErr)
	}
	lines := strings.Count(got, "\n")
	apply := got
	kill := -1 // applysame is killed after that many results
	switch {
	case lines == 0:
	case end == head:
		k := c.rng.IntN(lines)
		apply = got[:indexLine(got, k)]
		name = fmt.Sprintf("%s (%d of %d lines applied)", name, k, lines)
	case end == killed:
		kill = c.rng.IntN(lines)
		name = fmt.Sprintf("%s (applysame killed after %d of %d results)", name, kill, lines)
	}
	before := testfs.SHA256Tree(t, c.mnt)
	free := testfs.FreeBytes(t, c.mnt)
	var swaps []string
	defer func() {
		if freed := testfs.FreeBytes(t, c.mnt) - free; freed < -metadataSlack && apply == got && swaps == nil && kill < 0 {
			t.Errorf("%s: statfs reports %d bytes less free after applysame\n%s\n%s", name, -freed, got, stderr)
		}
	}()
	undo := func() {}
	if c.owners && kill < 0 && end != calm && c.rng.IntN(2) == 0 {
		var what string
		if swaps, what, undo = c.meddle(apply); swaps != nil {
			name = fmt.Sprintf("%s (its owner swapped %s)", name, what)
		}
	}
	var results, applyErr string
	if kill >= 0 {
		results, applyErr, code = killAfter(t, []byte(apply), kill, "applysame")
	} else {
		results, applyErr, code = tool(t, []byte(apply), "applysame")
	}
	undo()
	switch {
	case kill >= 0 && code == -1: // killed
	case swaps != nil && code == 3: // items not done
	case code != 0:
		t.Fatalf("%s: applysame: exit %d\n%s\n%s", name, code, results, applyErr)
	}
	if swaps != nil {
		name = fmt.Sprintf("%s (%d items refused)", name, doneButSwapped(t, apply, results, swaps))
	} else if c.full {
		n := doneOrNoRoom(t, results)
		if n > 0 {
			name = fmt.Sprintf("%s (%d rewrites left for want of room)", name, n)
		}
		c.waits = n > 0 && n == strings.Count(got, `"type":"rewrite"`) && apply == got && kill < 0 &&
			testfs.FreeBytes(t, c.mnt)-free <= metadataSlack
	} else {
		allDone(t, results)
	}
	after := testfs.SHA256Tree(t, c.mnt)
	if !maps.Equal(before, after) {
		for p, s := range before {
			if after[p] != s {
				t.Errorf("%s: %s changed: SHA-256 %s, was %s", name, p, after[p], s)
			}
		}
		t.Fatalf("%s: files changed by applysame", name)
	}
	for _, s := range slices.Concat(c.snaps, c.recvd) {
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

// killAfter runs one of the built tools, kills it (SIGKILL) once it has
// written n lines to its stdout, and returns its stdout, its stderr and
// its exit status (-1 when killed).
func killAfter(t *testing.T, stdin []byte, n int, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rd := bufio.NewReader(pipe)
	for k := 0; ; k++ {
		if k == n {
			cmd.Process.Kill()
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if k < n {
			out.WriteString(line) // a result written after the kill is not looked at
		}
	}
	code := exitCode(t, name, cmd.Wait())
	return out.String(), errb.String(), code
}

// doneOrNoRoom checks that applysame's results are those of a full
// filesystem: every line done but rewrites skipped for want of room
// (refused, or out of space while copying: nothing shared), and the
// destinations of lines that lie in their extents, skipped; it returns
// how many rewrites were skipped.
func doneOrNoRoom(t *testing.T, results string) int {
	t.Helper()
	skipped := 0
	for line := range strings.Lines(results) {
		var r plan.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Status == plan.StatusDone:
		case r.Rewrite != nil:
			if r.Status != plan.StatusSkipped || r.Rewrite.Shared != 0 ||
				!strings.Contains(r.Error, "not enough room") && !strings.Contains(r.Error, "(ENOSPC)") && r.Rewrite.Errno != "ENOSPC" {
				t.Errorf("result %s; want done, or skipped for want of room", line)
			}
			skipped++
		case r.Status == plan.StatusPartial || r.Status == plan.StatusSkipped:
			for _, d := range r.Dst {
				if d.Status != plan.DstDeduped && (d.Status != plan.DstSkipped || !strings.Contains(d.Error, "rewrite")) {
					t.Errorf("result %s; destination %s %s %q: want deduped, or skipped with its extent's rewrite", line, d.Path, d.Status, d.Error)
				}
			}
		default:
			t.Errorf("result %s; want done, or skipped for want of room", line)
		}
	}
	return skipped
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
