//go:build linux

package fsys

import (
	"slices"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/a\040b rw,relatime shared:20 - btrfs /dev/loop0 rw,subvolid=5,subvol=/
41 40 7:1 /sub /mnt/a\040b/back\134slash rw - xfs /dev/loop1 rw
`
	got, err := parseMountinfo(info)
	if want := []string{"/", "/mnt/a b", `/mnt/a b/back\slash`}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseMountinfo = %q, %v; want %q", got, err, want)
	}
	if _, err := parseMountinfo("22 1 8:1 /\n"); err == nil {
		t.Error("parseMountinfo of a short line: no error")
	}
	if got := unescapeOctal(`a\04`); got != `a\04` {
		t.Errorf("unescapeOctal of a cut escape = %q", got)
	}
	mounts, err := MountPoints()
	if err != nil || !slices.Contains(mounts, "/") {
		t.Errorf("MountPoints = %q, %v; want / among them", mounts, err)
	}
}
