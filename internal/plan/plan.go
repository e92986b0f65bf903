package plan

// Version is the major format version written on every record. Readers
// refuse records with another major version and ignore unknown fields.
const Version = 1

// Record types.
const (
	TypeDedupe = "dedupe"
	TypeResult = "result"
)

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
}

// Range is one side of a run: a file, the identity it had when hashed, and
// the offset of the run in it.
type Range struct {
	Path  string `json:"path"`
	Off   int64  `json:"off"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // nanoseconds since the epoch
}

// MaxDests is the kernel's limit on destinations in one FIDEDUPERANGE call;
// findsame never writes more on one line.
const MaxDests = 127
