package plan

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"same/internal/fsys"
)

const validLine = `{"type":"dedupe","v":1,"len":8192,"digest":"ab","freed":8192,` +
	`"src":{"path":"/m/a","off":0,"dev":42,"ino":257,"size":8192,"mtime":1700000000000000000},` +
	`"dst":[{"path":"/m/b","off":4096,"dev":42,"ino":258,"size":12288,"mtime":1700000000000000001}]}`

// line returns validLine with old replaced by new (once).
func line(old, new string) string {
	if !strings.Contains(validLine, old) {
		panic("test line lacks " + old)
	}
	return strings.Replace(validLine, old, new, 1)
}

// validLine2 is validLine in version 2.
const validLine2 = `{"type":"dedupe","v":2,"len":8192,"digest":"ab","freed":8192,` +
	`"src":{"path":"/m/a","off":0,"fs":"ab12","subvol":5,"ino":257,"size":8192,"mtime":"2023-11-14T22:13:20Z"},` +
	`"dst":[{"path":"/m/b","off":4096,"fs":"ab12","subvol":5,"ino":258,"size":12288,"mtime":"2023-11-14T22:13:20.000000001Z"}]}`

// line2 returns validLine2 with old replaced by new (once).
func line2(old, new string) string {
	if !strings.Contains(validLine2, old) {
		panic("test line lacks " + old)
	}
	return strings.Replace(validLine2, old, new, 1)
}

const dstB = `{"path":"/m/b","off":4096,"dev":42,"ino":258,"size":12288,"mtime":1700000000000000001}`

