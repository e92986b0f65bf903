package plan

// Status says what became of a plan line or of one destination.
type Status string

// Line statuses (Result.Status).
const (
	// StatusDone: every destination was deduped.
	StatusDone Status = "done"
	// StatusPartial: some destinations were not deduped; see each one.
	StatusPartial Status = "partial"
	// StatusInvalid: the line could not be parsed or validated; Error
	// says why and there are no destinations.
	StatusInvalid Status = "invalid"
	// StatusStale: the source changed since it was hashed; every
	// destination is skipped.
	StatusStale Status = "stale"
	// StatusError: the source could not be used; every destination is
	// skipped.
	StatusError Status = "error"
	// StatusSkipped: the line was not attempted (interrupted).
	StatusSkipped Status = "skipped"
	// StatusChecked (dry run): every destination passed the checks and
	// nothing was done.
	StatusChecked Status = "checked"
	// StatusDiffers (rewrite lines): the file changed between the copy and
	// the swap; the kernel shared nothing it found different.
	StatusDiffers Status = "differs"
	// StatusBusy: the kernel answered EAGAIN (a btrfs send reads the
	// subvolume) for some destinations, also when tried again later in
	// the run; nothing failed, and a later run plans them again.
	StatusBusy Status = "busy"
)

// Destination statuses (DstResult.Status). Stale, error and skipped are
// shared with the line statuses; checked is the dry-run status.
const (
	// DstDeduped: the whole range now shares the source's storage.
	DstDeduped Status = "deduped"
	// DstDiffers: the kernel found different bytes; Bytes were deduped
	// before the difference.
	DstDiffers Status = "differs"
	DstStale   Status = StatusStale
	DstError   Status = StatusError
	DstSkipped Status = StatusSkipped
	// DstChecked: identity, type and alignment verified; nothing done.
	DstChecked Status = StatusChecked
	// DstBusy: EAGAIN (a btrfs send reads the subvolume), also when tried
	// again later in the run; Bytes were deduped before it.
	DstBusy Status = StatusBusy
)

// Result is applysame's report on one plan line.
type Result struct {
	Type string `json:"type"` // always TypeResult
	V    int    `json:"v"`    // Version
	// Line is the 1-based line number of the plan line (with
	// --from-fdupes, the line of the group's first path).
	Line int `json:"line"`
	// Len and Src repeat the plan line; they are absent on invalid lines.
	Len    int64  `json:"len,omitempty"`
	Src    *Loc   `json:"src,omitempty"`
	Status Status `json:"status"`
	// Error explains an invalid, stale, error, skipped or differs status.
	Error string      `json:"error,omitempty"`
	Dst   []DstResult `json:"dst,omitempty"`
	// Rewrite reports on a rewrite line, which has no Len, Src or Dst.
	Rewrite *RewriteResult `json:"rewrite,omitempty"`
}

// RewriteResult is what a rewrite line did.
type RewriteResult struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"` // Path's bytes, when not UTF-8
	Off     int64  `json:"off"`                // the extent's offset in the file
	Len     int64  `json:"len"`                // the extent's length
	// Written is the bytes copied; Shared, the bytes of the file that now
	// share the copy (all of them when the status is done).
	Written int64  `json:"written"`
	Shared  int64  `json:"shared"`
	Errno   string `json:"errno,omitempty"`
}

// Loc names a range's file and offset.
type Loc struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"` // Path's bytes, when not UTF-8
	Off     int64  `json:"off"`
}

// DstResult is the outcome for one destination, in plan order.
type DstResult struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"` // Path's bytes, when not UTF-8
	Off     int64  `json:"off"`
	Status  Status `json:"status"`
	// Bytes is how many bytes of the range were deduped, also when the
	// range was deduped only in part.
	Bytes int64 `json:"bytes"`
	// Errno is the symbolic errno ("EPERM") behind an error, if any.
	Errno string `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
	// ReadOnly says the destination is in a read-only btrfs subvolume (a
	// read-only snapshot), which root may deduplicate into (see
	// docs/security.md; findsame -no-readonly plans none).
	ReadOnly bool `json:"readonly,omitempty"`
}
