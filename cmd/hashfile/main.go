// Hashfile records the block hashes and extents of files in the index.
//
// Usage:
//
//	hashfile [flags] PATH...
//	find ... -print0 | hashfile -0 -
//
// Hashfile walks each PATH (directories recursively, without following
// symbolic links, nor taking a PATH that is one or has one above it),
// hashes every regular non-empty file in fixed-size
// blocks with SHA-256, and records the file's identity (device, inode,
// size, mtime, ctime), its NOCOW attribute (on btrfs as root, also set
// for a file that keeps no checksums of its data), its block hashes and its
// FIEMAP extents in the index that findsame reads, and for each
// filesystem its type, block size and ID (on btrfs the filesystem's UUID,
// which its subvolumes share). A PATH of "-" reads paths from standard
// input, one per line, or NUL-separated with -0.
//
// Re-runs are incremental: a file whose device, inode, size, mtime and
// ctime are unchanged is not read; a renamed file is updated without being
// read; files under the given PATHs that are gone are removed from the
// index. On btrfs (as root) a re-run walks only below the directories
// that changed since the last run, as the tree search shows (none: the
// subvolume or PATH is not walked at all), and takes the files elsewhere
// as the index has them, looking again only at those whose inodes
// changed, and where it is at each file whose inode changed that the
// index does not have (one that was empty, written since); a directory
// whose access time alone was written does not count as changed. A file whose inode did not change is taken for unchanged as its
// directory lists it, without lstat; an unchanged file whose extents
// changed since the last run (deduplicated by applysame, reflinked,
// defragmented) has them recorded again without its data being read.
// Hard links are hashed once. Symbolic links, devices, FIFOs and sockets
// are never opened. A file that changes while it is read is not recorded
// and is reported. A file or directory that cannot be read (an I/O error,
// a path too long) is reported, what the index had of it is kept, and the
// next run looks at it again, on btrfs by walking its directory again
// though nothing changed there. On an index made by a version that did
// not record the NOCOW attribute, the first run opens each unchanged file
// once to read it, without reading its data.
//
// The index is -db, else $SAME_DB, else $XDG_STATE_HOME/same/index.db
// (~/.local/state/same/index.db). Its block size is fixed when it is
// created; running with another -b is refused.
//
// Holes in sparse files are found with SEEK_DATA and SEEK_HOLE and never
// read; the zero blocks at the end of a file take no room in the index.
// Files are read in the order their data lies on the disk (their first
// extent), as far as a window of up to 1,024 files met by the walk
// allows, not by name: fewer seeks on a rotating disk, longer runs of
// reads on any. Files of 256 MiB or more are read first.
//
// Filesystems that cannot deduplicate (ext4, tmpfs, vfat, NFS, SMB, FUSE,
// overlayfs, XFS made without reflink, and others by type) are not walked:
// no plan could use their data, and reading a network share or a cloud
// bucket mounted through FUSE can take days. Nor are pseudo filesystems
// (proc, sysfs, debugfs, cgroup, autofs and the like), which hold no file
// data: reading /proc/kcore alone would take for ever. Each is named once
// on standard error as the walk meets it, and what the index held under
// it is pruned. Through such a filesystem, the walk still goes to the
// mount points below of filesystems that can deduplicate (a btrfs
// mounted on /srv/data of an ext4 root), and only there. Where it was mounted before the run began, the walk goes
// by what /proc/self/mountinfo says and does not even look at its mount
// point, nor at a PATH on it: the lstat of a hard NFS mount whose server
// is down, or of a FUSE mount whose server does not answer, would wait
// for ever. One mounted since is lstat'ed without asking its server (the
// attributes the kernel holds), found to be a mount the run did not
// know of, and left out by what /proc/self/mountinfo says then, unopened.
//
//	hashfile: nfs at /srv/share cannot deduplicate: not walked
//	hashfile: proc at /proc holds no file data: not walked
//
// Progress goes to standard error when it is a terminal: bytes hashed of
// the bytes to hash, percentage, rate and time left. Until the walk ends
// the total is an estimate, marked "~": the bytes queued so far, or the
// space used on the filesystems the walk lists under the PATHs when that
// is more. While a
// re-run walks, it shows files met of those the last complete run met
// under the same PATHs (an estimate too); last, files pruned of those to
// prune. A summary line follows at the end. -q turns off progress, summary and warnings.
// Per-file errors name the file. A first SIGINT or SIGTERM stops the run
// within about a second, committing what was hashed; a second ends it at
// once.
//
// Examples:
//
//	hashfile /srv/data
//	hashfile -db /var/lib/same/backup.db -x --exclude '*.tmp' /backup
//	find /srv -name '*.img' -print0 | hashfile -0 -
//
// Exit status: 0 all files recorded, 1 fatal error, 2 usage error,
// 3 some files could not be read (each was reported), 130 interrupted
// (what was hashed so far is committed; the next run completes it).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/fstype"
	"same/internal/fsys"
	"same/internal/index"
	"same/internal/scan"
	"same/internal/walk"
)

