package plan

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"same/internal/fsys"
)

// MaxLineBytes bounds one plan line. A line with MaxDests destinations and
// long paths is well under 1 MiB; hand-made plans may carry many more
// destinations, which applysame batches.
const MaxLineBytes = 64 << 20

// LineError is a problem with one plan line. The reader skips the line and
// goes on with the next one.
type LineError struct {
	Line int // 1-based line number in the input
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads dedupe and rewrite records from a plan, one JSON object per line, and
// validates each of them.
type Reader struct {
	br   *bufio.Reader
	line int
	buf  []byte
}

// NewReader returns a Reader over r. It reads no more than it needs to
// return the next record, so it can follow a plan while it is written.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next record and its line number. Blank lines are
// skipped. A line that cannot be parsed or fails validation is returned as
// a *LineError with a nil record; the caller may call Next again. At the
// end of input it returns io.EOF; any other error is a read error after
// which the Reader is done.
func (r *Reader) Next() (line int, d Record, err error) {
	for {
		b, tooLong, err := r.readLine()
		if err != nil && (err != io.EOF || (len(b) == 0 && !tooLong)) {
			return r.line, nil, err
		}
		r.line++
		if tooLong {
			return r.line, nil, &LineError{r.line, fmt.Errorf("line longer than %d bytes", MaxLineBytes)}
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			if err == io.EOF {
				return r.line, nil, io.EOF
			}
			continue
		}
		d, perr := Parse(b)
		if perr != nil {
			return r.line, nil, &LineError{r.line, perr}
		}
		return r.line, d, nil
	}
}

// readLine returns the next line without its newline. A line longer than
// MaxLineBytes is consumed up to its newline and reported as tooLong.
func (r *Reader) readLine() (b []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.buf)+len(chunk) > MaxLineBytes+1 {
				tooLong = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return r.buf, tooLong, err
		}
		return bytes.TrimSuffix(r.buf, []byte("\n")), tooLong, nil
	}
}

// Parse decodes and validates one plan record.
func Parse(line []byte) (Record, error) {
	line = bytes.TrimSpace(line)
	// Most lines are dedupe lines that decode whole at once; any other
	// goes through the checks in order, each with its own error.
	var rec struct {
		Type json.RawMessage `json:"type"`
		V    json.RawMessage `json:"v"`
		dedupeFields[*rangeFields]
	}
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &rec) != nil {
		return parseChecked(line)
	}
	typ, v, err := parseHead(rec.Type, rec.V)
	if err != nil {
		return nil, err
	}
	if typ == TypeRewrite {
		return parseRewrite(line, v)
	}
	return dedupeRecord(parseDedupe(&rec.dedupeFields, v, rangeOf))
}

// parseChecked is Parse for a line that does not decode whole as a dedupe
// line: it checks the JSON, then the type and version, then the fields of
// that type, and says what it found wrong first.
func parseChecked(line []byte) (Record, error) {
	if err := json.Unmarshal(line, new(json.RawMessage)); err != nil {
		return nil, syntaxError(err)
	}
	if len(line) == 0 || line[0] != '{' {
		return nil, fmt.Errorf("malformed record: want a JSON object, got %s", jsonKind(line))
	}

	// Type and version first: a record of another type or version may
	// have any other fields.
	var head struct {
		Type json.RawMessage `json:"type"`
		V    json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return nil, err
	}
	typ, v, err := parseHead(head.Type, head.V)
	if err != nil {
		return nil, err
	}
	if typ == TypeRewrite {
		return parseRewrite(line, v)
	}
	var raw dedupeFields[json.RawMessage]
	if err := json.Unmarshal(line, &raw); err != nil {
		return nil, fieldError("", err)
	}
	return dedupeRecord(parseDedupe(&raw, v, parseRange))
}