func TestParseValid(t *testing.T) {
	d, err := Parse([]byte(validLine))
	if err != nil {
		t.Fatalf("Parse(validLine) = %v; want nil", err)
	}
	want := &Dedupe{
		Type: "dedupe", V: 1, Len: 8192, Digest: "ab", Freed: 8192,
		Src: Range{Path: "/m/a", Off: 0, Identity: fsys.Identity{Dev: 42, Ino: 257, Size: 8192, Mtime: 1700000000000000000}},
		Dst: []Range{{Path: "/m/b", Off: 4096, Identity: fsys.Identity{Dev: 42, Ino: 258, Size: 12288, Mtime: 1700000000000000001}}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Parse(validLine) = %+v; want %+v", d, want)
	}
}

func TestParseValid2(t *testing.T) {
	d, err := Parse([]byte(validLine2))
	if err != nil {
		t.Fatalf("Parse(validLine2) = %v; want nil", err)
	}
	want := &Dedupe{
		Type: "dedupe", V: 2, Len: 8192, Digest: "ab", Freed: 8192,
		Src: Range{Path: "/m/a", Off: 0, Identity: fsys.Identity{Vol: fsys.Volume{FS: "ab12", Subvol: 5}, Ino: 257, Size: 8192, Mtime: 1700000000000000000}},
		Dst: []Range{{Path: "/m/b", Off: 4096, Identity: fsys.Identity{Vol: fsys.Volume{FS: "ab12", Subvol: 5}, Ino: 258, Size: 12288, Mtime: 1700000000000000001}}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Parse(validLine2) = %+v; want %+v", d, want)
	}
}

// TestRoundTrip writes records and reads them back: every field survives,
// mtimes that a double cannot hold and paths that are not UTF-8 included.
func TestRoundTrip(t *testing.T) {
	d := &Dedupe{
		Type: TypeDedupe, V: Version, Len: 8192, Digest: "ab", Freed: 4096,
		Src: Range{Path: "/m/bad\xff\xfename", Off: 0, Identity: fsys.Identity{Vol: fsys.Volume{FS: "0123456789abcdef0123456789abcdef", Subvol: 257}, Ino: 1 << 40, Size: 8192, Mtime: 1796159723341364358}},
		Dst: []Range{{Path: "/m/\"quoted\"\n<html>", Off: 4096, Identity: fsys.Identity{Vol: fsys.Volume{FS: "0123456789abcdef0123456789abcdef", Subvol: 5}, Ino: 3, Size: 12288, Mtime: -1}}},
	}
	var buf strings.Builder
	if err := NewEncoder(&buf).Write(d); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"dedupe","v":2,"len":8192,"digest":"ab","freed":4096,` +
		`"src":{"path":"/m/bad\ufffd\ufffdname","path_b64":"L20vYmFk//5uYW1l","off":0,"fs":"0123456789abcdef0123456789abcdef","subvol":257,"ino":1099511627776,"size":8192,"mtime":"2026-12-01T21:15:23.341364358Z"},` +
		`"dst":[{"path":"/m/\"quoted\"\n<html>","off":4096,"fs":"0123456789abcdef0123456789abcdef","subvol":5,"ino":3,"size":12288,"mtime":"1969-12-31T23:59:59.999999999Z"}]}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Write wrote\n%s\nwant\n%s", got, want)
	}
	got, err := Parse([]byte(buf.String()))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Errorf("Parse(Write(d)) = %+v; want %+v", got, d)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"malformed", `{"type":"dedupe",`, "malformed JSON at byte 17: unexpected end of JSON input"},
		{"garbage", `hello`, "malformed JSON at byte 1: invalid character 'h' looking for beginning of value"},
		{"trailing", validLine + `}`, "malformed JSON at byte 246: invalid character '}' after top-level value"},
		{"array", `[1,2]`, "malformed record: want a JSON object, got array"},
		{"no type", `{"v":1}`, `missing field "type"`},
		{"type number", `{"type":3,"v":1}`, `field "type": want string, got number`},
		{"unknown type", `{"type":"x","v":1}`, `unknown record type "x"`},
		{"result as input", `{"type":"result","v":1}`, `unknown record type "result"`},
		{"version 3", line(`"v":1`, `"v":3`), "unsupported plan version 3 (this applysame reads versions 1 to 2)"},
		{"version 3 other fields", `{"type":"dedupe","v":3,"len":"whatever"}`, "unsupported plan version 3 (this applysame reads versions 1 to 2)"},
		{"version 0", line(`"v":1`, `"v":0`), "unsupported plan version 0 (this applysame reads versions 1 to 2)"},
		{"version missing", line(`"v":1,`, ``), `unsupported plan version: field "v" missing (this applysame reads versions 1 to 2)`},
		{"version string", line(`"v":1`, `"v":"1"`), `unsupported plan version "1" (this applysame reads versions 1 to 2)`},
		{"version 2 with a version 1 range", line(`"v":1`, `"v":2`), `missing field "src.fs"`},
		{"version 2 mtime number", line2(`"mtime":"2023-11-14T22:13:20Z"`, `"mtime":1700000000000000000`), `field "src.mtime": want a date string, got number`},
		{"version 2 mtime bad", line2(`"mtime":"2023-11-14T22:13:20Z"`, `"mtime":"yesterday"`), `field "src.mtime": parsing time "yesterday" as "2006-01-02T15:04:05.999999999Z07:00": cannot parse "yesterday" as "2006"`},
		{"version 2 fs empty", line2(`"fs":"ab12"`, `"fs":""`), `field "src.fs": empty`},
		{"version 2 path_b64 bad", line2(`"path":"/m/a"`, `"path":"/m/a","path_b64":"%%"`), `field "src.path_b64": illegal base64 data at input byte 0`},
		{"version 2 same file", line2(`"ino":258`, `"ino":257`), `dst[0]: range [4096, 12288) overlaps the source range [0, 8192) in the same file (fs ab12, subvol 5, ino 257)`},
		{"len missing", line(`"len":8192,`, ``), `missing field "len"`},
		{"len string", line(`"len":8192`, `"len":"8192"`), `field "len": want integer (int64), got string`},
		{"len float", line(`"len":8192`, `"len":8192.5`), `field "len": want integer (int64), got number 8192.5`},
		{"len huge", line(`"len":8192`, `"len":99999999999999999999`), `field "len": want integer (int64), got number 99999999999999999999`},
		{"len zero", line(`"len":8192`, `"len":0`), `field "len": must be positive, got 0`},
		{"len negative", line(`"len":8192`, `"len":-1`), `field "len": must be positive, got -1`},
		{"digest number", line(`"digest":"ab"`, `"digest":1`), `field "digest": want string, got number`},
		{"src missing", line(`"src":{"path":"/m/a","off":0,"dev":42,"ino":257,"size":8192,"mtime":1700000000000000000},`, ``), `missing field "src"`},
		{"src array", line(`"src":{"path":"/m/a","off":0,"dev":42,"ino":257,"size":8192,"mtime":1700000000000000000}`, `"src":[]`), `field "src": want object, got array`},
		{"src off string", line(`"off":0`, `"off":"0"`), `field "src.off": want integer (int64), got string`},
		{"src path missing", line(`"path":"/m/a",`, ``), `missing field "src.path"`},
		{"src mtime missing", line(`,"mtime":1700000000000000000`, ``), `missing field "src.mtime"`},
		{"src dev negative", line(`"dev":42`, `"dev":-42`), `field "src.dev": want unsigned integer (uint64), got number -42`},
		{"src path empty", line(`"/m/a"`, `""`), `field "src.path": empty path`},
		{"src path relative", line(`"/m/a"`, `"m/a"`), `field "src.path": relative path "m/a" (plan paths must be absolute)`},
		{"src off negative", line(`"off":0`, `"off":-4096`), `field "src.off": negative offset -4096`},
		{"src off overflow", line(`"off":0`, `"off":9223372036854775807`), `field "src.off": off+len overflows int64 (off 9223372036854775807, len 8192)`},
		{"src past size", line(`"size":8192`, `"size":4096`), `field "src.off": range [0, 8192) ends past the file's size 4096`},
		{"src size negative", line(`"size":8192`, `"size":-1`), `field "src.size": negative size -1`},
		{"dst missing", line(`,"dst":[`+dstB+`]`, ``), `missing field "dst"`},
		{"dst object", line(`[`+dstB+`]`, `{}`), `field "dst": want array, got object`},
		{"dst empty", line(`[`+dstB+`]`, `[]`), `field "dst": no destinations`},
		{"dst element number", line(`[`+dstB+`]`, `[`+dstB+`,7]`), `field "dst[1]": want object, got number`},
		{"dst null element", line(`[`+dstB+`]`, `[`+dstB+`,null]`), `missing field "dst[1]"`},
		{"dst off string", line(`"off":4096`, `"off":"x"`), `field "dst[0].off": want integer (int64), got string`},
		{"dst ino missing", line(`"ino":258,`, ``), `missing field "dst[0].ino"`},
		{"dst relative", line(`"/m/b"`, `"b"`), `field "dst[0].path": relative path "b" (plan paths must be absolute)`},
		{"dst off overflow", line(`"off":4096`, `"off":9223372036854775000`), `field "dst[0].off": off+len overflows int64 (off 9223372036854775000, len 8192)`},
		{"dst same file overlap", line(`"ino":258`, `"ino":257`), `dst[0]: range [4096, 12288) overlaps the source range [0, 8192) in the same file (dev 42, ino 257)`},
		{
			"dsts overlap",
			line(`[`+dstB+`]`, `[`+dstB+`,{"path":"/m/c","off":0,"dev":42,"ino":300,"size":8192,"mtime":1},{"path":"/m/b","off":8192,"dev":42,"ino":258,"size":16384,"mtime":1}]`),
			`dst[0] and dst[2]: overlapping ranges at offsets 4096 and 8192 in the same file (dev 42, ino 258)`,
		},
		{"dst nul", line(`"/m/b"`, `"/m/b\u0000x"`), `field "dst[0].path": contains a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.line))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, nil; want error %q", tt.line, d, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%s) error = %q; want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct{ name, line string }{
		{"unknown fields", line(`"len":8192`, `"len":8192,"future":{"x":[1,2]}`)},
		{"unknown range field", line(`"path":"/m/a"`, `"path":"/m/a","extra":true`)},
		{"digest and freed absent", line(`"digest":"ab","freed":8192,`, ``)},
		{"same file disjoint", line(`"off":4096,"dev":42,"ino":258,"size":12288`, `"off":8192,"dev":42,"ino":257,"size":16384`)},
		{"adjacent same-file dsts", line(`[`+dstB+`]`, `[`+dstB+`,{"path":"/m/b","off":12288,"dev":42,"ino":258,"size":20480,"mtime":1}]`)},
		{"same path other inode", line(`[`+dstB+`]`, `[`+dstB+`,{"path":"/m/b","off":4096,"dev":43,"ino":258,"size":12288,"mtime":1}]`)},
		{"negative mtime", line(`"mtime":1700000000000000000`, `"mtime":-5`)},
		{"whitespace", "  " + validLine + " \t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.line)); err != nil {
				t.Errorf("Parse(%s) = %v; want nil", tt.line, err)
			}
		})
	}
}

func TestReader(t *testing.T) {
	in := validLine + "\n\n   \n" + `{"type":"dedupe","v":3}` + "\n" + "{bad\n" + validLine // no final newline
	r := NewReader(strings.NewReader(in))
	type step struct {
		line int
		ok   bool
		err  string
	}
	want := []step{
		{1, true, ""},
		{4, false, "line 4: unsupported plan version 3 (this applysame reads versions 1 to 2)"},
		{5, false, "line 5: malformed JSON at byte 2: invalid character 'b' looking for beginning of object key string"},
		{6, true, ""},
	}
	for i, w := range want {
		n, d, err := r.Next()
		got := step{n, d != nil, ""}
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line != n {
				t.Fatalf("Next() #%d error = %#v; want *LineError for line %d", i, err, n)
			}
			got.err = err.Error()
		}
		if got != w {
			t.Errorf("Next() #%d = %+v; want %+v", i, got, w)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Errorf("Next() at end = %v; want io.EOF", err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Errorf("Next() after end = %v; want io.EOF", err)
	}
}

// TestReaderLongLine reads a line with many destinations and long paths,
// several MB long, split across many reads.
func TestReaderLongLine(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"type":"dedupe","v":1,"len":4096,"src":{"path":"/m/src","off":0,"dev":1,"ino":1,"size":4096,"mtime":0},"dst":[`)
	long := "/" + strings.Repeat("x", 4000)
	const n = 1000
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"path":%q,"off":0,"dev":1,"ino":%d,"size":4096,"mtime":0}`, filepath.Join(long, fmt.Sprint(i)), i+2)
	}
	b.WriteString("]}\n")
	b.WriteString(validLine + "\n")
	r := NewReader(iotestHalf{strings.NewReader(b.String())})
	line, rec, err := r.Next()
	if err != nil {
		t.Fatalf("Next() = %v; want nil", err)
	}
	d := rec.(*Dedupe)
	if line != 1 || len(d.Dst) != n {
		t.Errorf("Next() = line %d, %d destinations; want line 1, %d", line, len(d.Dst), n)
	}
	if line, _, err := r.Next(); line != 2 || err != nil {
		t.Errorf("second Next() = line %d, %v; want line 2, nil", line, err)
	}
}

func TestReaderTooLong(t *testing.T) {
	in := `{"x":"` + strings.Repeat("a", MaxLineBytes) + `"}` + "\n" + validLine + "\n"
	r := NewReader(strings.NewReader(in))
	_, _, err := r.Next()
	if want := fmt.Sprintf("line 1: line longer than %d bytes", MaxLineBytes); err == nil || err.Error() != want {
		t.Errorf("Next() = %v; want %s", err, want)
	}
	if line, d, err := r.Next(); line != 2 || d == nil || err != nil {
		t.Errorf("Next() after long line = %d, %v, %v; want 2, record, nil", line, d, err)
	}
}

// iotestHalf returns at most 1000 bytes per Read.
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:1000]
	}
	return h.r.Read(p)
}

// checkInvariants restates the validation rules independently of
// Validate, for the fuzz target.
func checkInvariants(t *testing.T, rec Record) {
	t.Helper()
	if w, ok := rec.(*Rewrite); ok {
		checkRewrite(t, w)
		return
	}
	d := rec.(*Dedupe)
	if d.Type != TypeDedupe || d.V < MinVersion || d.V > Version {
		t.Fatalf("accepted type %q v %d", d.Type, d.V)
	}
	if d.Len <= 0 {
		t.Fatalf("accepted len %d", d.Len)
	}
	if len(d.Dst) == 0 {
		t.Fatalf("accepted a record without destinations")
	}
	all := append([]Range{d.Src}, d.Dst...)
	for i, r := range all {
		if r.Path == "" || r.Path[0] != '/' {
			t.Fatalf("accepted path %q", r.Path)
		}
		if r.Off < 0 || r.Off > math.MaxInt64-d.Len || r.Off+d.Len > r.Size {
			t.Fatalf("accepted off %d len %d size %d", r.Off, d.Len, r.Size)
		}
		for j := range i {
			o := all[j]
			if r.sameFile(o) && r.Off < o.Off+d.Len && o.Off < r.Off+d.Len {
				t.Fatalf("accepted overlapping ranges %d and %d in one file: %+v", j, i, d)
			}
		}
	}
}

func checkRewrite(t *testing.T, w *Rewrite) {
	t.Helper()
	if w.Type != TypeRewrite || (w.V < MinVersion || w.V > Version) || w.Len <= 0 || w.File.Off < 0 || w.File.Off > math.MaxInt64-w.Len ||
		w.File.Path == "" || w.File.Path[0] != '/' || len(w.Copy) == 0 {
		t.Fatalf("accepted %+v", w)
	}
	end, sum := w.File.Off, int64(0)
	for _, s := range w.Copy {
		if s.Len <= 0 || s.Off < end || s.Off+s.Len > w.File.Off+w.Len || s.Off+s.Len > w.File.Size {
			t.Fatalf("accepted copy range %+v of %+v", s, w)
		}
		end = s.Off + s.Len
		sum += s.Len
	}
	if sum != w.Bytes {
		t.Fatalf("accepted bytes %d; the ranges add up to %d", w.Bytes, sum)
	}
}

const validRewrite = `{"type":"rewrite","v":1,"file":{"path":"/m/a","off":0,"dev":42,"ino":257,"size":40960,"mtime":1700000000000000000},"len":40960,"physical":1048576,"copy":[{"off":8192,"len":4096},{"off":32768,"len":8192}],"bytes":12288,"freed":28672}`

func TestParseRewrite(t *testing.T) {
	rec, err := Parse([]byte(validRewrite))
	if err != nil {
		t.Fatalf("Parse(validRewrite) = %v; want nil", err)
	}
	want := &Rewrite{Type: "rewrite", V: 1, File: Range{Path: "/m/a", Identity: fsys.Identity{Dev: 42, Ino: 257, Size: 40960, Mtime: 1700000000000000000}},
		Len: 40960, Physical: 1 << 20, Copy: []Span{{8192, 4096}, {32768, 8192}}, Bytes: 12288, Freed: 28672}
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("Parse(validRewrite) = %+v; want %+v", rec, want)
	}
	for _, tt := range []struct{ old, new, want string }{
		{`"len":40960`, `"len":0`, `field "len": must be positive, got 0`},
		{`"physical":1048576`, `"physical":-1`, `field "physical": negative offset -1`},
		{`,"physical":1048576`, ``, `missing field "physical"`},
		{`"copy":[{"off":8192,"len":4096},{"off":32768,"len":8192}]`, `"copy":[]`, `field "copy": no ranges`},
		{`{"off":32768,"len":8192}`, `{"off":10240,"len":8192}`, `field "copy[1].off": 10240 is before the extent or overlaps the previous range`},
		{`{"off":32768,"len":8192}`, `{"off":36864,"len":8192}`, `field "copy[1]": range [36864, 45056) ends past the extent [0, 40960)`},
		{`"bytes":12288`, `"bytes":4096`, `field "bytes": 4096, but the copy ranges add up to 12288`},
		{`"len":4096}`, `"len":-4096}`, `field "copy[0].len": must be positive, got -4096`},
		{`"path":"/m/a"`, `"path":"a"`, `field "file.path": relative path "a" (plan paths must be absolute)`},
		{`"copy":[`, `"copy":"x","c":[`, `field "copy": want array, got string`},
	} {
		in := strings.Replace(validRewrite, tt.old, tt.new, 1)
		if _, err := Parse([]byte(in)); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%s) = %v; want %q", in, err, tt.want)
		}
	}
}

const validRewriteNextTo = `{"type":"rewrite","v":2,"file":{"path":"/m/snap/a","off":0,"fs":"9b82","subvol":258,"ino":257,"size":40960,"mtime":"2023-11-14T22:13:20Z"},"len":40960,"physical":1048576,"copy":[{"off":8192,"len":4096}],"bytes":4096,"freed":36864,"copy_next_to":{"path":"/m/live/x","off":0,"fs":"9b82","subvol":256,"ino":260,"size":1,"mtime":"2023-11-14T22:13:20Z"}}`

// TestParseRewriteNextTo: a rewrite of a file in a read-only snapshot
// names the file next to which its copy is made, on the same filesystem.
func TestParseRewriteNextTo(t *testing.T) {
	rec, err := Parse([]byte(validRewriteNextTo))
	if err != nil {
		t.Fatalf("Parse(validRewriteNextTo) = %v; want nil", err)
	}
	w := rec.(*Rewrite)
	want := &Range{Path: "/m/live/x", Identity: fsys.Identity{Vol: fsys.Volume{FS: "9b82", Subvol: 256}, Ino: 260, Size: 1, Mtime: 1700000000000000000}}
	if !reflect.DeepEqual(w.CopyNextTo, want) {
		t.Errorf("copy_next_to = %+v; want %+v", w.CopyNextTo, want)
	}
	var b strings.Builder
	if err := NewEncoder(&b).Write(w); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(b.String()); got != validRewriteNextTo {
		t.Errorf("encoded again:\n%s\nwant\n%s", got, validRewriteNextTo)
	}
	for _, tt := range []struct{ old, new, want string }{
		{`"path":"/m/live/x"`, `"path":"x"`, `field "copy_next_to.path": relative path "x" (plan paths must be absolute)`},
		{`"fs":"9b82","subvol":256`, `"fs":"77","subvol":256`, `field "copy_next_to.fs": "77", not the filesystem of the file ("9b82")`},
		{`,"ino":260`, ``, `missing field "copy_next_to.ino"`},
	} {
		in := strings.Replace(validRewriteNextTo, tt.old, tt.new, 1)
		if _, err := Parse([]byte(in)); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%s) = %v; want %q", in, err, tt.want)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(validRewrite)
	f.Add(validRewriteNextTo)
	f.Add(validLine)
	f.Add(validLine + "\n\n" + validLine + "\n")
	f.Add(`{"type":"dedupe",`)
	f.Add("\x00\xff{\n}")
	f.Add(line(`"v":1`, `"v":2`))
	f.Add(validLine2)
	f.Add(line2(`"path":"/m/a"`, `"path":"/m/\ufffd","path_b64":"L20vgA=="`))
	f.Add(line(`"v":1`, `"v":1.0`))
	f.Add(`{"type":"result","v":1}`)
	f.Add(line(`"len":8192`, `"len":"8192"`))
	f.Add(line(`"off":0`, `"off":{}`))
	f.Add(line(`"dev":42`, `"dev":-1`))
	f.Add(line(`"off":0`, `"off":-4096`))
	f.Add(line(`"off":0`, `"off":9223372036854775807`))
	f.Add(line(`"len":8192`, `"len":9223372036854775807`))
	f.Add(line(`"len":8192`, `"len":1e400`))
	f.Add(line(`"len":8192`, `"len":99999999999999999999999999999`))
	f.Add(line(`"size":8192`, `"size":-9223372036854775808`))
	f.Add(line(`"ino":258`, `"ino":257`))
	f.Add(line(`[`+dstB+`]`, `[`+dstB+`,`+dstB+`]`))
	f.Add(line(`[`+dstB+`]`, `[]`))
	f.Add(line(`"/m/b"`, `"rel"`))
	f.Fuzz(func(t *testing.T, in string) {
		r := NewReader(strings.NewReader(in))
		for i := 0; ; i++ {
			if i > len(in)+1 {
				t.Fatalf("Next returned more than %d results for %d bytes", i, len(in))
			}
			_, d, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var le *LineError
				if !errors.As(err, &le) {
					t.Fatalf("Next() = %v; want a *LineError or io.EOF", err)
				}
				if d != nil {
					t.Fatalf("Next() returned a record with error %v", err)
				}
				continue
			}
			checkInvariants(t, d)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"type":"dedupe","v":1,"len":1048576,"digest":"ab","freed":1,"src":{"path":"/srv/data/src","off":0,"dev":1,"ino":1,"size":1048576,"mtime":1}`)
	sb.WriteString(`,"dst":[`)
	for i := range MaxDests {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"path":"/srv/data/some/longer/directory/name/file%d","off":0,"dev":1,"ino":%d,"size":1048576,"mtime":1}`, i, i+2)
	}
	sb.WriteString("]}")
	line := []byte(sb.String())
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := Parse(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseV2 parses version 2 dedupe lines with one and with eight
// destinations, as findsame writes them.
func BenchmarkParseV2(b *testing.B) {
	var eight strings.Builder
	for i := range 7 {
		fmt.Fprintf(&eight, `{"path":"/srv/data/some/dir/b%d","off":4096,"fs":"ab12","subvol":257,"ino":%d,"size":12288,"mtime":"2023-11-14T22:13:20.000000001Z"},`, i, 300+i)
	}
	for _, c := range []struct{ name, line string }{
		{"1dst", line2(`"path":"/m/b"`, `"path":"/m/c"`)},
		{"8dst", strings.Replace(validLine2, `"dst":[`, `"dst":[`+eight.String(), 1)},
	} {
		if _, err := Parse([]byte(c.line)); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			for b.Loop() {
				if _, err := Parse([]byte(c.line)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
