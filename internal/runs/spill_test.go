package runs

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// Pairs written to packed lists come back as they were, whole (read) and
// a part at a time (scan, as often as asked), whatever steps their
// locations take: along a file, back, to other files and to the largest
// file and block a location holds, across many writes of the lists'
// buffers; and in fewer bytes than 16 a pair where the scan writes them.
func TestPackedBuckets(t *testing.T) {
	for _, every := range []int64{markEvery, 4096, 1} {
		t.Run(fmt.Sprintf("marks every %d bytes", every), func(t *testing.T) {
			defer func(m int64) { markEvery = m }(markEvery)
			markEvery = every
			testPackedBuckets(t)
		})
	}
}

func testPackedBuckets(t *testing.T) {
	dir := t.TempDir()
	const lists = 4
	var use tempUse
	b, err := newPacked(dir, lists, &use)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	r := rand.New(rand.NewPCG(1, 2))
	want := make([][]words, lists)
	add := func(k int, sum uint64, at loc) {
		x := words{sum, uint64(at)}
		want[k] = append(want[k], x)
		if err := b.add(k, x); err != nil {
			t.Fatal(err)
		}
	}
	// List 0: a scan's pairs, files of 1 to 300 blocks one after another.
	for fi := range 3000 {
		for blk := range int64(1 + r.IntN(300)) {
			if r.IntN(lists) == 0 {
				add(0, r.Uint64(), mkloc(fi, blk))
			}
		}
	}
	// List 1: aliased files taking turns block by block, and the extremes.
	for blk := range int64(5000) {
		for _, fi := range []int{7, 900, 8} {
			add(1, r.Uint64(), mkloc(fi, blk))
		}
	}
	for _, at := range []loc{mkloc(1<<32-1, 1<<32-1), 0, mkloc(0, 1<<32-1), mkloc(1<<32-1, 0), mkloc(5, 5)} {
		add(1, 0, at)
		add(1, ^uint64(0), at)
	}
	// List 2: locations anywhere.
	for range 40000 {
		add(2, r.Uint64(), loc(r.Uint64()))
	}
	// List 3: a few of each kind, to be read in chunks of every size.
	for i := range 600 {
		switch i % 3 {
		case 0:
			add(3, r.Uint64(), mkloc(i/30, int64(i%30)))
		case 1:
			add(3, r.Uint64(), mkloc(r.IntN(1<<32), int64(r.IntN(1<<32))))
		default:
			add(3, r.Uint64(), mkloc(i/30, int64(r.IntN(200))))
		}
	}
	// Steps on along one file of every length a varint may take, and back.
	blk := int64(0)
	for _, d := range []int64{0, 1, 63, 64, 65, 127, 128, 8191, 8192, 1 << 20, 1 << 30, -5, 1<<31 - 1, -(1 << 31)} {
		blk += d
		add(3, r.Uint64(), mkloc(77, blk))
	}
	if err := b.done(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for k := range lists {
		total += b.written[k]
	}
	if use.now != total || use.peak != total {
		t.Errorf("temporary bytes counted %+v; want %d now and at most", use, total)
	}
	perPair := float64(b.written[0]) / float64(len(want[0]))
	t.Logf("a scan's pairs: %.2f bytes each", perPair)
	if perPair > 10.5 {
		t.Errorf("a scan's pairs take %.2f bytes each packed; want at most 10.5", perPair)
	}
	// Read back in chunks of every size from the largest pair's up, so
	// that pairs end, and start, at every place of a chunk.
	chunks := []int{packedChunk}
	for n := maxPacked; n < 3*maxPacked; n++ {
		chunks = append(chunks, n)
	}
	for k := range lists {
		for i, part := range []int{1, 7, 4096, len(want[k]) + 3} {
			b.chunk = make([]byte, chunks[i%len(chunks)])
			var got []words
			err := b.scan(k, make([]words, 0, part), func(ws []words) error {
				if len(ws) > part || len(ws) == 0 {
					t.Errorf("list %d: a part of %d pairs with room for %d", k, len(ws), part)
				}
				got = append(got, ws...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[k]) {
				t.Fatalf("list %d scanned %d at a time: %d pairs differ from the %d written", k, part, len(got), len(want[k]))
			}
		}
		for _, c := range chunks {
			if k != 3 {
				break
			}
			b.chunk = make([]byte, c)
			var got []words
			if err := b.scan(k, make([]words, 0, 1000), func(ws []words) error {
				got = append(got, ws...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[k]) {
				t.Fatalf("list %d read in chunks of %d bytes: %d pairs differ from the %d written", k, c, len(got), len(want[k]))
			}
		}
		got, err := b.read(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[k]) {
			t.Fatalf("list %d read: %d pairs differ from the %d written", k, len(got), len(want[k]))
		}
	}
	if use.now != 0 || use.peak != total {
		t.Errorf("temporary bytes counted once read %+v; want 0 now and %d at most", use, total)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left in the temporary directory: %v", left)
	}
}

// A packed list cut short on disk is an error naming what is missing,
// never pairs made up.
func TestPackedCutShort(t *testing.T) {
	b, err := newPacked(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	for i := range 100 {
		if err := b.add(0, words{uint64(i), uint64(mkloc(i, 0))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.done(); err != nil {
		t.Fatal(err)
	}
	if err := b.files[0].Truncate(b.written[0] - 3); err != nil {
		t.Fatal(err)
	}
	// The first pair takes 9 bytes (its file is the one before), each
	// other 10 (one file on).
	const want = "read temporary file: 3 bytes missing of 999"
	if _, err = b.read(0, nil); err == nil || err.Error() != want {
		t.Fatalf("read of a list cut short: %v; want %s", err, want)
	}
}

// BenchmarkPackedRead reads back a partition of 4 million pairs as the
// scan writes them (one in 28 blocks of each file): run with -cpu 1,2 to
// see the halves read on two cores.
func BenchmarkPackedRead(b *testing.B) {
	bk, err := newPacked(b.TempDir(), 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bk.close()
	r := rand.New(rand.NewPCG(1, 2))
	const pairs = 4 << 20
	for fi, blk := 0, int64(0); bk.n[0] < pairs; blk += int64(1 + r.IntN(55)) {
		if blk >= 20000 {
			fi, blk = fi+1, 0
		}
		if err := bk.add(0, words{r.Uint64(), uint64(mkloc(fi, blk))}); err != nil {
			b.Fatal(err)
		}
	}
	if err := bk.done(); err != nil {
		b.Fatal(err)
	}
	buf := make([]words, pairs)
	b.SetBytes(pairs * 16)
	for b.Loop() {
		if err := bk.unpackAll(0, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// sortedMappings returns a list of mappings sorted and leaves it so:
// read then returns it sorted, on disk and in memory, and the other lists
// as they were written.
func TestSortedMappings(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []words {
		ws := make([]words, n)
		for i := range ws {
			ws[i] = words{uint64(mkloc(r.IntN(50), r.Int64N(1000))), uint64(mkloc(r.IntN(50), r.Int64N(1000)))}
		}
		return ws
	}
	sorted := func(ws []words) []words {
		s := slices.Clone(ws)
		slices.SortFunc(s, func(a, b words) int {
			return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo))
		})
		return s
	}
	defer func(w func(*os.File) bool) { writesInPlace = w }(writesInPlace)
	writesInPlace = func(*os.File) bool { return true } // wherever the test's files are
	var use tempUse
	b, err := newBuckets(t.TempDir(), 2, &use)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	lists := [][]words{random(70000), random(3000)}
	for k, ws := range lists {
		for _, x := range ws {
			if err := b.add(k, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.done(); err != nil {
		t.Fatal(err)
	}
	maps, err := b.sortedMappings(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wordsOf(maps), sorted(lists[0])) {
		t.Errorf("sortedMappings returned list 0 unsorted")
	}
	got, err := b.read(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, sorted(lists[0])) {
		t.Errorf("list 0 read after sortedMappings is not sorted")
	}
	if got, err = b.read(1, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, lists[1]) {
		t.Errorf("list 1 read after sortedMappings of list 0 is not as written")
	}

	// Where the filesystem copies on write, the list is left as it was
	// written, still returned sorted.
	writesInPlace = func(*os.File) bool { return false }
	if b, err = newBuckets(t.TempDir(), 1, &use); err != nil {
		t.Fatal(err)
	}
	defer b.close()
	for _, x := range lists[0] {
		if err := b.add(0, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.done(); err != nil {
		t.Fatal(err)
	}
	if maps, err = b.sortedMappings(0, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wordsOf(maps), sorted(lists[0])) {
		t.Errorf("sortedMappings on a filesystem that copies on write returned list 0 unsorted")
	}
	if got, err = b.read(0, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, lists[0]) {
		t.Errorf("list 0 read after sortedMappings on a filesystem that copies on write is not as written")
	}

	m := memBuckets(100)
	mem := random(100)
	for _, x := range mem {
		if err := m.add(0, x); err != nil {
			t.Fatal(err)
		}
	}
	if maps, err = m.sortedMappings(0, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wordsOf(maps), sorted(mem)) {
		t.Errorf("sortedMappings returned a list in memory unsorted")
	}
	if got, _ = m.read(0, nil); !slices.Equal(got, sorted(mem)) {
		t.Errorf("a list in memory read after sortedMappings is not sorted")
	}
}

func wordsOf(ms []mapping) []words {
	ws := make([]words, len(ms))
	for i, m := range ms {
		ws[i] = words{uint64(m.dst), uint64(m.src)}
	}
	return ws
}
