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
// The record can only lag behind: deduplication shares what was apart,
// and a file whose data changed has another identity, which hashfile
// records with its new extents. A pair shared when hashed and apart now,
// with both files unchanged (a defragmentation undoes sharing without
// changing a file), is left out until hashfile records the file again.
// Settled files are not checked against their identity either: none of
// their blocks is planned.
//
// It reads the recorded extents of the involved files, keeps those of the
// files still involved (remap replaces them) and drops the others.
func (f *finder) settle(involved []bool) error {
	err := f.ix.ScanExtents(f.ctx, func(id int64, e fiemap.Extent) error {
		if i, ok := f.byID[id]; ok && involved[i] {
			f.files[i].extents = append(f.files[i].extents, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	need := make([]bool, len(f.files))
	var dc, sc cursor
	buf := make([]words, 0, 1<<16)
	for k := range f.maps.len() {
		err := f.maps.each(k, buf, func(ws []words) error {
			for _, m := range mappingsOf(ws) {
				d, s := m.dst.file(), m.src.file()
				if need[d] && need[s] {
					continue
				}
				df, sf := &f.files[d], &f.files[s]
				if shareable(df, sf, m.dst.block()*f.bs, m.src.block()*f.bs, &dc, &sc, f.o.Rewrite) {
					need[d], need[s] = true, true
				}
			}
			return f.ctx.Err()
		})
		if err != nil {
			return err
		}
	}
	for i := range f.files {
		if involved[i] && !need[i] {
			f.files[i].settled = true
			f.files[i].extents = nil
			involved[i] = false
			f.sum.Settled++
		}
	}
	return nil
}
