package fsimg_test

import (
	"os"
	"path/filepath"
	"testing"

	"same/internal/fsimg"
)

func TestScript(t *testing.T) {
	p, err := fsimg.Script()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "fsimg" || filepath.Base(filepath.Dir(p)) != "scripts" {
		t.Errorf("Script() = %s; want .../scripts/fsimg", p)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(p)), "go.mod")); err != nil {
		t.Errorf("Script() = %s, not beside go.mod: %v", p, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("scripts/fsimg mode = %v; want executable", fi.Mode())
	}
}
