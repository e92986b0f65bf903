// Hashfile records the block hashes and extents of files in the index.
//
// Usage:
//
//	hashfile [flags] PATH...
//	find ... -print0 | hashfile -0 -
//
// Hashfile walks each PATH (directories recursively, without following
// symbolic links), hashes every regular non-empty file in fixed-size
// blocks with SHA-256, and records the file's identity (device, inode,
// size, mtime, ctime), its NOCOW attribute, its block hashes and its
// FIEMAP extents in the index that findsame reads, and for each
// filesystem its type, block size and ID (on btrfs the filesystem's UUID,
// which its subvolumes share). A PATH of "-" reads paths from standard
// input, one per line, or NUL-separated with -0.
//
// Re-runs are incremental: a file whose device, inode, size, mtime and
// ctime are unchanged is not read; a renamed file is updated without being
// read; files under the given PATHs that are gone are removed from the
// index. Hard links are hashed once. Symbolic links, devices, FIFOs and
// sockets are never opened. A file that changes while it is read is not
// recorded and is reported. On an index made by a version that did not
// record the NOCOW attribute, the first run opens each unchanged file
// once to read it, without reading its data.
//
// The index is -db, else $SAME_DB, else $XDG_STATE_HOME/same/index.db
// (~/.local/state/same/index.db). Its block size is fixed when it is
// created; running with another -b is refused.
//
// Progress goes to standard error when it is a terminal, and a summary
// line at the end unless -q. Per-file errors name the file.
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
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"same/internal/blockhash"
	"same/internal/cli"
	"same/internal/index"
	"same/internal/scan"
	"same/internal/walk"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report("hashfile", err, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hashfile", flag.ContinueOnError)
	db := fs.String("db", index.DefaultPath(), "index `file`")
	var exclude cli.Strings
	fs.Var(&exclude, "exclude", "leave out files and directories whose name or path matches `glob` (repeatable)")
	oneFS := fs.Bool("x", false, "stay on the filesystem of each PATH")
	jobs := fs.Int("j", scan.DefaultJobs(), "`workers` reading and hashing in parallel (default: two per CPU, so that reads overlap hashing)")
	bs := cli.Size(4096)
	fs.Var(&bs, "b", "block `size` for a new index (power of two, 4K to 16M)")
	nul := fs.Bool("0", false, "paths read from standard input are NUL-separated")
	quiet := fs.Bool("q", false, "no progress or summary")
	showVersion := fs.Bool("version", false, "print the version and the SHA-256 implementation in use")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to `file`")
	if err := cli.ParseFlags(fs, args, stdout, usage); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "hashfile %s, index format %d, SHA-256: %s\n", version, index.Version(), blockhash.Path())
		return nil
	}
	if fs.NArg() == 0 {
		return cli.Usagef("no PATH given")
	}
	if *jobs < 1 {
		return cli.Usagef("-j %d: want at least 1", *jobs)
	}
	if err := blockhash.CheckBlockSize(int(bs)); err != nil {
		return cli.Usagef("-b: %v", err)
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

	ix, err := index.Open(*db)
	if err != nil {
		return err
	}
	defer ix.Close()
	for _, w := range ix.Warnings() {
		fmt.Fprintf(stderr, "hashfile: warning: %s\n", w)
	}

	// Errors come from every reader, progress from its own goroutine:
	// one at a time, and an error line starts where the progress line
	// did, which it clears.
	var mu sync.Mutex
	tty := !*quiet && cli.IsTerminal(stderr)
	opts := scan.Options{
		BlockSize: int(bs),
		Jobs:      *jobs,
		Exclude:   exclude,
		OneFS:     *oneFS,
		Error: func(path string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if tty {
				fmt.Fprint(stderr, "\r\033[K")
			}
			fmt.Fprintf(stderr, "hashfile: %v\n", err)
		},
	}
	if tty {
		opts.Progress = func(s scan.Stats) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stderr, "\r\033[K%s", progress(s))
		}
	}
	st, err := scan.Run(ctx, ix, roots, opts)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if !*quiet && (err == nil || st.Seen > 0) {
		fmt.Fprintln(stderr, summary(st))
	}
	if err != nil {
		return err
	}
	if st.Failed > 0 {
		return cli.ErrPartial
	}
	return nil
}

const usage = `
Usage: hashfile [flags] PATH...
       find ... -print0 | hashfile -0 -

Records block hashes, identity and extents of the regular files under each
PATH in the index; re-runs read only what changed.

Examples:
  hashfile /srv/data
  hashfile -db /var/lib/same/backup.db -x --exclude '*.tmp' /backup
  find /srv -name '*.img' -print0 | hashfile -0 -

Exit status: 0 done, 1 error, 2 usage, 3 some files failed, 130 interrupted.
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

func progress(s scan.Stats) string {
	line := fmt.Sprintf("%d files, %d hashed, %s read, %s", s.Seen, s.Hashed, cli.Bytes(s.BytesRead), rate(s.BytesRead, s.Elapsed))
	if s.WalkDone && s.BytesRead > 0 && s.ToRead > s.BytesRead {
		left := time.Duration(float64(s.ToRead-s.BytesRead) / float64(s.BytesRead) * float64(s.Elapsed))
		line += fmt.Sprintf(", ETA %s", left.Round(time.Second))
	}
	return line
}

func summary(s scan.Stats) string {
	return fmt.Sprintf("hashfile: %d files seen, %d hashed, %d unchanged (%d renamed), %d hard links, %d skipped, %d failed, %d pruned; read %s in %s (%s)",
		s.Seen, s.Hashed, s.Unchanged, s.Renamed, s.Links, s.Skipped, s.Failed, s.Pruned,
		cli.Bytes(s.BytesRead), s.Elapsed.Round(time.Millisecond), rate(s.BytesRead, s.Elapsed))
}
