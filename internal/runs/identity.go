package runs

import "same/internal/dedupe"

// identity is what dedupe.Open checks f against: the identity it had when
// it was hashed.
func (f *file) identity() dedupe.Identity {
	return dedupe.Identity{Vol: f.vol, Ino: f.ino, Size: f.size, Mtime: f.mtime}
}