// parseHead checks a record's type and version.
func parseHead(typeField, vField json.RawMessage) (typ string, v int, err error) {
	if isNull(typeField) {
		return "", 0, errors.New(`missing field "type"`)
	}
	if err := json.Unmarshal(typeField, &typ); err != nil {
		return "", 0, fmt.Errorf(`field "type": want string, got %s`, jsonKind(typeField))
	}
	if typ != TypeDedupe && typ != TypeRewrite {
		return "", 0, fmt.Errorf("unknown record type %q", typ)
	}
	if isNull(vField) {
		return "", 0, fmt.Errorf(`unsupported plan version: field "v" missing (this applysame reads versions %d to %d)`, MinVersion, Version)
	}
	if err := json.Unmarshal(vField, &v); err != nil || v < MinVersion || v > Version {
		return "", 0, fmt.Errorf("unsupported plan version %s (this applysame reads versions %d to %d)", vField, MinVersion, Version)
	}
	return typ, v, nil
}

// dedupeFields are the fields of a dedupe line but its type and version,
// each range R as it is decoded: json.RawMessage, or *rangeFields.
type dedupeFields[R any] struct {
	Len    *int64  `json:"len"`
	Digest *string `json:"digest"`
	Freed  *int64  `json:"freed"`
	Unit   *int64  `json:"unit"`
	Src    *R      `json:"src"`
	Dst    *[]R    `json:"dst"`
}

// dedupeRecord is d as a Record, nil (not a nil *Dedupe) with an error.
func dedupeRecord(d *Dedupe, err error) (Record, error) {
	if err != nil {
		return nil, err
	}
	return d, nil
}

