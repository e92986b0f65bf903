package plan

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"strconv"
	"unicode/utf8"

	"same/internal/fsys"
)

// Encoder writes plan and result records, one JSON object per line, each
// with a single Write so that a reader of a pipe sees whole lines as they
// come.
type Encoder struct {
	w    io.Writer
	buf  bytes.Buffer
	enc  *json.Encoder
	line []byte // a dedupe line, written without encoding/json
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	e := &Encoder{w: w}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}

// Encode writes r as one line, filling in Type and V.
func (e *Encoder) Encode(r *Result) error {
	r.Type, r.V = TypeResult, Version
	if r.Src != nil {
		r.Src.PathB64 = rawPath(r.Src.Path)
	}
	for i := range r.Dst {
		r.Dst[i].PathB64 = rawPath(r.Dst[i].Path)
	}
	if r.Rewrite != nil {
		r.Rewrite.PathB64 = rawPath(r.Rewrite.Path)
	}
	return e.write(r)
}

// Write writes a plan record as one line.
func (e *Encoder) Write(rec Record) error {
	if d, ok := rec.(*Dedupe); ok {
		// Most lines of a large plan: written without reflection.
		e.line = append(d.appendJSON(e.line[:0]), '\n')
		_, err := e.w.Write(e.line)
		return err
	}
	return e.write(rec)
}

// MarshalJSON writes a dedupe record as encoding/json would from its
// field tags.
func (d *Dedupe) MarshalJSON() ([]byte, error) { return d.appendJSON(nil), nil }

// appendJSON appends d as JSON to b.
func (d *Dedupe) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, d.Type)
	b = append(b, `,"v":`...)
	b = strconv.AppendInt(b, int64(d.V), 10)
	b = append(b, `,"len":`...)
	b = strconv.AppendInt(b, d.Len, 10)
	b = append(b, `,"digest":`...)
	b = appendString(b, d.Digest)
	b = append(b, `,"freed":`...)
	b = strconv.AppendInt(b, d.Freed, 10)
	b = append(b, `,"src":`...)
	b = d.Src.appendJSON(b)
	b = append(b, `,"dst":`...)
	if d.Dst == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range d.Dst {
			if i > 0 {
				b = append(b, ',')
			}
			b = d.Dst[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	if d.Unit != 0 {
		b = append(b, `,"unit":`...)
		b = strconv.AppendInt(b, d.Unit, 10)
	}
	return append(b, '}')
}

func (e *Encoder) write(v any) error {
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return err
	}
	_, err := e.w.Write(e.buf.Bytes())
	return err
}

// rawPath returns path in base64 when it is not valid UTF-8, which JSON
// strings cannot carry (encoding/json replaces each invalid byte by
// U+FFFD); "" otherwise.
func rawPath(path string) string {
	if utf8.ValidString(path) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(path))
}

// MarshalJSON writes a range of the current version: the path (and
// path_b64 when it is not valid UTF-8), offset, filesystem ID, subvolume,
// inode, size and mtime as an RFC 3339 date with nanoseconds.
func (r Range) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, 128+len(r.Path))), nil
}

// appendJSON appends r as JSON to b (see MarshalJSON).
func (r Range) appendJSON(b []byte) []byte {
	b = append(b, `{"path":`...)
	b = appendString(b, r.Path)
	if raw := rawPath(r.Path); raw != "" {
		b = append(b, `,"path_b64":"`...)
		b = append(b, raw...)
		b = append(b, '"')
	}
	b = append(b, `,"off":`...)
	b = strconv.AppendInt(b, r.Off, 10)
	b = append(b, `,"fs":`...)
	b = appendString(b, r.Vol.FS)
	b = append(b, `,"subvol":`...)
	b = strconv.AppendUint(b, r.Vol.Subvol, 10)
	if r.Dev != 0 {
		b = append(b, `,"dev":`...)
		b = strconv.AppendUint(b, r.Dev, 10)
	}
	b = append(b, `,"ino":`...)
	b = strconv.AppendUint(b, r.Ino, 10)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, `,"mtime":"`...)
	b = fsys.AppendTime(b, r.Mtime)
	return append(b, `"}`...)
}

// appendString appends s as a JSON string, without escaping HTML
// characters: plans are read by people and scripts, not browsers.
func appendString(b []byte, s string) []byte {
	var escaped uint8
	for i := 0; i < len(s); i++ {
		escaped |= escapes[s[i]]
	}
	if escaped == 0 {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// escapes marks the bytes that appendString leaves to encoding/json:
// controls, '"', '\\' and every byte beyond ASCII (valid UTF-8 is kept,
// an invalid byte replaced).
var escapes = func() (t [256]uint8) {
	for c := range t {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			t[c] = 1
		}
	}
	return t
}()

// UnmarshalJSON reads a range of the current version (see parseRange).
func (r *Range) UnmarshalJSON(b []byte) error {
	v, err := parseRange("range", b, Version)
	if err != nil {
		return err
	}
	*r = v
	return nil
}
