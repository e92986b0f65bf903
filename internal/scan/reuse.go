package scan

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"

	"same/internal/blockhash"
	"same/internal/fiemap"
	"same/internal/index"
)

// reuser takes the sums of a file from the index instead of reading it
// where its ranges are pieces of btrfs disk extents whose sums the index
// already holds: a file in a snapshot, a reflinked copy, a file
// deduplicated before. When at most half of a file is missing there, only
// that is read (a file overwritten in place, appended to). The proof is the key of the disk extent (see
// fiemap.Extent): equal keys, equal bytes at equal offsets. NOCOW files,
// whose extents are overwritten in place, are always read; so is a file
// with an inline extent, or ranges not aligned to blocks.
//
// Files hashed in this run are found too, before the writer commits them:
// readers add what they hashed (add), and the writer drops it once
// committed (drop), where Pieces finds it. So a snapshot's copy of a file
// met right after the file is not read either, and memory holds at most
// the sums of one uncommitted batch. A reader about to read a file claims
// its extents first (claim); another reader that needs one of them waits
// until it is added rather than read it too. A reader waits only before
// it claims anything, so no two wait for each other.
type reuser struct {
	ix *index.Index
	bs int64

	mu       sync.Mutex
	pending  map[extentKey][]pendingPiece
	inflight map[extentKey]chan struct{} // extents being read, closed when added
	// fresh says, by filesystem, that the index held no piece of a disk
	// extent there when first asked (a first run); recorded holds the
	// keys of the extents this run records (see mayBeRecorded).
	fresh    map[string]bool
	recorded bloom
}

// bloom is a Bloom filter of extent keys: it may say yes of a key never
// added, never no of one added. Its 2 MiB (three bits a key) keep wrong
// yeses below 1 in 20 up to about 2.5 million keys, 1 in 8 at 4 million;
// past that, more are asked of the index.
type bloom struct {
	bits []uint64
	seed maphash.Seed
}

const bloomBits = 1 << 24

// hashes returns the filter's three bit positions for k.
func (b *bloom) hashes(k extentKey) [3]uint64 {
	var h maphash.Hash
	h.SetSeed(b.seed)
	h.WriteString(k.fs)
	var buf [24]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(k.start))
	binary.LittleEndian.PutUint64(buf[8:], uint64(k.length))
	binary.LittleEndian.PutUint64(buf[16:], uint64(k.gen))
	h.Write(buf[:])
	x := h.Sum64()
	y := x>>32 | x<<32 ^ 0x9e3779b97f4a7c15
	return [3]uint64{x % bloomBits, y % bloomBits, (x + 2*y) % bloomBits}
}

func (b *bloom) add(k extentKey) {
	if b.bits == nil {
		b.bits = make([]uint64, bloomBits/64)
		b.seed = maphash.MakeSeed()
	}
	for _, i := range b.hashes(k) {
		b.bits[i/64] |= 1 << (i % 64)
	}
}

func (b *bloom) has(k extentKey) bool {
	if b.bits == nil {
		return false
	}
	for _, i := range b.hashes(k) {
		if b.bits[i/64]&(1<<(i%64)) == 0 {
			return false
		}
	}
	return true
}

// record notes the extents of a file of filesystem fs that the writer is
// about to record, before it commits them.
func (r *reuser) record(fs string, ext []fiemap.Extent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range ext {
		if reusable(e) {
			r.recorded.add(keyOf(fs, e))
		}
	}
}

