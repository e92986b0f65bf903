package runs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"same/internal/fiemap"
	"same/internal/index"
	"same/internal/sumtab"
)

// keptExtents are the recorded extents kept beside the table of sums
// (see sumtab.Extents): a re-run takes from them those of the files
// unchanged in the index since they were kept, and reads the others from
// the index. A file's extents change in the index only with its row's
// changed (index.File.Changed), but for a file that referred to
// another's (files.extents_of) when that other changed or went: the
// kept reference is taken only where the other's kept extents are.
type keptExtents struct {
	path string
	key  string
	seq  int64 // the index's write_seq before this run read the files
	// x holds the kept extents to read (nil: none, or -full), and fresh
	// marks by file position the files unchanged since x's Seq.
	x     *sumtab.Extents
	fresh []bool
	warn  func(path string, err error)
	// rows and refs count the extents and references x held, once read.
	rows, refs int64
}

// extentsSchema is the last index schema that changed what the rows of
// extents say (17: a clone refers to its origin's), which kept extents
// are keyed to: an upgrade to a schema that leaves them as they were
// (18 added files.sums_seq) keeps them, where every extent was read from
// the index again once (0.5 s on a host of 100 daily snapshots). Raise
// it with a schema that changes them.
const extentsSchema = 17

// keptExtents returns the kept extents of the table f.tab, or nil when
// no table is kept.
func (f *finder) keptExtents() *keptExtents {
	if f.tab == nil {
		return nil
	}
	return openKept(f.ctx, f.ix, f.tab.path+sumtab.ExtentsSuffix, f.tab.seq, f.files, f.seqs, f.o)
}

// openKept returns the extents kept at path for the files of index ix
// with rowSeqs seqs (by id), to be kept again as of seq, the index's
// write_seq before the files were read; with o.Full, none are read.
func openKept(ctx context.Context, ix *index.Index, path string, seq int64, files []file, seqs []rowSeq, o *Options) *keptExtents {
	instance, err := ix.Instance(ctx)
	if err != nil {
		return nil
	}
	k := &keptExtents{path: path, key: fmt.Sprintf("index %s schema %d", instance, extentsSchema), seq: seq, warn: o.warn}
	if o.Full {
		return k
	}
	x, err := sumtab.OpenExtents(k.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			o.warn(k.path, fmt.Errorf("%w: every extent read from the index", err))
		}
		return k
	}
	if x.Key != k.key {
		x.Close()
		return k
	}
	k.x = x
	k.fresh = make([]bool, len(files))
	for i := range files {
		id := files[i].id
		k.fresh[i] = id < int64(len(seqs)) && seqs[id].changed <= x.Seq
	}
	return k
}

// close closes the kept extents read, if any.
func (k *keptExtents) close() {
	if k != nil && k.x != nil {
		k.x.Close()
		k.x = nil
	}
}

// take gives the files that want marks (nil: all) their kept extents,
// where they are fresh, and returns which it gave (have), those given
// extents of their own (own: with the files whose extents the others
// refer to, wanted or not) and the references taken, which the caller
// takes (takeRefs) once the extents referred to are in place. On an
// error it gives none.
func (k *keptExtents) take(files []file, byID fileIndex, want []bool) (have, own []bool, refs []extentRef, err error) {
	defer k.close()
	wants := func(i int) bool { return k.fresh[i] && (want == nil || want[i]) }
	needed := make([]bool, len(files)) // owners of the references wanted
	var cands []extentRef
	own = make([]bool, len(files))
	const slabSize = 1 << 16
	var slab []fiemap.Extent
	err = k.x.Read(func(file, of int64) {
		k.refs++
		i, ok := byID.of(file)
		j, jok := byID.of(of)
		if ok && jok && wants(i) {
			cands = append(cands, extentRef{i, j})
			needed[j] = true
		}
	}, func(id int64, es []fiemap.Extent) {
		k.rows += int64(len(es))
		i, ok := byID.of(id)
		if !ok || !k.fresh[i] || !(wants(i) || needed[i]) {
			return
		}
		if cap(slab)-len(slab) < len(es) {
			slab = make([]fiemap.Extent, 0, max(slabSize, len(es)))
		}
		start := len(slab)
		slab = append(slab, es...)
		files[i].extents = slab[start:len(slab):len(slab)]
		own[i] = true
	})
	if err != nil {
		for i := range files {
			if own[i] {
				files[i].extents = nil
			}
		}
		return nil, nil, nil, err
	}
	have = make([]bool, len(files))
	for i := range files {
		have[i] = own[i] && (want == nil || want[i])
	}
	for _, r := range cands {
		if own[r.of] {
			refs = append(refs, r)
			have[r.i] = true
		}
	}
	return have, own, refs, nil
}

// write keeps the extents of the files that own marks, and the
// references refs, as of k.seq. Failing to costs the next run time, not
// its plan: it warns.
func (k *keptExtents) write(files []file, own []bool, refs []extentRef) {
	rs := make([]sumtab.Ref, len(refs))
	for n, r := range refs {
		rs[n] = sumtab.Ref{File: files[r.i].id, Of: files[r.of].id}
	}
	err := sumtab.WriteExtents(k.path, sumtab.ExtentsHeader{Key: k.key, Seq: k.seq}, rs, func(yield func(int64, []fiemap.Extent) bool) {
		for i := range files {
			if own[i] && !yield(files[i].id, files[i].extents) {
				return
			}
		}
	})
	if err != nil {
		k.warn(k.path, fmt.Errorf("%w: the next run reads every extent from the index", err))
	}
}