func main() {
	ctx, stop := cli.WithSignals(context.Background(), "hashfile", os.Stderr)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("hashfile", err, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hashfile", flag.ContinueOnError)
	db := fs.String("db", index.DefaultPath(), "index `file` (default: $SAME_DB, else $XDG_STATE_HOME/same/index.db)")
	var exclude cli.Strings
	fs.Var(&exclude, "exclude", "leave out files and directories whose name or path matches `glob` (repeatable)")
	oneFS := fs.Bool("x", false, "stay on the filesystem of each PATH")
	newFS := fs.Bool("new-fs", false, "accept a PATH found on another filesystem or subvolume than at the last run (a replaced disk), and prune the files of filesystems not met under the PATHs (a disk removed); without it such a PATH is refused, and such files are kept, so that a mount point whose filesystem is not mounted never empties the index")
	jobs := fs.Int("j", scan.DefaultJobs(), "`workers` reading and hashing in parallel (default: two per CPU, so that reads overlap hashing)")
	bs := cli.Size(4096)
	fs.Var(&bs, "b", "block `size` for a new index (power of two, 4K to 16M); an existing index keeps its own")
	nul := fs.Bool("0", false, "paths read from standard input are NUL-separated")
	quiet := fs.Bool("q", false, "no progress, summary or warnings (errors are still reported)")
	showVersion := fs.Bool("version", false, "print the version, the index format and the SHA-256 implementation in use")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprint(stdout, cli.VersionLine("hashfile", fmt.Sprintf("index format %d", index.Version()), "SHA-256: "+blockhash.Path()))
		return nil
	}
	if fs.NArg() == 0 {
		return cli.Usagef("no PATH given")
	}
	if *jobs < 1 {
		return cli.Usagef("-j %d: want at least 1", *jobs)
	}
	if err := blockhash.CheckBlockSize(int(bs)); err != nil {
		return cli.Usagef("-b %s: want a power of two from 4K to 16M", &bs)
	}
	if err := walk.CheckPatterns(exclude); err != nil {
		return cli.Usagef("--exclude: %v", err)
	}
	paths, err := gather(fs.Args(), stdin, *nul)
	if err != nil {
		return err
	}
	roots, err := scan.Abs(paths)
	if err != nil {
		return err
	}
	stop, err := cli.Profile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()

	lock, err := index.LockWriter(*db)
	if err != nil {
		return err
	}
	defer lock.Close() // after the index, deferred below
	ix, err := index.Open(*db)
	if err != nil {
		return index.Explain(*db, err)
	}
	defer ix.Close()
	for _, w := range ix.Warnings() {
		fmt.Fprintf(stderr, "hashfile: warning: %s\n", w)
	}

	var bar *cli.Progress
	if !*quiet {
		bar = cli.NewProgress(stderr)
	}
	// Errors come from every reader: one line at a time (the progress
	// line, when there is one, serialises them itself and clears it
	// first; without it, mu does).
	var mu sync.Mutex
	opts := scan.Options{
		BlockSize: int(bs),
		Jobs:      *jobs,
		Exclude:   exclude,
		OneFS:     *oneFS,
		NewFS:     *newFS,
		Listed:    slices.Contains(fs.Args(), "-"),
		// No plan could use the data of a filesystem that cannot
		// deduplicate: it is not read.
		DedupeOnly: true,
		Index:      *db,
		Error: func(path string, err error) {
			mu.Lock()
			defer mu.Unlock()
			bar.Printf(stderr, "hashfile: %v\n", err)
		},
		Unwalked: func(path, fsType string, pseudo bool) {
			if *quiet {
				return
			}
			why := "cannot deduplicate"
			if pseudo {
				why = "holds no file data"
			}
			mu.Lock()
			defer mu.Unlock()
			bar.Printf(stderr, "hashfile: %s at %s %s: not walked\n", fsType, path, why)
		},
	}
	if bar != nil {
		used := usedSpace(roots)
		opts.Progress = func(s scan.Stats) { bar.Update(meter(s, used)) }
	}
	st, err := scan.Run(ctx, ix, roots, opts)
	bar.Clear()
	if !*quiet && (err == nil || st.Seen > 0) {
		fmt.Fprintln(stderr, summary(st))
	}
	if err != nil {
		return index.Explain(*db, err)
	}
	if st.Failed > 0 {
		return cli.ErrPartial
	}
	return nil
}

