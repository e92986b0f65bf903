package runs

import (
	"same/internal/fiemap"
)

// settle narrows the files to map again (involved, which grouping filled
// with every file a mapping names) to those with a mapping that the
// extents recorded by hashfile do not show as already shared: on a host
// deduplicated before, or holding snapshots and reflinked copies, most
// mappings pair blocks stored once, and mapping every file they name
// again (opening it by path, FIEMAP and the tree search) took most of a
// re-run. The other files are settled: every mapping naming one of them
// is left out, as chain would leave it out from their extents as they
// are now, when they are still as recorded.
//
// Only files whose extents hashfile keeps current are settled: those it
// recorded from btrfs's file extent items (as root), whose extents it
// records again whenever their items change, deduplicated, reflinked or
// defragmented (see scan). Files recorded by FIEMAP (XFS, or without the
// tree search) are always mapped again: a defragmentation, which undoes
// sharing without changing a file, would leave their record wrong.
// Settled files are not checked against their identity either: none of
// their blocks is planned.
//
// It reads the recorded extents of the involved files; remap replaces
// those of the files still involved. A settled file keeps its recorded
// extents, which are current: an extent it refers to may be another
// file's to rewrite (see sharedLeftover), and that rewrite frees the
// extent only if it moves every reference, the settled file's too.
func (f *finder) settle(involved []bool) error {
	err := loadExtents(f.ctx, f.ix, f.files, f.byID, involved, f.o, f.kext)
	if err != nil {
		return err
	}
	need := make([]bool, len(f.files))
	var dc, sc cursor
	for k := range f.maps.len() {
		// In destination order, the cursors find most blocks in the
		// extents they found the blocks before in; the list is left
		// sorted for chain.
		maps, err := f.maps.sortedMappings(k, f.buf)
		if err != nil {
			return err
		}
		for i, m := range maps {
			if i%(1<<16) == 0 {
				if err := f.ctx.Err(); err != nil {
					return err
				}
			}
			d, s := m.dst.file(), m.src.file()
			if need[d] && need[s] {
				continue
			}
			df, sf := &f.files[d], &f.files[s]
			if shareable(df, sf, m.dst.block()*f.bs, m.src.block()*f.bs, &dc, &sc, f.o.Rewrite) {
				need[d], need[s] = true, true
			}
		}
	}
	for i := range f.files {
		if involved[i] && !need[i] && kept(f.files[i].extents) {
			f.files[i].settled = true
			involved[i] = false
			f.sum.Settled++
		}
	}
	return nil
}

// kept reports whether the recorded extents ext are file extent items
// that hashfile keeps current (each has its disk extent's generation;
// inline data has none, and stays inline while the file is unchanged),
// rather than what FIEMAP showed when the file was hashed.
func kept(ext []fiemap.Extent) bool {
	for _, e := range ext {
		if e.Gen == 0 && e.Flags&fiemap.FlagDataInline == 0 {
			return false
		}
	}
	return len(ext) > 0
}
