package index

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"same/internal/fiemap"
	"same/internal/fsys"
)

// TestAdopt checks which rows of a snapshot's origin Tx.Adopt records for
// the snapshot, under which paths (their bytes kept, UTF-8 or not), with
// which sums and extents (shared from then on, as are the origin's), and
// what it reports: the rows this run wrote (Changed), and whether no file
// of the origin was left out (Whole).
func TestAdopt(t *testing.T) {
	live, snap := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 300}
	const gen = 7 // this run's scan generation
	file := func(ino uint64, path string, mtime int64) File {
		return File{Path: path, NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: live, Ino: ino, Size: 2 * 4096, Mtime: mtime, Ctime: 1}}
	}
	ext := func(ino uint64) []fiemap.Extent {
		return []fiemap.Extent{{Logical: 0, Physical: int64(ino) << 20, Length: 2 * 4096, Flags: fiemap.FlagLast, DiskStart: int64(ino) << 20, DiskLen: 2 * 4096, Gen: 7}}
	}
	odd := "/m/live/d\xc3\xa9\xff/b"
	type result struct {
		Adopted
		Paths []string // the snapshot's rows, each "path ino"
	}
	for _, tt := range []struct {
		name     string
		run      func(t *testing.T, tx *Tx, ids map[uint64]int64) // this run's writes before the adoption
		withGone bool
		want     result
	}{
		{name: "as the last walk left them", want: result{Adopted{Files: 2, Whole: true}, []string{"/m/snaps/s/a 10", "/m/snaps/s/d\xc3\xa9\xff/b 11"}}},
		{name: "one written by this run", run: func(t *testing.T, tx *Tx, _ map[uint64]int64) {
			if _, err := tx.Put(file(10, "/m/live/a", 2), sumsOf(10, 2), ext(10)); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 2, Changed: []uint64{10}, Whole: true}, []string{"/m/snaps/s/a 10", "/m/snaps/s/d\xc3\xa9\xff/b 11"}}},
		{name: "one created by this run", run: func(t *testing.T, tx *Tx, _ map[uint64]int64) {
			if _, err := tx.Put(file(12, "/m/live/c", 1), sumsOf(12, 2), ext(12)); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 2, Whole: true}, []string{"/m/snaps/s/a 10", "/m/snaps/s/d\xc3\xa9\xff/b 11"}}},
		{name: "one marked gone by this run, taken", withGone: true, run: func(t *testing.T, tx *Tx, ids map[uint64]int64) {
			if err := tx.MarkGone(ids[11], odd, gen); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 2, Whole: true}, []string{"/m/snaps/s/a 10", "/m/snaps/s/d\xc3\xa9\xff/b 11"}}},
		{name: "one marked gone by this run, left out", run: func(t *testing.T, tx *Tx, ids map[uint64]int64) {
			if err := tx.MarkGone(ids[11], odd, gen); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 1}, []string{"/m/snaps/s/a 10"}}},
		{name: "one marked gone by an earlier run", withGone: true, run: func(t *testing.T, tx *Tx, ids map[uint64]int64) {
			if err := tx.MarkGone(ids[11], odd, gen-1); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 1}, []string{"/m/snaps/s/a 10"}}},
		{name: "one with NOCOW", run: func(t *testing.T, tx *Tx, ids map[uint64]int64) {
			if err := tx.SetNoCOW(ids[11], NoCOWSet); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 1}, []string{"/m/snaps/s/a 10"}}},
		{name: "one with no path", run: func(t *testing.T, tx *Tx, _ map[uint64]int64) {
			// Another inode takes its path, elsewhere than below the top.
			f := file(13, "/m/other/x", 1)
			if _, err := tx.Put(f, sumsOf(13, 2), nil); err != nil {
				t.Fatal(err)
			}
			f.Vol, f.Ino = fsys.Volume{FS: "f1", Subvol: 400}, 1
			if _, err := tx.Put(f, sumsOf(14, 2), nil); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{Files: 2}, []string{"/m/snaps/s/a 10", "/m/snaps/s/d\xc3\xa9\xff/b 11"}}},
		{name: "the snapshot recorded already", run: func(t *testing.T, tx *Tx, _ map[uint64]int64) {
			f := file(10, "/m/snaps/s/a", 1)
			f.Vol = snap
			if _, err := tx.Put(f, sumsOf(10, 2), ext(10)); err != nil {
				t.Fatal(err)
			}
		}, want: result{Adopted{}, []string{"/m/snaps/s/a 10"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
			ctx := context.Background()
			ids := make(map[uint64]int64)
			inTx(t, ix, func(tx *Tx) error {
				for _, f := range []File{file(10, "/m/live/a", 1), file(11, odd, 1)} {
					id, err := tx.Put(f, sumsOf(int(f.Ino), 2), ext(f.Ino))
					if err != nil {
						return err
					}
					ids[f.Ino] = id
				}
				// Outside the origin's top: not the snapshot's.
				_, err := tx.Put(file(20, "/m/live-other/z", 1), sumsOf(20, 2), nil)
				return err
			})
			before, err := ix.WriteSeq(ctx)
			if err != nil {
				t.Fatal(err)
			}
			maxID := ix.MaxFileID(ctx)
			if tt.run != nil {
				inTx(t, ix, func(tx *Tx) error { tt.run(t, tx, ids); return nil })
			}
			var got result
			inTx(t, ix, func(tx *Tx) (err error) {
				got.Adopted, err = tx.Adopt(live, snap, "/m/live", "/m/snaps/s", before, maxID, gen, tt.withGone, true)
				return err
			})
			got.Paths = texts(t, ix, "SELECT path || ' ' || ino FROM files WHERE vol = (SELECT id FROM volumes WHERE fsid = ? AND subvol = ?) ORDER BY path", snap.FS, int64(snap.Subvol))
			slices.Sort(got.Changed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
			if got.Files == 0 {
				return
			}
			// Each row taken shares its origin's sums, as a clone of it,
			// with its extents, and is not marked gone.
			for _, ino := range []uint64{10, 11} {
				f, ok, err := ix.FileByInode(ctx, snap, ino)
				if err != nil || !ok {
					continue
				}
				o, _, err := ix.FileByInode(ctx, live, ino)
				if err != nil {
					t.Fatal(err)
				}
				sums, err := ix.Sums(ctx, f.ID)
				if err != nil || !bytes.Equal(sums, mustSums(t, ix, o.ID)) {
					t.Errorf("ino %d: sums %x (%v); want the origin's", ino, sums, err)
				}
				var cloneOf, cloneSeq, gone int64
				if err := ix.DB().QueryRow("SELECT clone_of, clone_seq, gone FROM files WHERE id = ?", f.ID).Scan(&cloneOf, &cloneSeq, &gone); err != nil {
					t.Fatal(err)
				}
				if cloneOf != o.ID || cloneSeq != o.Changed || gone != 0 || f.Size != o.Size || f.Mtime != o.Mtime || f.UID != o.UID {
					t.Errorf("ino %d: clone of %d at %d, gone %d, %+v; want a clone of %+v, not gone", ino, cloneOf, cloneSeq, gone, f, o)
				}
				// Both rows' extents are now shared, the snapshot's and
				// the origin's.
				want := ext(ino)
				want[0].Flags |= fiemap.FlagShared
				for _, id := range []int64{f.ID, o.ID} {
					e, err := ix.Extents(ctx, id)
					if err != nil || fmt.Sprint(e) != fmt.Sprint(want) {
						t.Errorf("ino %d, row %d: extents %v (%v); want %v", ino, id, e, err, want)
					}
				}
			}
		})
	}
}