const usage = `
Usage: hashfile [flags] PATH...
       find ... -print0 | hashfile -0 -

Records the block hashes, identity and extents of files in the index.

Hashfile walks each PATH (directories recursively, without following
symbolic links, nor taking a PATH that is one or has one above it), hashes
every regular non-empty file in fixed-size blocks
with SHA-256, and records the file's identity (device, inode, size, mtime,
ctime), its NOCOW attribute (on btrfs, as root, a file without checksums
of its data counts as NOCOW), its block hashes and its FIEMAP extents in the
index that findsame reads. A PATH of "-" reads paths from standard input,
one per line, or NUL-separated with -0. Filesystems that cannot
deduplicate (ext4, tmpfs, NFS, SMB, FUSE, overlayfs, XFS made without
reflink, ...) and pseudo filesystems (proc, sysfs, ...) are not walked
(but for the way through them to the mount points below of those that
can, such as a btrfs mounted on a directory of an ext4 root); each is
named once. Nor are the index and the files beside it named
after it (INDEX-wal, INDEX-sums, ...), where a PATH holds them.

Re-runs are incremental: a file whose identity is unchanged is not read; a
renamed file is updated without being read; files under the given PATHs
that are gone are removed from the index, but for those of a filesystem
the walk did not meet at all (not mounted where it was: kept, and counted
in the summary, unless -new-fs). On btrfs (as root) a re-run
walks only below the directories that changed since the last run, as the
tree search shows (none: the subvolume or PATH is not walked at all), and
takes the files elsewhere as the index has them, looking again only at
those whose inodes changed, and where it is at each file whose inode
changed that the index does not have (one that was empty, written
since); a directory whose access time alone was written does not count
as changed. A file whose inode did not change is taken
for unchanged as its directory lists it, without lstat; an unchanged
file whose extents changed since the last run (deduplicated, reflinked,
defragmented) has them recorded again without its data being read. Hard
links are hashed once. Symbolic links, devices, FIFOs and sockets are
never opened. A file that changes while it is read is not recorded and
is reported. A file or directory that cannot be read (an I/O error, a
path too long) is reported, what the index had of it is kept, and the
next run looks at it again, on btrfs by walking its directory again
though nothing changed there. Killed at any moment, hashfile leaves an
index that the next run completes.

Progress goes to standard error when it is a terminal, and a summary line
at the end unless -q. Per-file errors name the file. Flags may be written
with one or two dashes; a SIZE takes the suffixes K, M and G (powers of
1024).

The summary counts files under the PATHs: seen, the regular non-empty
files met (each name of a hard link counts); hashed, those whose sums were
recorded anew, read or taken from extents the index had hashed already
(the same extent in another file, snapshot or reflinked copy), some of
them as recorded in the subvolume a new snapshot was taken from, or in
an older snapshot of it;
unchanged, not read (of them, renamed); hard links, further names of a
file already met; skipped, symbolic links, devices, FIFOs, sockets, empty
files and (with -x) files on other filesystems, in the directories listed
(a btrfs re-run lists only those that changed, so it counts fewer), and
files too large to plan, each named: 2^32 blocks or more before their
data ends (a sparse file has no sums past its last data block), or
block sums of more than an eighth of the machine's memory;
failed, files that could
not be read or changed while read, each reported (exit status 3); pruned,
index entries removed for files gone. On btrfs it adds the unchanged files
whose extents were recorded again, those the tree search showed unchanged,
and the subvolumes and PATHs left unwalked or walked only in part; last,
the bytes read and the time taken.

Examples:
  hashfile /srv/data
  hashfile -db /var/lib/same/backup.db -x --exclude '*.tmp' /backup
  find /srv -name '*.img' -print0 | hashfile -0 -

Environment:
  SAME_DB         the index when -db is not given
  XDG_STATE_HOME  the index is $XDG_STATE_HOME/same/index.db when neither
                  -db nor SAME_DB is given (default ~/.local/state)

Files:
  ~/.local/state/same/index.db   the default index (mode 0600, in a
                                 directory of mode 0700)
  INDEX-wal, INDEX-shm           SQLite's log, emptied at the end of each
                                 run, and its shared memory (32 KiB): kept,
                                 so that findsame reads the index on a full
                                 disk
  INDEX-lock                     held by the hashfile writing the index
                                 (its pid inside): a second hashfile on it
                                 stops at once, naming the first
  (no name), in INDEX's directory
                                 the listing of a directory of more than
                                 131,072 entries, sorted there rather than
                                 held in memory (about 30 bytes an entry;
                                 a file without a name, gone when hashfile
                                 ends, however it ends)

Exit status:
  0    all files recorded
  1    fatal error (no room left for the index: the message says how much
       is free there; the files committed so far are kept, and the next
       run goes on from them; or another hashfile is writing the index)
  2    usage error
  3    some files could not be read (each was reported)
  130  interrupted (what was hashed so far is committed; the next run
       completes it)

See also: findsame(1), applysame(1)
`

