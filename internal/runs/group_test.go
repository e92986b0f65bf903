package runs

import (
	"cmp"
	"slices"
	"testing"
)

// Each member of a group is mapped to the best source of its class: a
// file that must stay a source first, then the largest file, then one
// stored compressed, then the first; a file that must stay a source is
// never a destination, and a class of one member maps nothing. On a
// filesystem whose block holds several of the index's, blocks at other
// places in a block of it are of classes apart.
func TestAppendGroup(t *testing.T) {
	mk := func(size int64, class int32, keep, encoded bool) file {
		return file{Size: size, class: class, keepSource: keep, encoded: encoded}
	}
	big := func(size int64) file {
		f := mk(size, 1, false, false)
		f.vol = &volume{fsBlock: 16384}
		return f
	}
	at := func(fi int) loc { return mkloc(fi, int64(fi)) }
	m := func(dst, src int) mapping { return mapping{dst: at(dst), src: at(src)} }
	for _, tc := range []struct {
		name  string
		files []file
		want  []mapping
	}{
		{"largest", []file{mk(10, 0, false, false), mk(30, 0, false, false), mk(20, 0, false, false)},
			[]mapping{m(0, 1), m(2, 1)}},
		{"first of the largest", []file{mk(30, 0, false, false), mk(30, 0, false, false)},
			[]mapping{m(1, 0)}},
		{"compressed at the same size", []file{mk(30, 0, false, false), mk(30, 0, false, true), mk(29, 0, false, true)},
			[]mapping{m(0, 1), m(2, 1)}},
		{"larger over compressed", []file{mk(30, 0, false, true), mk(31, 0, false, false)},
			[]mapping{m(0, 1)}},
		{"kept source over larger", []file{mk(1<<62+5, 0, false, false), mk(1, 0, true, false), mk(2, 0, true, false)},
			[]mapping{m(0, 2)}},
		{"sizes beyond the rank's bits", []file{mk(1<<62+5, 0, false, false), mk(1<<62+9, 0, false, true)},
			[]mapping{m(0, 1)}},
		{"classes apart", []file{mk(10, 1, false, false), mk(20, 0, false, false), mk(30, 1, false, false), mk(5, 2, false, false), mk(1, 0, false, false)},
			[]mapping{m(0, 2), m(4, 1)}},
		// On a filesystem of 16 KiB blocks, the block at (4 KiB) block fi of
		// file fi is at place fi % 4 in a block of the filesystem.
		{"places in a filesystem block apart", []file{big(10), big(20), big(30), big(5), big(1), mk(40, 0, false, false)},
			[]mapping{m(4, 0)}},
	} {
		g := make([]pair, len(tc.files))
		for i := range g {
			g[i] = pair{sum: 7, at: at(i)}
		}
		got := appendGroup(nil, newSources(tc.files, 4096), g)
		slices.SortFunc(got, func(a, b mapping) int { return cmp.Compare(a.dst, b.dst) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: appendGroup = %v; want %v", tc.name, got, tc.want)
		}
	}
}