// texts returns the one text column of query's rows.
func texts(t *testing.T, ix *Index, query string, args ...any) []string {
	t.Helper()
	rows, err := ix.DB().Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSums(t *testing.T, ix *Index, id int64) []byte {
	t.Helper()
	s, err := ix.Sums(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAdoptMarksOriginOnce checks that an adoption without markOrigin
// leaves the origin's extents as recorded, the copies shared all the
// same: a run marks the origin's rows at its first adoption from it.
func TestAdoptMarksOriginOnce(t *testing.T) {
	live, snap := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 300}
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	ext := []fiemap.Extent{{Logical: 0, Physical: 1 << 20, Length: 8192, Flags: fiemap.FlagLast, DiskStart: 1 << 20, DiskLen: 8192, Gen: 7}}
	f := File{Path: "/m/live/a", NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: live, Ino: 10, Size: 8192, Mtime: 1, Ctime: 1}}
	inTx(t, ix, func(tx *Tx) error { _, err := tx.Put(f, sumsOf(10, 2), ext); return err })
	before, err := ix.WriteSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	maxID := ix.MaxFileID(ctx)
	inTx(t, ix, func(tx *Tx) error {
		_, err := tx.Adopt(live, snap, "/m/live", "/m/snaps/s", before, maxID, 7, true, false)
		return err
	})
	for vol, want := range map[fsys.Volume]uint32{live: fiemap.FlagLast, snap: fiemap.FlagLast | fiemap.FlagShared} {
		row, ok, err := ix.FileByInode(ctx, vol, 10)
		if err != nil || !ok {
			t.Fatalf("%v: %v, %v", vol, ok, err)
		}
		e, err := ix.Extents(ctx, row.ID)
		if err != nil || len(e) != 1 || e[0].Flags != want {
			t.Errorf("%v: extents %v, %v; want flags %#x", vol, e, err, want)
		}
	}
}

// TestExtentsOf follows a file's extents recorded once and referred to
// by the rows of two snapshots (files.extents_of): how each reader sees
// them, and where they go when the row that holds them is recorded
// again, deleted, or a referring row's extents are recorded again.
func TestExtentsOf(t *testing.T) {
	live, s1, s2 := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 300}, fsys.Volume{FS: "f1", Subvol: 301}
	ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
	ctx := context.Background()
	// A compressed extent referred to in part: the readers of
	// compressed files and of extents not referred to whole see it.
	old := []fiemap.Extent{{Logical: 0, Physical: 1 << 20, Length: 8192, Flags: fiemap.FlagLast | fiemap.FlagEncoded, DiskStart: 1 << 20, DiskLen: 16384, Gen: 7}}
	shared := slices.Clone(old)
	shared[0].Flags |= fiemap.FlagShared
	f := File{Path: "/m/live/a", NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: live, Ino: 10, Size: 8192, Mtime: 1, Ctime: 1}}
	inTx(t, ix, func(tx *Tx) error { _, err := tx.Put(f, sumsOf(10, 2), old); return err })
	for i, s := range []fsys.Volume{s1, s2} {
		before, err := ix.WriteSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		maxID := ix.MaxFileID(ctx)
		inTx(t, ix, func(tx *Tx) error {
			_, err := tx.Adopt(live, s, "/m/live", fmt.Sprintf("/m/snaps/%d", i), before, maxID, 7, true, i == 0)
			return err
		})
	}
	id := func(v fsys.Volume) int64 { t.Helper(); return mustID(t, ix, v, 10) }
	l, a, b := id(live), id(s1), id(s2)
	// state gives each row's reference and own rows, and its extents as
	// Extents reads them.
	state := func() string {
		t.Helper()
		var out []string
		for _, row := range []int64{l, a, b} {
			var of, own int64
			err := ix.DB().QueryRow("SELECT coalesce(extents_of, 0), (SELECT count(*) FROM extents WHERE file = ?1) FROM files WHERE id = ?1", row).Scan(&of, &own)
			if err == sql.ErrNoRows {
				out = append(out, fmt.Sprintf("%d: none", row))
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			e, err := ix.Extents(ctx, row)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d: of %d, %d own, %v", row, of, own, e))
		}
		return strings.Join(out, "\n")
	}
	expect := func(step string, want ...string) {
		t.Helper()
		if got := state(); got != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", step, got, strings.Join(want, "\n"))
		}
	}
	expect("adopted twice",
		fmt.Sprintf("%d: of 0, 1 own, %v", l, shared),
		fmt.Sprintf("%d: of %d, 0 own, %v", a, l, shared),
		fmt.Sprintf("%d: of %d, 0 own, %v", b, l, shared))
	var part []int64
	if err := ix.ScanPartDiskExtents(ctx, func(file int64, e fiemap.Extent) error {
		if e != shared[0] {
			t.Errorf("ScanPartDiskExtents: file %d, %+v; want %+v", file, e, shared[0])
		}
		part = append(part, file)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if slices.Sort(part); !slices.Equal(part, []int64{l, a, b}) {
		t.Errorf("ScanPartDiskExtents: files %v; want %v", part, []int64{l, a, b})
	}
	for _, c := range []struct {
		fs   string
		gen  int64
		want []int64
	}{{"f1", 7, []int64{l, a, b}}, {"f2", 7, nil}, {"f1", 8, nil}} {
		got, err := ix.Referrers(ctx, c.fs, 1<<20, 16384, c.gen)
		if slices.Sort(got); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Referrers on %s, gen %d = %v, %v; want %v", c.fs, c.gen, got, err, c.want)
		}
	}
	flagged, err := flaggedFiles(ctx, ix)
	if want := map[int64]uint32{l: fiemap.FlagEncoded, a: fiemap.FlagEncoded, b: fiemap.FlagEncoded}; err != nil || !reflect.DeepEqual(flagged, want) {
		t.Errorf("FlaggedFiles = %v, %v; want %v", flagged, err, want)
	}
	alone := func() []int64 {
		t.Helper()
		var out []int64
		if err := ix.SharedAlone(ctx, func(file int64) error { out = append(out, file); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := alone(); got != nil {
		t.Errorf("SharedAlone: %v; want none (the snapshots refer to the extent)", got)
	}
	var refs [][2]int64
	if err := ix.ExtentRefs(ctx, func(file, of int64) error { refs = append(refs, [2]int64{file, of}); return nil }); err != nil {
		t.Fatal(err)
	}
	if slices.SortFunc(refs, func(x, y [2]int64) int { return int(x[0] - y[0]) }); !reflect.DeepEqual(refs, [][2]int64{{a, l}, {b, l}}) {
		t.Errorf("ExtentRefs: %v; want %v", refs, [][2]int64{{a, l}, {b, l}})
	}

	// The live file written again: its extents pass to the first
	// snapshot's row, as read through it, and the second refers to it.
	now := []fiemap.Extent{{Logical: 0, Physical: 4 << 20, Length: 8192, Flags: fiemap.FlagLast, DiskStart: 4 << 20, DiskLen: 8192, Gen: 9}}
	f.Mtime = 2
	inTx(t, ix, func(tx *Tx) error { _, err := tx.Put(f, sumsOf(11, 2), now); return err })
	expect("the live file written again",
		fmt.Sprintf("%d: of 0, 1 own, %v", l, now),
		fmt.Sprintf("%d: of 0, 1 own, %v", a, shared),
		fmt.Sprintf("%d: of %d, 0 own, %v", b, a, shared))
	if got := alone(); got != nil {
		t.Errorf("SharedAlone: %v; want none", got)
	}

	// The first snapshot's row deleted: the second holds them.
	inTx(t, ix, func(tx *Tx) error { return tx.Delete(a) })
	expect("the first snapshot's row deleted",
		fmt.Sprintf("%d: of 0, 1 own, %v", l, now),
		fmt.Sprintf("%d: none", a),
		fmt.Sprintf("%d: of 0, 1 own, %v", b, shared))
	if got := alone(); !slices.Equal(got, []int64{b}) {
		t.Errorf("SharedAlone: %v; want %d (flagged shared, its only reference)", got, b)
	}

	// A referring row's extents recorded again: its own from then on,
	// the row it referred to keeps its own.
	inTx(t, ix, func(tx *Tx) error {
		_, err := tx.Adopt(live, fsys.Volume{FS: "f1", Subvol: 302}, "/m/live", "/m/snaps/3", 0, ix.MaxFileID(ctx), 7, false, true)
		return err
	})
	c := id(fsys.Volume{FS: "f1", Subvol: 302})
	moved := slices.Clone(now)
	moved[0].Physical, moved[0].DiskStart = 8<<20, 8<<20
	inTx(t, ix, func(tx *Tx) error { return tx.SetExtents(c, moved) })
	if e, err := ix.Extents(ctx, c); err != nil || !slices.Equal(e, moved) {
		t.Errorf("extents recorded again: %v, %v; want %v", e, err, moved)
	}
	nowShared := slices.Clone(now)
	nowShared[0].Flags |= fiemap.FlagShared
	expect("a referring row's extents recorded again",
		fmt.Sprintf("%d: of 0, 1 own, %v", l, nowShared),
		fmt.Sprintf("%d: none", a),
		fmt.Sprintf("%d: of 0, 1 own, %v", b, shared))
	var of sql.NullInt64
	if err := ix.DB().QueryRow("SELECT extents_of FROM files WHERE id = ?", c).Scan(&of); err != nil || of.Valid {
		t.Errorf("extents_of of a row whose extents were recorded again: %v, %v; want NULL", of, err)
	}
}

// TestAdoptInTurn adopts snapshots of two origins one after the other, in
// one transaction and in two: each adoption reports and records its own
// origin's rows alone, whatever the adoption before it read.
func TestAdoptInTurn(t *testing.T) {
	live, other := fsys.Volume{FS: "f1", Subvol: 5}, fsys.Volume{FS: "f1", Subvol: 6}
	snapLive, snapOther := fsys.Volume{FS: "f1", Subvol: 300}, fsys.Volume{FS: "f1", Subvol: 301}
	file := func(vol fsys.Volume, ino uint64, path string) File {
		return File{Path: path, NoCOW: NoCOWUnset, UID: 1000, Identity: fsys.Identity{Vol: vol, Ino: ino, Size: 2 * 4096, Mtime: 1, Ctime: 1}}
	}
	for _, oneTx := range []bool{true, false} {
		t.Run(fmt.Sprintf("one transaction %v", oneTx), func(t *testing.T) {
			ix := openT(t, filepath.Join(t.TempDir(), "index.db"))
			ctx := context.Background()
			ids := make(map[string]int64)
			inTx(t, ix, func(tx *Tx) error {
				for _, f := range []File{file(live, 10, "/m/live/a"), file(live, 11, "/m/live/b"), file(other, 30, "/m/other/c")} {
					id, err := tx.Put(f, sumsOf(int(f.Ino), 2), nil)
					if err != nil {
						return err
					}
					ids[f.Path] = id
				}
				return nil
			})
			before, err := ix.WriteSeq(ctx)
			if err != nil {
				t.Fatal(err)
			}
			maxID := ix.MaxFileID(ctx)
			// This run writes live's a again, and finds b with NOCOW: the
			// adoption from live names a, and leaves b out.
			inTx(t, ix, func(tx *Tx) error {
				if _, err := tx.Put(file(live, 10, "/m/live/a"), sumsOf(40, 2), nil); err != nil {
					return err
				}
				return tx.SetNoCOW(ids["/m/live/b"], NoCOWSet)
			})
			var got []Adopted
			adopt := func(tx *Tx, from, to fsys.Volume, fromTop, toTop string) error {
				a, err := tx.Adopt(from, to, fromTop, toTop, before, maxID, 7, false, true)
				got = append(got, a)
				return err
			}
			if oneTx {
				inTx(t, ix, func(tx *Tx) error {
					if err := adopt(tx, live, snapLive, "/m/live", "/m/snaps/l"); err != nil {
						return err
					}
					return adopt(tx, other, snapOther, "/m/other", "/m/snaps/o")
				})
			} else {
				inTx(t, ix, func(tx *Tx) error { return adopt(tx, live, snapLive, "/m/live", "/m/snaps/l") })
				inTx(t, ix, func(tx *Tx) error { return adopt(tx, other, snapOther, "/m/other", "/m/snaps/o") })
			}
			want := []Adopted{{Files: 1, Changed: []uint64{10}}, {Files: 1, Whole: true}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("adopted %+v; want %+v", got, want)
			}
			paths := texts(t, ix, "SELECT path FROM files WHERE path LIKE '/m/snaps/%' ORDER BY path")
			if want := []string{"/m/snaps/l/a", "/m/snaps/o/c"}; !slices.Equal(paths, want) {
				t.Errorf("the snapshots' rows %q; want %q", paths, want)
			}
		})
	}
}