// gather expands "-" into the paths read from stdin.
func gather(args []string, stdin io.Reader, nul bool) ([]string, error) {
	var paths []string
	for _, a := range args {
		if a != "-" {
			paths = append(paths, a)
			continue
		}
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		if nul {
			sc.Split(splitNUL)
		}
		for sc.Scan() {
			if p := sc.Text(); p != "" {
				paths = append(paths, p)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read paths from stdin: %w", err)
		}
	}
	if len(paths) == 0 {
		return nil, cli.Usagef("no paths on standard input")
	}
	return paths, nil
}

func splitNUL(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return cli.Bytes(int64(float64(n)/d.Seconds())) + "/s"
}

// meter is the progress of a run, in the phase that takes longest.
// While a re-run walks, it counts files met against those the last
// complete run met under the same roots (an estimate). Otherwise it counts
// bytes hashed; until the walk ends, the total is an estimate: the bytes
// queued so far, or the space used on the filesystems listed under the
// roots when that is more (an upper bound where the roots are whole
// filesystems without sparse files). Last, it counts the files pruned.
func meter(s scan.Stats, used int64) cli.Meter {
	switch {
	case s.ToPrune > 0:
		return cli.Meter{Phase: "pruning", Done: s.Pruned, Total: s.ToPrune, Unit: "files"}
	case !s.WalkDone && s.Known > 0:
		return cli.Meter{
			Phase:    "walking",
			Done:     s.Seen,
			Total:    max(s.Known, s.Seen),
			Estimate: true,
			Unit:     "files",
			Elapsed:  s.Elapsed,
			Extra:    fmt.Sprintf("%d hashed, %s read", s.Hashed, cli.Bytes(s.BytesRead)),
		}
	}
	m := cli.Meter{
		Phase:   "hashing",
		Done:    s.BytesRead,
		Total:   s.ToRead,
		Elapsed: s.Elapsed,
		Extra:   fmt.Sprintf("%d files, %d hashed", s.Seen, s.Hashed),
	}
	if !s.WalkDone {
		m.Total, m.Estimate = max(s.ToRead, used), true
	}
	return m
}

// usedSpace is the space used on the filesystems that a walk of roots
// lists (each counted once): a root's own, and those mounted below it,
// where they can deduplicate. Mounts the walk leaves out by their type
// (ext4, NFS, FUSE...) are not looked at: statfs would wait for a server
// that is gone.
func usedSpace(roots []string) int64 {
	var mounts *walk.Mounts
	if ms, err := fsys.Mounts(); err == nil {
		mounts = walk.NewMounts(ms, true)
	}
	seen := make(map[unix.Fsid]bool)
	var used int64
	for _, r := range roots {
		for _, p := range mounts.Listed(r) {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if errors.Is(err, unix.ENOTDIR) { // a root that is a file
				fd, err = unix.Open(filepath.Dir(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			}
			if err != nil {
				continue
			}
			var st unix.Statfs_t
			_, can := fstype.CanDedupe(fd)
			ok := can && unix.Fstatfs(fd, &st) == nil
			unix.Close(fd)
			if !ok || seen[st.Fsid] {
				continue
			}
			seen[st.Fsid] = true
			used += int64(st.Blocks-st.Bfree) * st.Frsize
		}
	}
	return used
}

func summary(s scan.Stats) string {
	var subvols string
	if s.Remapped > 0 {
		subvols = fmt.Sprintf(", %d unchanged with extents recorded again", s.Remapped)
	}
	if s.Listed > 0 {
		subvols += fmt.Sprintf(", %d known unchanged by the tree search", s.Listed)
	}
	if s.RootsUnwalked > 0 {
		subvols += fmt.Sprintf(", %d %s unchanged since the last walk", s.RootsUnwalked, plural(s.RootsUnwalked, "root", "roots"))
	}
	if s.RootsSkimmed > 0 {
		subvols += fmt.Sprintf(", %d %s looked at only where files changed", s.RootsSkimmed, plural(s.RootsSkimmed, "root", "roots"))
	}
	if s.RootsPart > 0 {
		subvols += fmt.Sprintf(", %d %s walked only where directories changed", s.RootsPart, plural(s.RootsPart, "root", "roots"))
	}
	if s.SubvolsUnwalked > 0 {
		subvols += fmt.Sprintf(", %d btrfs %s unchanged since the last walk", s.SubvolsUnwalked, plural(s.SubvolsUnwalked, "subvolume", "subvolumes"))
	}
	if s.SubvolsSkimmed > 0 {
		noun := ""
		if s.SubvolsUnwalked == 0 {
			noun = " btrfs " + plural(s.SubvolsSkimmed, "subvolume", "subvolumes")
		}
		subvols += fmt.Sprintf(", %d%s looked at only where files changed", s.SubvolsSkimmed, noun)
	}
	if s.SubvolsPart > 0 {
		noun := ""
		if s.SubvolsUnwalked == 0 && s.SubvolsSkimmed == 0 {
			noun = " btrfs " + plural(s.SubvolsPart, "subvolume", "subvolumes")
		}
		subvols += fmt.Sprintf(", %d%s walked only where directories changed", s.SubvolsPart, noun)
	}
	var copied string
	if s.Copied > 0 {
		copied = fmt.Sprintf(", %d as recorded in the subvolume snapshotted", s.Copied)
	}
	var kept string
	if s.KeptUnmet > 0 {
		kept = fmt.Sprintf(" (%d kept whose filesystem the walk did not meet: not mounted? -new-fs prunes them)", s.KeptUnmet)
	}
	return fmt.Sprintf("hashfile: %d files seen, %d hashed (%d from extents already hashed%s), %d unchanged (%d renamed), %d hard links, %d skipped, %d failed, %d pruned%s%s; read %s in %s (%s)",
		s.Seen, s.Hashed, s.Reused, copied, s.Unchanged, s.Renamed, s.Links, s.Skipped, s.Failed, s.Pruned, kept, subvols,
		cli.Bytes(s.BytesRead), s.Elapsed.Round(time.Millisecond), rate(s.BytesRead, s.Elapsed))
}

// plural returns one or many as n is 1 or not.
func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
