package plan

import "same/internal/fsys"

// Version is the major format version written on every record. Readers
// refuse records of a major version they do not know and ignore unknown
// fields. Version 2 names files by filesystem UUID and subvolume instead
// of st_dev, and writes mtime as an exact date string; MinVersion is the
// oldest version still read.
const (
	Version    = 2
	MinVersion = 1
)

// Record types.
const (
	TypeDedupe  = "dedupe"
	TypeRewrite = "rewrite"
	TypeResult  = "result"
)

// Record is one plan line: a *Dedupe or a *Rewrite.
type Record interface{ record() }

func (*Dedupe) record()  {}
func (*Rewrite) record() {}

// Dedupe is one plan line: share Len bytes of every destination with the
// source range. Identities are those each file had when it was hashed.
type Dedupe struct {
	Type string `json:"type"`
	V    int    `json:"v"`
	// Len is the run length in bytes. It is a multiple of the block size
	// unless every range ends exactly at its file's EOF.
	Len int64 `json:"len"`
	// Digest is the hex SHA-256 of the run's block hashes as stored in the
	// index; two plans that name the same content carry the same digest.
	Digest string `json:"digest"`
	// Freed is findsame's estimate of the bytes this line frees.
	Freed int64   `json:"freed"`
	Src   Range   `json:"src"`
	Dst   []Range `json:"dst"`
	// Unit numbers the unit of work the line belongs to (see Unit); 0
	// when the plan has none.
	Unit int64 `json:"unit,omitempty"`
}

// A unit of work is what frees one extent: its rewrite, if any, and the
// dedupe lines that cover it; or, without a rewrite, one dedupe line.
// findsame numbers units from 1 and writes the records of a unit next to
// each other, the rewrite first; applysame finishes a unit that has a
// rewrite before it starts the next one, so that an interruption leaves no
// copy written whose extent is not freed.

// Range is one side of a run: a file, the identity it had when hashed, and
// the offset of the run in it.
//
// A file is named by its filesystem's ID and subvolume (Identity.Vol, see
// fsys.Volume), which survive remounts and reboots, and its inode. Plans
// of version 1 named it by st_dev instead (Dev, with Vol.FS empty), as do
// ranges made on the spot from fdupes groups; Dev is 0 otherwise. Plans
// carry no ctime: Ctime is 0.
type Range struct {
	Path string
	Off  int64
	fsys.Identity
}

// MaxDests is the kernel's limit on destinations in one FIDEDUPERANGE call;
// findsame never writes more on one line.
const MaxDests = 127

// Rewrite is a plan line that frees an extent the dedupe lines cover only
// in part. On btrfs an extent is freed only when nothing refers to any part
// of it, so the parts of it that no dedupe line covers (Copy) are copied
// into a new unnamed file and the file's ranges are then deduplicated
// against that copy, the kernel comparing the bytes first. Once the dedupe
// lines have shared the rest, nothing refers to the extent. The file's
// content, mtime and ctime do not change.
type Rewrite struct {
	Type string `json:"type"`
	V    int    `json:"v"`
	// File is the file holding the extent, with the identity it had when
	// hashed; File.Off is the extent's offset in the file.
	File Range `json:"file"`
	// Len and Physical are the extent's length and disk offset, as FIEMAP
	// reported them when findsame planned.
	Len      int64 `json:"len"`
	Physical int64 `json:"physical"`
	// Copy lists the ranges of the extent (offsets in the file) to copy
	// and share back: those no dedupe line covers, in order.
	Copy []Span `json:"copy"`
	// Bytes is the sum of Copy's lengths: the bytes to be written.
	Bytes int64 `json:"bytes"`
	// Freed is findsame's estimate of the net bytes freed: the extent's
	// length less the bytes written.
	Freed int64 `json:"freed"`
	// Unit numbers the unit of work the rewrite starts; 0 when the plan
	// has none.
	Unit int64 `json:"unit,omitempty"`
	// Shared says that the extent is shared, but only with other files
	// whose ranges the dedupe lines of the unit move onto the copy (an
	// interrupted or limited run leaves such extents), so that the
	// rewrite frees it all the same.
	Shared bool `json:"shared,omitempty"`
	// CopyNextTo, when set, names the file next to which the copy is
	// made, in that file's directory, instead of next to File: File is in
	// a read-only subvolume (a read-only snapshot), where nothing can be
	// written. It is a file on File's filesystem, in a writable
	// subvolume; applysame checks its identity as it checks File's.
	CopyNextTo *Range `json:"copy_next_to,omitempty"`
}

// Span is a range of a file.
type Span struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}