// parseDedupe makes the dedupe record of version v from its fields,
// each range made by parseRange.
func parseDedupe[R any](raw *dedupeFields[R], v int, parseRange func(name string, r R, v int) (Range, error)) (*Dedupe, error) {
	d := &Dedupe{Type: TypeDedupe, V: v}
	switch {
	case raw.Len == nil:
		return nil, errors.New(`missing field "len"`)
	case raw.Src == nil || nullRange(*raw.Src):
		return nil, errors.New(`missing field "src"`)
	case raw.Dst == nil:
		return nil, errors.New(`missing field "dst"`)
	}
	d.Len = *raw.Len
	if raw.Digest != nil {
		d.Digest = *raw.Digest
	}
	if raw.Freed != nil {
		d.Freed = *raw.Freed
	}
	if raw.Unit != nil {
		if d.Unit = *raw.Unit; d.Unit < 0 {
			return nil, fmt.Errorf(`field "unit": negative %d`, d.Unit)
		}
	}
	src, err := parseRange("src", *raw.Src, v)
	if err != nil {
		return nil, err
	}
	d.Src = src
	d.Dst = make([]Range, len(*raw.Dst))
	for i, m := range *raw.Dst {
		if d.Dst[i], err = parseRange(fmt.Sprintf("dst[%d]", i), m, v); err != nil {
			return nil, err
		}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

func parseRewrite(line []byte, v int) (*Rewrite, error) {
	var raw struct {
		File     *json.RawMessage `json:"file"`
		Len      *int64           `json:"len"`
		Physical *int64           `json:"physical"`
		Copy     *[]Span          `json:"copy"`
		Bytes    *int64           `json:"bytes"`
		Freed    *int64           `json:"freed"`
		Unit     *int64           `json:"unit"`
		Shared   *bool            `json:"shared"`
		NextTo   json.RawMessage  `json:"copy_next_to"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return nil, fieldError("", err)
	}
	switch {
	case raw.File == nil || isNull(*raw.File):
		return nil, errors.New(`missing field "file"`)
	case raw.Len == nil:
		return nil, errors.New(`missing field "len"`)
	case raw.Physical == nil:
		return nil, errors.New(`missing field "physical"`)
	case raw.Copy == nil:
		return nil, errors.New(`missing field "copy"`)
	}
	file, err := parseRange("file", *raw.File, v)
	if err != nil {
		return nil, err
	}
	w := &Rewrite{Type: TypeRewrite, V: v, File: file, Len: *raw.Len, Physical: *raw.Physical, Copy: *raw.Copy}
	if raw.Freed != nil {
		w.Freed = *raw.Freed
	}
	if raw.Unit != nil {
		if w.Unit = *raw.Unit; w.Unit < 0 {
			return nil, fmt.Errorf(`field "unit": negative %d`, w.Unit)
		}
	}
	if raw.Shared != nil {
		w.Shared = *raw.Shared
	}
	if len(raw.NextTo) > 0 && !isNull(raw.NextTo) {
		at, err := parseRange("copy_next_to", raw.NextTo, v)
		if err != nil {
			return nil, err
		}
		w.CopyNextTo = &at
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if raw.Bytes != nil && *raw.Bytes != w.Bytes {
		return nil, fmt.Errorf(`field "bytes": %d, but the copy ranges add up to %d`, *raw.Bytes, w.Bytes)
	}
	return w, nil
}

// Validate checks a rewrite record: a positive extent length that does not
// overflow; an absolute path; a non-negative physical offset; and copy
// ranges that are non-empty, in order, not overlapping, inside the extent
// and inside the file. It sets Bytes to the sum of the copy ranges.
func (w *Rewrite) Validate() error {
	if w.Len <= 0 {
		return fmt.Errorf(`field "len": must be positive, got %d`, w.Len)
	}
	if w.Physical < 0 {
		return fmt.Errorf(`field "physical": negative offset %d`, w.Physical)
	}
	if err := w.File.validate("file", 0); err != nil {
		return err
	}
	if w.File.Off > math.MaxInt64-w.Len {
		return fmt.Errorf(`field "file.off": off+len overflows int64 (off %d, len %d)`, w.File.Off, w.Len)
	}
	if len(w.Copy) == 0 {
		return errors.New(`field "copy": no ranges`)
	}
	if at := w.CopyNextTo; at != nil {
		if err := at.validate("copy_next_to", 0); err != nil {
			return err
		}
		if at.Vol.FS == "" || at.Vol.FS != w.File.Vol.FS {
			return fmt.Errorf(`field "copy_next_to.fs": %q, not the filesystem of the file (%q)`, at.Vol.FS, w.File.Vol.FS)
		}
	}
	w.Bytes = 0
	end := w.File.Off
	for i, s := range w.Copy {
		switch {
		case s.Len <= 0:
			return fmt.Errorf(`field "copy[%d].len": must be positive, got %d`, i, s.Len)
		case s.Off < end:
			return fmt.Errorf(`field "copy[%d].off": %d is before the extent or overlaps the previous range`, i, s.Off)
		case s.Off > w.File.Off+w.Len-s.Len:
			return fmt.Errorf(`field "copy[%d]": range [%d, %d) ends past the extent [%d, %d)`, i, s.Off, s.Off+s.Len, w.File.Off, w.File.Off+w.Len)
		case s.Off+s.Len > w.File.Size:
			return fmt.Errorf(`field "copy[%d]": range [%d, %d) ends past the file's size %d`, i, s.Off, s.Off+s.Len, w.File.Size)
		}
		end = s.Off + s.Len
		w.Bytes += s.Len
	}
	return nil
}

// parseRange decodes one range of a record of version v, requiring every
// field.
func parseRange(name string, m json.RawMessage, v int) (Range, error) {
	if isNull(m) {
		return Range{}, fmt.Errorf("missing field %q", name)
	}
	var raw rangeFields
	if err := json.Unmarshal(m, &raw); err != nil {
		return Range{}, fieldError(name, err)
	}
	return rangeOf(name, &raw, v)
}

// rangeFields are the fields of a range as decoded.
type rangeFields struct {
	Path    *string         `json:"path"`
	PathB64 *string         `json:"path_b64"`
	Off     *int64          `json:"off"`
	FS      *string         `json:"fs"`
	Subvol  *uint64         `json:"subvol"`
	Dev     *uint64         `json:"dev"`
	Ino     *uint64         `json:"ino"`
	Size    *int64          `json:"size"`
	Mtime   json.RawMessage `json:"mtime"`
}

// nullRange reports whether a range as decoded is null.
func nullRange[R any](r R) bool {
	switch r := any(r).(type) {
	case json.RawMessage:
		return isNull(r)
	case *rangeFields:
		return r == nil
	}
	return false
}

// rangeOf makes the range of a record of version v from its fields,
// requiring every field.
func rangeOf(name string, raw *rangeFields, v int) (Range, error) {
	if raw == nil {
		return Range{}, fmt.Errorf("missing field %q", name)
	}
	required := []struct {
		name string
		set  bool
	}{
		{"path", raw.Path != nil},
		{"off", raw.Off != nil},
		{"fs", raw.FS != nil || v < 2},
		{"subvol", raw.Subvol != nil || v < 2},
		{"dev", raw.Dev != nil || v >= 2},
		{"ino", raw.Ino != nil},
		{"size", raw.Size != nil},
		{"mtime", !isNull(raw.Mtime)},
	}
	for _, f := range required {
		if !f.set {
			return Range{}, fmt.Errorf("missing field %q", name+"."+f.name)
		}
	}
	r := Range{Path: *raw.Path, Off: *raw.Off, Identity: fsys.Identity{Ino: *raw.Ino, Size: *raw.Size}}
	if raw.PathB64 != nil {
		b, err := base64.StdEncoding.DecodeString(*raw.PathB64)
		if err != nil {
			return Range{}, fmt.Errorf(`field "%s.path_b64": %v`, name, err)
		}
		r.Path = string(b)
	}
	if v < 2 {
		r.Dev = *raw.Dev
		if err := json.Unmarshal(raw.Mtime, &r.Mtime); err != nil {
			return Range{}, fmt.Errorf(`field "%s.mtime": want integer (int64), got %s`, name, jsonKind(raw.Mtime))
		}
		return r, nil
	}
	r.Vol = fsys.Volume{FS: *raw.FS, Subvol: *raw.Subvol}
	if raw.Dev != nil {
		r.Dev = *raw.Dev
	}
	if r.Vol.FS == "" && r.Dev == 0 {
		return Range{}, fmt.Errorf(`field "%s.fs": empty`, name)
	}
	var mt string
	if err := json.Unmarshal(raw.Mtime, &mt); err != nil {
		return Range{}, fmt.Errorf(`field "%s.mtime": want a date string, got %s`, name, jsonKind(raw.Mtime))
	}
	ns, err := fsys.ParseTime(mt)
	if err != nil {
		return Range{}, fmt.Errorf(`field "%s.mtime": %v`, name, err)
	}
	r.Mtime = ns
	return r, nil
}

// Validate checks the invariants every accepted record satisfies: a
// positive length; absolute paths; offsets and sizes that are not negative
// and ranges that neither overflow nor end past the file's size; at least
// one destination; and no destination that overlaps the source or another
// destination in the same file (same dev and ino).
func (d *Dedupe) Validate() error {
	if d.Len <= 0 {
		return fmt.Errorf(`field "len": must be positive, got %d`, d.Len)
	}
	if err := d.Src.validate("src", d.Len); err != nil {
		return err
	}
	if len(d.Dst) == 0 {
		return errors.New(`field "dst": no destinations`)
	}
	for i := range d.Dst {
		name := fmt.Sprintf("dst[%d]", i)
		if err := d.Dst[i].validate(name, d.Len); err != nil {
			return err
		}
		if d.Dst[i].sameFile(d.Src) && overlaps(d.Dst[i].Off, d.Src.Off, d.Len) {
			return fmt.Errorf("%s: range [%d, %d) overlaps the source range [%d, %d) in the same file (%s)",
				name, d.Dst[i].Off, d.Dst[i].Off+d.Len, d.Src.Off, d.Src.Off+d.Len, d.Src.fileID())
		}
	}
	// Sorting by file and offset puts overlapping ranges next to each other.
	idx := make([]int, len(d.Dst))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		x, y := d.Dst[idx[a]], d.Dst[idx[b]]
		if x.Vol.FS != y.Vol.FS {
			return x.Vol.FS < y.Vol.FS
		}
		if x.Vol.Subvol != y.Vol.Subvol {
			return x.Vol.Subvol < y.Vol.Subvol
		}
		if x.Dev != y.Dev {
			return x.Dev < y.Dev
		}
		if x.Ino != y.Ino {
			return x.Ino < y.Ino
		}
		if x.Off != y.Off {
			return x.Off < y.Off
		}
		return idx[a] < idx[b]
	})
	for k := 1; k < len(idx); k++ {
		a, b := idx[k-1], idx[k]
		if d.Dst[a].sameFile(d.Dst[b]) && overlaps(d.Dst[a].Off, d.Dst[b].Off, d.Len) {
			if a > b {
				a, b = b, a
			}
			return fmt.Errorf("dst[%d] and dst[%d]: overlapping ranges at offsets %d and %d in the same file (%s)",
				a, b, d.Dst[a].Off, d.Dst[b].Off, d.Dst[a].fileID())
		}
	}
	return nil
}