// mayBeRecorded reports whether the index may hold pieces of extent k:
// false only on a filesystem where it held none when first asked, for a
// key that this run has not recorded. So a first run, whose extents are
// new but for those of snapshots and copies met before, asks the index
// only about those.
func (r *reuser) mayBeRecorded(ctx context.Context, k extentKey) (bool, error) {
	r.mu.Lock()
	_, known := r.fresh[k.fs]
	r.mu.Unlock()
	if !known {
		has, err := r.ix.HasPieces(ctx, k.fs) // not under the lock: it reads the index
		if err != nil {
			return true, err
		}
		r.mu.Lock()
		if r.fresh == nil {
			r.fresh = make(map[string]bool)
		}
		if _, known := r.fresh[k.fs]; !known { // the first answer stands
			r.fresh[k.fs] = !has
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.fresh[k.fs] || r.recorded.has(k), nil
}

// extentKey names a disk extent (see fiemap.Extent) of the filesystem fs:
// the same key on two filesystems names two extents, which two filesystems
// made alike (new ones written alike, say) do give.
type extentKey struct {
	fs                 string
	start, length, gen int64
}

// pendingPiece is a piece of a disk extent in a file hashed in this run
// and not committed yet, with the file's sums.
type pendingPiece struct {
	index.Piece
	sums []byte
}

func keyOf(fs string, e fiemap.Extent) extentKey {
	return extentKey{fs, e.DiskStart, e.DiskLen, e.Gen}
}

// reusable reports whether the sums of e may serve another file.
func reusable(e fiemap.Extent) bool {
	return e.Gen != 0 && e.DiskStart != 0 && e.Flags&(fiemap.FlagUnwritten|fiemap.FlagDataInline) == 0
}

// add makes the sums of a file of filesystem fs just hashed, with its
// extents, available to files hashed after it.
func (r *reuser) add(fs string, size int64, nocow int8, ext []fiemap.Extent, sums []byte) {
	if nocow != index.NoCOWUnset {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range ext {
		if !reusable(e) {
			continue
		}
		if r.pending == nil {
			r.pending = make(map[extentKey][]pendingPiece)
		}
		k := keyOf(fs, e)
		r.pending[k] = append(r.pending[k], pendingPiece{index.Piece{Logical: e.Logical, Offset: e.Offset, Length: e.Length, Size: size}, sums})
	}
}

// drop forgets what add made available, once the index holds it.
func (r *reuser) drop(fs string, ext []fiemap.Extent, sums []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range ext {
		if !reusable(e) {
			continue
		}
		k := keyOf(fs, e)
		ps := r.pending[k]
		for i := range ps {
			if len(ps[i].sums) > 0 && len(sums) > 0 && &ps[i].sums[0] == &sums[0] && ps[i].Logical == e.Logical {
				ps = append(ps[:i], ps[i+1:]...)
				break
			}
		}
		if len(ps) == 0 {
			delete(r.pending, k)
		} else {
			r.pending[k] = ps
		}
	}
}

// wait waits until the extent k that another reader is reading is added,
// and reports whether it waited. When no reader is reading k, it claims
// the extents of items instead, all at once under the same lock, so that
// two readers of one extent never both read it (the second waits for the
// first), and sets once: a reader that claimed never waits, nor claims
// again. (Claiming again for each extent not found went over every
// extent of the file each time: a file of 102,400 extents took ten
// minutes.)
func (r *reuser) wait(ctx context.Context, k extentKey, items []fiemap.Extent, claimed *[]extentKey, once *bool) bool {
	if *once {
		return false
	}
	r.mu.Lock()
	ch := r.inflight[k]
	if ch == nil {
		*claimed = append(*claimed, r.claimLocked(k.fs, items)...)
		*once = true
		if claimVisits != nil {
			claimVisits(len(items))
		}
	}
	r.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
	return true
}

// claim marks the extents of a file about to be read, those not marked
// yet, and returns what ends the claim (of those and of the ones claimed
// already): call it once the file is added, or failed. A reader claims at
// most once a file, and waits (wait) only before it claims, so no two
// readers wait for each other.
func (r *reuser) claim(fs string, claimed []extentKey, items []fiemap.Extent) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := append(claimed, r.claimLocked(fs, items)...)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, k := range mine {
			close(r.inflight[k])
			delete(r.inflight, k)
		}
	}
}

// claimVisits, set by tests, is told how many extents a reader's claim
// in wait goes over.
var claimVisits func(n int)

func (r *reuser) claimLocked(fs string, items []fiemap.Extent) []extentKey {
	var mine []extentKey
	for _, e := range items {
		k := keyOf(fs, e)
		if !reusable(e) || r.inflight[k] != nil {
			continue
		}
		if r.inflight == nil {
			r.inflight = make(map[extentKey]chan struct{})
		}
		r.inflight[k] = make(chan struct{})
		mine = append(mine, k)
	}
	return mine
}

// fromPending returns the pieces of extent k hashed in this run that hold
// some of its data from off to end.
func (r *reuser) fromPending(k extentKey, off, end int64) []pendingPiece {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pendingPiece
	for _, p := range r.pending[k] {
		if p.Offset < end && p.Offset+p.Length > off {
			out = append(out, p)
		}
	}
	return out
}

// span is a range of a file.
type span struct{ off, len int64 }

// sums returns the packed sums of a file of size bytes whose file extent
// items are items (from fiemap.DiskExtents), appended to out[:0], and the
// ranges (of whole blocks, or up to EOF) whose sums it could not take from
// extents hashed before, which the caller reads and fills in. ok is false
// when the file must be read whole (an inline extent, ranges not aligned
// to blocks). Unless all was found, it has claimed the file's extents for
// the caller, who calls release once the file is added or failed.
func (r *reuser) sums(ctx context.Context, fs string, items []fiemap.Extent, size int64, out []byte) (sums []byte, missing []span, ok bool, release func(), err error) {
	var claimed []extentKey
	sums, missing, ok, err = r.find(ctx, fs, items, size, out, &claimed)
	if (ok && len(missing) == 0) || err != nil {
		r.claim(fs, claimed, nil)() // found after all: let waiters look too
		return sums, missing, ok, func() {}, err
	}
	return sums, missing, ok, r.claim(fs, claimed, items), err
}

// find is sums without the last claim; the extents wait claimed on the
// way are added to claimed.
func (r *reuser) find(ctx context.Context, fs string, items []fiemap.Extent, size int64, out []byte, claimed *[]extentKey) ([]byte, []span, bool, error) {
	bs := r.bs
	// Up to the end of the last extent: the rest is a hole, whose zero
	// sums are not kept (a file of an exabyte has none).
	n := (itemsEnd(items, size) + bs - 1) / bs
	out = append(out[:0], make([]byte, n*blockhash.SumSize)...) // holes: zero sums
	type chunkKey struct {
		file int64
		c    int
	}
	chunks := make(map[chunkKey][]byte)
	chunk := func(file int64, c int) ([]byte, error) {
		k := chunkKey{file, c}
		if b, ok := chunks[k]; ok {
			return b, nil
		}
		b, err := r.ix.Chunk(ctx, file, c)
		chunks[k] = b
		return b, err
	}
	var missing []span
	once := false // see wait
	for _, e := range items {
		if e.Logical >= size {
			continue // preallocated beyond EOF
		}
		end := min(e.End(), size)
		switch {
		case e.Flags&fiemap.FlagDataInline != 0, e.DiskStart == 0, e.Gen == 0:
			return out, nil, false, nil
		case e.Logical%bs != 0, end%bs != 0 && end != size:
			return out, nil, false, nil
		case e.Flags&fiemap.FlagUnwritten != 0:
			continue // reads as zeros
		}
		dataEnd := e.Offset + (end - e.Logical)
		ok, err := r.cover(ctx, fs, out, e, end, size, dataEnd, chunk)
		for err == nil && !ok {
			// Another reader may be reading it, or may have just added
			// it: look again, after waiting for it, or once after
			// claiming it.
			waited := r.wait(ctx, keyOf(fs, e), items, claimed, &once)
			ok, err = r.cover(ctx, fs, out, e, end, size, dataEnd, chunk)
			if !waited || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return out, nil, false, err
		}
		if !ok {
			if k := len(missing) - 1; k >= 0 && missing[k].off+missing[k].len == e.Logical {
				missing[k].len += end - e.Logical
			} else {
				missing = append(missing, span{e.Logical, end - e.Logical})
			}
		}
	}
	return out, missing, true, nil
}

// itemsEnd returns where the data of a file of size bytes ends, as its
// extent items say: the end of the last, at most size; 0 for none.
func itemsEnd(items []fiemap.Extent, size int64) int64 {
	var end int64
	for _, e := range items {
		if e.Logical < size {
			end = max(end, min(e.End(), size))
		}
	}
	return end
}

// trimZeroSums drops the zero sums at the end of sums, as blockhash gives
// them.
func trimZeroSums(sums []byte) []byte {
	for len(sums) >= blockhash.SumSize && blockhash.At(sums, len(sums)/blockhash.SumSize-1) == blockhash.Zero {
		sums = sums[:len(sums)-blockhash.SumSize]
	}
	return sums
}

// cover fills in the sums of e, a range of a file of size bytes that ends
// at end and holds its disk extent's data up to dataEnd, from the pieces
// of that extent hashed before, in this run or recorded; several pieces
// may cover it together. chunk reads recorded sums. It reports false if
// some block is in none.
func (r *reuser) cover(ctx context.Context, fs string, out []byte, e fiemap.Extent, end, size, dataEnd int64, chunk func(int64, int) ([]byte, error)) (bool, error) {
	bs := r.bs
	pieces := r.fromPending(keyOf(fs, e), e.Offset, dataEnd)
	for pos := e.Offset; pos < dataEnd; {
		n, ok, err := r.take(out, pieces, e, pos, size, dataEnd, chunk)
		if err == nil && !ok {
			// None at hand holds pos: ask the index for those that do.
			var recorded []index.Piece
			var may bool
			if may, err = r.mayBeRecorded(ctx, keyOf(fs, e)); !may || err != nil {
				return false, err
			}
			recorded, err = r.ix.Pieces(ctx, fs, e.DiskStart, e.DiskLen, e.Gen, pos)
			for _, p := range recorded {
				pieces = append(pieces, pendingPiece{Piece: p})
			}
			if err == nil && len(recorded) > 0 {
				n, ok, err = r.take(out, pieces, e, pos, size, dataEnd, chunk)
			}
		}
		if err != nil || !ok {
			return false, err
		}
		pos = min(dataEnd, pos+n*bs)
	}
	return true, nil
}

// take copies into out the sums of e's blocks from data offset pos on that
// one of pieces holds, and returns how many; ok is false when none of
// them holds the block at pos.
func (r *reuser) take(out []byte, pieces []pendingPiece, e fiemap.Extent, pos, size, dataEnd int64, chunk func(int64, int) ([]byte, error)) (n int64, ok bool, err error) {
	bs := r.bs
	for _, p := range pieces {
		if p.Offset > pos || p.Offset+p.Length <= pos {
			continue
		}
		start := p.Logical + pos - p.Offset // pos in p's file
		if start%bs != 0 {
			continue // blocks cut the data elsewhere there
		}
		segEnd := min(dataEnd, p.Offset+p.Length)
		if e.Logical+segEnd-e.Offset == size && p.Logical+segEnd-p.Offset == p.Size {
			n = (segEnd - pos + bs - 1) / bs // both end here: the partial blocks match
		} else {
			// Whole blocks only, and only those inside p's file: its
			// last sum covers only the bytes before its EOF.
			n = min((segEnd-pos)/bs, (p.Size-start)/bs)
		}
		if n <= 0 {
			continue
		}
		chunkOf := func(c int) ([]byte, error) { return chunk(p.File, c) }
		if p.sums != nil { // hashed in this run: all its sums at hand
			chunkOf = func(c int) ([]byte, error) {
				lo := min(int64(len(p.sums)), int64(c)*index.ChunkBlocks*blockhash.SumSize)
				return p.sums[lo:min(int64(len(p.sums)), lo+index.ChunkBlocks*blockhash.SumSize)], nil
			}
		}
		if err := copySums(out, (e.Logical+pos-e.Offset)/bs, start/bs, n, chunkOf); err != nil {
			return 0, false, err
		}
		return n, true, nil
	}
	return 0, false, nil
}

// copySums copies n sums from block src on of a file, read through chunk
// in chunks of index.ChunkBlocks, into out (zeroed) from block dst on.
// Sums that are not there are zero: the index keeps neither the zero sums
// at the end of a file nor chunks of zero sums.
func copySums(out []byte, dst, src, n int64, chunk func(int) ([]byte, error)) error {
	const size = blockhash.SumSize
	for n > 0 {
		b, err := chunk(int(src / index.ChunkBlocks))
		if err != nil {
			return err
		}
		i := src % index.ChunkBlocks
		k := min(n, index.ChunkBlocks-i)
		if lo, hi := i*size, min(int64(len(b)), (i+k)*size); lo < hi {
			copy(out[dst*size:], b[lo:hi])
		}
		dst, src, n = dst+k, src+k, n-k
	}
	return nil
}
