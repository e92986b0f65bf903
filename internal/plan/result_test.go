package plan

import (
	"bytes"
	"encoding/json"
	"testing"

	"same/internal/fsys"
)

func TestEncoder(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		want string
	}{
		{
			"invalid",
			Result{Line: 3, Status: StatusInvalid, Error: "unknown record type \"x\""},
			`{"type":"result","v":2,"line":3,"status":"invalid","error":"unknown record type \"x\""}`,
		},
		{
			"partial",
			Result{Line: 1, Len: 8192, Src: &Loc{Path: "/m/a"}, Status: StatusPartial, Dst: []DstResult{
				{Path: "/m/b", Off: 4096, Status: DstDeduped, Bytes: 8192},
				{Path: "/m/c", Status: DstError, Errno: "EPERM", Error: "permission denied"},
			}},
			`{"type":"result","v":2,"line":1,"len":8192,"src":{"path":"/m/a","off":0},"status":"partial","dst":[` +
				`{"path":"/m/b","off":4096,"status":"deduped","bytes":8192},` +
				`{"path":"/m/c","off":0,"status":"error","bytes":0,"errno":"EPERM","error":"permission denied"}]}`,
		},
		{
			"not UTF-8",
			Result{Line: 2, Len: 4096, Src: &Loc{Path: "/m/\xff"}, Status: StatusDone, Dst: []DstResult{
				{Path: "/m/b\xfe", Status: DstDeduped, Bytes: 4096},
			}},
			`{"type":"result","v":2,"line":2,"len":4096,"src":{"path":"/m/\ufffd","path_b64":"L20v/w==","off":0},"status":"done","dst":[` +
				`{"path":"/m/b\ufffd","path_b64":"L20vYv4=","off":0,"status":"deduped","bytes":4096}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Encode(&tt.r); err != nil {
				t.Fatalf("Encode = %v", err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("Encode wrote\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// A dedupe line is written as encoding/json writes it from the field
// tags, whatever its paths hold.
func TestEncodeDedupe(t *testing.T) {
	id := fsys.Identity{Vol: fsys.Volume{FS: "9b82", Subvol: 256}, Ino: 7, Size: 8192, Mtime: 1700000000123456789}
	for _, d := range []Dedupe{
		{Type: TypeDedupe, V: Version, Len: 4096, Digest: "ab01", Freed: 4096, Unit: 3,
			Src: Range{Path: "/m/a", Identity: id}, Dst: []Range{{Path: "/m/b", Off: 4096, Identity: id}, {Path: "/m/c", Identity: id}}},
		{Type: TypeDedupe, V: Version, Len: 8192, Digest: "", Src: Range{Path: "/m/\"q\"\\ <&> \t\x01 é \xff", Identity: id}},
		{Type: TypeDedupe, V: 1, Src: Range{Path: "/m/x", Identity: fsys.Identity{Dev: 42, Ino: 1}}, Dst: []Range{}},
	} {
		var got bytes.Buffer
		if err := NewEncoder(&got).Write(&d); err != nil {
			t.Fatal(err)
		}
		type tags Dedupe // the fields, without MarshalJSON
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(tags(d)); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("Write wrote\n%s\nencoding/json\n%s", got.String(), want.String())
		}
		if b, err := json.Marshal(&d); err != nil || !json.Valid(b) {
			t.Errorf("json.Marshal = %s, %v", b, err)
		}
	}
}

// appendString writes a string as encoding/json does without escaping
// HTML, whatever bytes it holds.
func TestAppendString(t *testing.T) {
	strs := []string{"", "/m/a b", "9b82-01", "/m/\"q\"\\ <&> \t é \xff", "\u2028", "a\x7fb"}
	for c := range 256 {
		strs = append(strs, string([]byte{byte(c)}), "/m/x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range strs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got := string(appendString(nil, s)) + "\n"; got != want.String() {
			t.Errorf("appendString(%q) = %s, encoding/json %s", s, got, want.String())
		}
	}
}
