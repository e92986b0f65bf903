package runs

import (
	"slices"
	"testing"

	"same/internal/index"
)

// Files of a snapshot that share their origin's sums in the index
// (files.blocks_of) are grouped and planned as if each held a copy: the
// plans are byte for byte those of the same index with the copies
// stored, block by block and whole files alike.
func TestSharedSumsPlan(t *testing.T) {
	h := newKeptHostSeeded(t, 5, 6)
	for range 12 {
		h.change()
	}
	var inos []uint64
	for ino := range h.files {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	h.tx(func(tx *index.Tx) { h.snapshot(tx, inos) })
	// Whole copies, not shared yet, of files a snapshot holds.
	h.tx(func(tx *index.Tx) {
		for _, ino := range inos {
			c := h.files[ino]
			if c == nil || c.vol != 8 {
				continue
			}
			o := h.newFile()
			o.pieces = slices.Clone(c.pieces)
			for i := range o.pieces {
				o.pieces[i].fresh, o.pieces[i].at = true, h.phys
				h.phys += int64(o.pieces[i].n)*bs + 1<<20
			}
			h.mtime++
			o.mtime = h.mtime
			h.record(tx, o, true)
		}
	})
	var shared int
	if err := h.ix.DB().QueryRow("SELECT count(*) FROM files WHERE blocks_of IS NOT NULL").Scan(&shared); err != nil || shared < 5 {
		t.Fatalf("%d files share another's sums, %v; want 5", shared, err)
	}
	blocks, _ := h.find(Options{})
	whole, _ := h.find(Options{WholeFiles: true})
	for _, q := range []string{
		"INSERT INTO blocks(file, chunk, hashes) SELECT f.id, b.chunk, b.hashes FROM files f JOIN blocks b ON b.file = f.blocks_of",
		"UPDATE files SET blocks_of = NULL",
	} {
		if _, err := h.ix.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := h.find(Options{}); got != blocks {
		t.Errorf("shared sums planned:\n%s\ncopies stored:\n%s", blocks, got)
	}
	if got, _ := h.find(Options{WholeFiles: true}); got != whole {
		t.Errorf("whole files, shared sums planned:\n%s\ncopies stored:\n%s", whole, got)
	}
	if blocks == "" || whole == "" {
		t.Errorf("nothing planned: %q, %q", blocks, whole)
	}
}