func (r Range) validate(name string, length int64) error {
	switch {
	case r.Path == "":
		return fmt.Errorf(`field "%s.path": empty path`, name)
	case !filepath.IsAbs(r.Path):
		return fmt.Errorf(`field "%s.path": relative path %q (plan paths must be absolute)`, name, r.Path)
	case strings.IndexByte(r.Path, 0) >= 0:
		return fmt.Errorf(`field "%s.path": contains a NUL byte`, name)
	case r.Off < 0:
		return fmt.Errorf(`field "%s.off": negative offset %d`, name, r.Off)
	case r.Off > math.MaxInt64-length:
		return fmt.Errorf(`field "%s.off": off+len overflows int64 (off %d, len %d)`, name, r.Off, length)
	case r.Size < 0:
		return fmt.Errorf(`field "%s.size": negative size %d`, name, r.Size)
	case r.Off+length > r.Size:
		return fmt.Errorf(`field "%s.off": range [%d, %d) ends past the file's size %d`, name, r.Off, r.Off+length, r.Size)
	}
	return nil
}

func (r Range) sameFile(o Range) bool { return r.File() == o.File() }

// Volume returns the FileID of r's volume: its file's, without the inode.
func (r Range) Volume() fsys.FileID { return fsys.FileID{Vol: r.Vol, Dev: r.Dev} }

