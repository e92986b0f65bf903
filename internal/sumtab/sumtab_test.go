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

// A table damaged anywhere, a bit flipped in any byte, is refused: by
// Open, or for its entries by Iter, at their end.
func TestDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t")
	w, err := Create(path, Header{Key: "k", Seq: 12, Nonce: 3, Volumes: map[string]string{"fs/5": "ro"}})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(Entry{Sum: 1}, Entry{Sum: 2, File: 1})
	var sets Sets
	sets.Files.Add(0)
	sets.Files.Add(1)
	sets.Unsettled.Add(1)
	sets.Named.Add(70)
	sets.Superseded.Add(2)
	if err := w.Commit(sets, []Rank{{File: 1, Rank: 9}}, []Alias{{File: 4, Of: 1}}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	read := func() error {
		tb, err := Open(path)
		if err != nil {
			return err
		}
		defer tb.Close()
		if err := tb.Ranks(func(Rank) {}); err != nil {
			return err
		}
		it := tb.Iter()
		for _, ok := it.Next(); ok; _, ok = it.Next() {
		}
		return it.Err()
	}
	if err := read(); err != nil {
		t.Fatal(err)
	}
	everyBitFlipped(t, path, good, read)
	os.WriteFile(path, good[:len(good)-3], 0o600)
	if _, err := Open(path); !errors.Is(err, ErrFormat) {
		t.Errorf("Open of a cut table: %v", err)
	}
}

// everyBitFlipped writes good to path with each of its bits flipped in
// turn, and fails t unless read then gives ErrFormat.
func everyBitFlipped(t *testing.T, path string, good []byte, read func() error) {
	t.Helper()
	for i := range good {
		for bit := range 8 {
			b := slices.Clone(good)
			b[i] ^= 1 << bit
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := read(); !errors.Is(err, ErrFormat) {
				t.Fatalf("byte %d of %d, bit %d flipped: %v; want ErrFormat", i, len(good), bit, err)
			}
		}
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
