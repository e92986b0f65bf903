package fsys_test

import (
	"errors"
	"reflect"
	"testing"

	"same/internal/fsys"
)

func TestTime(t *testing.T) {
	for _, tt := range []struct {
		ns   int64
		want string
	}{
		{0, "1970-01-01T00:00:00Z"},
		{1796159723341364358, "2026-12-01T21:15:23.341364358Z"}, // beyond 2^53
		{1718000100000000000, "2024-06-10T06:15:00Z"},
		{-1, "1969-12-31T23:59:59.999999999Z"},
	} {
		if got := fsys.Time(tt.ns); got != tt.want {
			t.Errorf("Time(%d) = %q; want %q", tt.ns, got, tt.want)
		}
		if ns, err := fsys.ParseTime(tt.want); err != nil || ns != tt.ns {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", tt.want, ns, err, tt.ns)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-06-10", "3000-01-01T00:00:00Z"} {
		if ns, err := fsys.ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = %d; want an error", bad, ns)
		}
	}
}

func TestIdentityCheck(t *testing.T) {
	vol := fsys.Volume{FS: "ab12", Subvol: 5}
	st := fsys.Stat{Dev: 42, Ino: 257, Size: 8192, Mtime: 1700000000000000000, Ctime: 7, UID: 1000}
	byVol, byDev := st.Identity(vol), st.Identity(fsys.Volume{})
	if byVol.Dev != 0 || byDev.Dev != 42 || byVol.Ctime != 7 {
		t.Fatalf("Identity = %+v, %+v; want Dev 0 with a volume, 42 without, Ctime 7", byVol, byDev)
	}
	with := func(id fsys.Identity, f func(*fsys.Identity)) fsys.Identity {
		f(&id)
		return id
	}
	errVol := errors.New("no volume")
	for _, tt := range []struct {
		name string
		id   fsys.Identity
		vol  fsys.Volume
		err  error
		want *fsys.Mismatch
	}{
		{"same", byVol, vol, nil, nil},
		{"same dev", byDev, fsys.Volume{}, errVol, nil}, // vol not asked
		{"ctime not compared", with(byVol, func(id *fsys.Identity) { id.Ctime++ }), vol, nil, nil},
		{"fs", byVol, fsys.Volume{FS: "cd34", Subvol: 5}, nil, &fsys.Mismatch{"fs", "cd34", "ab12"}},
		{"subvol", byVol, fsys.Volume{FS: "ab12", Subvol: 256}, nil, &fsys.Mismatch{"subvol", "256", "5"}},
		{"dev", with(byDev, func(id *fsys.Identity) { id.Dev = 43 }), fsys.Volume{}, nil, &fsys.Mismatch{"dev", "42", "43"}},
		{"ino", with(byVol, func(id *fsys.Identity) { id.Ino = 1 }), vol, nil, &fsys.Mismatch{"ino", "257", "1"}},
		{"size", with(byVol, func(id *fsys.Identity) { id.Size = 4096 }), vol, nil, &fsys.Mismatch{"size", "8192", "4096"}},
		{"mtime", with(byVol, func(id *fsys.Identity) { id.Mtime++ }), vol, nil,
			&fsys.Mismatch{"mtime", "2023-11-14T22:13:20Z (1700000000000000000 ns)", "2023-11-14T22:13:20.000000001Z (1700000000000000001 ns)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.id.Check(st, func() (fsys.Volume, error) { return tt.vol, tt.err })
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check = %+v, %v; want %+v, nil", got, err, tt.want)
			}
		})
	}
	if _, err := byVol.Check(st, func() (fsys.Volume, error) { return fsys.Volume{}, errVol }); err != errVol {
		t.Errorf("Check with a failing volume = %v; want %v", err, errVol)
	}
}
