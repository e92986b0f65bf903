//go:build linux

package fsys

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/a\040b rw,relatime shared:20 - btrfs /dev/loop0 rw,subvolid=5,subvol=/
41 40 7:1 /sub /mnt/a\040b/back\134slash rw - xfs /dev/loop1 rw
`
	got, err := parseMountinfo(info)
	want := []Mount{
		{"/", "ext4", unix.Mkdev(8, 1)},
		{"/mnt/a b", "btrfs", unix.Mkdev(0, 35)},
		{`/mnt/a b/back\slash`, "xfs", unix.Mkdev(7, 1)},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseMountinfo = %+v, %v; want %+v", got, err, want)
	}
	for _, line := range []string{"22 1 8:1 /\n", "22 1 8:1 / / rw shared:1 -\n", "22 1 8:1 / / rw shared:1 ext4 /dev/sda1 rw\n", "22 1 x / / rw - ext4 /dev/sda1 rw\n"} {
		if _, err := parseMountinfo(line); err == nil {
			t.Errorf("parseMountinfo(%q): no error", line)
		}
	}
	if got := unescapeOctal(`a\04`); got != `a\04` {
		t.Errorf("unescapeOctal of a cut escape = %q", got)
	}
	mounts, err := MountPoints()
	if err != nil || !slices.Contains(mounts, "/") {
		t.Errorf("MountPoints = %q, %v; want / among them", mounts, err)
	}
}