// fileID names the file of r in messages.
func (r Range) fileID() string {
	if r.Vol.FS == "" {
		return fmt.Sprintf("dev %d, ino %d", r.Dev, r.Ino)
	}
	return fmt.Sprintf("fs %s, subvol %d, ino %d", r.Vol.FS, r.Vol.Subvol, r.Ino)
}

// overlaps reports whether [a, a+n) and [b, b+n) intersect; n > 0.
func overlaps(a, b, n int64) bool {
	if a > b {
		a, b = b, a
	}
	return b-a < n
}

func isNull(m json.RawMessage) bool {
	return len(m) == 0 || string(m) == "null"
}

// syntaxError rewords a JSON syntax error.
func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return fmt.Errorf("malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
}

// fieldError rewords a JSON type error so that it names the field by its
// path in the record, e.g. `field "dst[2].off": want integer, got string`.
func fieldError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("malformed record: %v", err)
	}
	field := te.Field
	if prefix != "" {
		field = prefix + "." + field
		if te.Field == "" {
			field = prefix
		}
	}
	return fmt.Errorf("field %q: want %s, got %s", field, typeName(te.Type), te.Value)
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "integer (int64)"
	case reflect.Uint64:
		return "unsigned integer (uint64)"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.String()
}

// jsonKind names the kind of a JSON value.
func jsonKind(m json.RawMessage) string {
	m = bytes.TrimSpace(m)
	if len(m) == 0 {
		return "nothing"
	}
	switch m[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}
