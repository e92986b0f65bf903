package sumtab

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db-sums")
	if _, err := Open(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing table: %v", err)
	}
	w, err := Create(path, Header{Key: "k", Seq: 7, Nonce: 5})
	if err != nil {
		t.Fatal(err)
	}
	var want []Entry
	for i := range 200000 {
		want = append(want, Entry{Sum: uint64(i) * 3, File: uint32(i % 7), Block: uint32(i)})
	}
	if err := w.Add(want[:1000]...); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(want[1000:]...); err != nil {
		t.Fatal(err)
	}
	var sets Sets
	sets.Files.Add(3)
	sets.Files.Add(200)
	sets.Unsettled.Add(64)
	sets.Named.Add(65)
	// More ranks than Ranks reads at a time.
	ranks := []Rank{{3, 77}, {5, 1 << 63}}
	for id := range uint32(5000) {
		ranks = append(ranks, Rank{File: 10 + 3*id, Rank: uint64(id) << 1})
	}
	ranks = append(ranks, Rank{1<<32 - 1, 2})
	aliases := []Alias{{File: 9, Of: 3}, {File: 1<<32 - 1, Of: 200}}
	if err := w.Commit(sets, ranks, aliases); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("table: %v, mode %v", err, st.Mode())
	}
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if tb.Key != "k" || tb.Seq != 7 || tb.Nonce != 5 || tb.Entries != int64(len(want)) {
		t.Errorf("header %+v", tb.Header)
	}
	if !tb.Files.Has(3) || !tb.Files.Has(200) || tb.Files.Has(4) || tb.Files.Has(1<<40) || !tb.Unsettled.Has(64) || tb.Unsettled.Has(63) || !tb.Named.Has(65) || tb.Named.Has(64) || tb.Superseded.Has(0) {
		t.Errorf("sets %+v", tb.Sets)
	}
	var gotRanks []Rank
	if err := tb.Ranks(func(r Rank) { gotRanks = append(gotRanks, r) }); err != nil || !slices.Equal(gotRanks, ranks) {
		t.Errorf("ranks %v, %v; want %v", gotRanks, err, ranks)
	}
	if !slices.Equal(tb.Aliases, aliases) {
		t.Errorf("aliases %v, want %v", tb.Aliases, aliases)
	}
	var got []Entry
	it := tb.Iter()
	for e, ok := it.Next(); ok; e, ok = it.Next() {
		got = append(got, e)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries differ: %d read, %d written", len(got), len(want))
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
	if len(matches) != 1 {
		t.Errorf("left beside the table: %v", matches)
	}
}

func TestDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	w, err := Create(path, Header{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(Entry{Sum: 1}, Entry{Sum: 2, File: 1})
	if err := w.Commit(Sets{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	i := slices.Index(b, 2) // the second entry's sum
	b[i+1] = 9
	os.WriteFile(path, b, 0o600)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	it := tb.Iter()
	for _, ok := it.Next(); ok; _, ok = it.Next() {
	}
	if err := it.Err(); !errors.Is(err, ErrFormat) {
		t.Errorf("Iter of a damaged table: %v", err)
	}
	os.WriteFile(path, b[:len(b)-3], 0o600)
	if _, err := Open(path); !errors.Is(err, ErrFormat) {
		t.Errorf("Open of a cut table: %v", err)
	}
}

func TestOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "t"), Header{})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(Entry{Sum: 5})
	w.Add(Entry{Sum: 4})
	if err := w.Commit(Sets{}, nil, nil); err == nil || err.Error() != "table of sums: entries out of order" {
		t.Errorf("Commit: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("left: %v", m)
	}
}

func TestNotOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	w, err := Create(path, Header{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(Sets{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o622)
	if _, err := Open(path); !errors.Is(err, ErrNotOurs) || err.Error() != path+": not owned by this user, or writable by others: not used" {
		t.Errorf("Open of a table others may write: %v", err)
	}
	os.Chmod(path, 0o600)
	if os.Geteuid() == 0 {
		os.Chown(path, 1, 1)
		if _, err := Open(path); !errors.Is(err, ErrNotOurs) {
			t.Errorf("Open of a table another user owns: %v", err)
		}
	}
}
