package sumtab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"same/internal/fiemap"
)

// Kept extents read back as written; with any bit flipped, cut short, or
// writable by others, they are refused.
func TestKeptExtents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t"+ExtentsSuffix)
	refs := []Ref{{File: 7, Of: 3}, {File: 9, Of: 3}}
	files := map[int64][]fiemap.Extent{
		3: {{Logical: 0, Physical: 1 << 30, Length: 8192, Flags: fiemap.FlagShared, DiskStart: 1 << 30, DiskLen: 8192, Gen: 7, Offset: 4096},
			{Logical: 8192, Physical: -1, Length: 4096, Flags: fiemap.FlagLast | fiemap.FlagDataInline}},
		4: nil,
		5: {{Physical: 2 << 30, Length: 4096, Flags: fiemap.FlagLast}},
	}
	ids := []int64{3, 4, 5}
	err := WriteExtents(path, ExtentsHeader{Key: "k", Seq: 12}, refs, func(yield func(int64, []fiemap.Extent) bool) {
		for _, id := range ids {
			if !yield(id, files[id]) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v, %v; want 0600", st, err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(m) != 0 {
		t.Errorf("left beside it: %v", m)
	}
	read := func() (string, error) {
		x, err := OpenExtents(path)
		if err != nil {
			return "", err
		}
		defer x.Close()
		out := fmt.Sprintf("version %d key %s seq %d\n", x.Version, x.Key, x.Seq)
		err = x.Read(func(file, of int64) { out += fmt.Sprintf("ref %d %d\n", file, of) },
			func(id int64, es []fiemap.Extent) { out += fmt.Sprintf("file %d %+v\n", id, es) })
		return out, err
	}
	got, err := read()
	want := "version 1 key k seq 12\nref 7 3\nref 9 3\n"
	for _, id := range ids {
		want += fmt.Sprintf("file %d %+v\n", id, files[id])
	}
	if err != nil || got != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	everyBitFlipped(t, path, good, func() error {
		_, err := read()
		return err
	})
	for _, n := range []int{1, 5, len(good) / 2} {
		os.WriteFile(path, good[:len(good)-n], 0o600)
		if _, err := read(); !errors.Is(err, ErrFormat) || err.Error() != path+": not a table of sums of this version" {
			t.Errorf("cut %d bytes short: %v", n, err)
		}
	}
	os.WriteFile(path, good, 0o600)
	os.Chmod(path, 0o622)
	if _, err := OpenExtents(path); !errors.Is(err, ErrNotOurs) || err.Error() != path+": not owned by this user, or writable by others: not used" {
		t.Errorf("OpenExtents of extents others may write: %v", err)
	}
}
