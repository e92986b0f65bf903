package scan

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

func TestReadError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&os.PathError{Op: "read", Path: "/p", Err: syscall.EIO}, "read /p: input/output error"},
		{&os.PathError{Op: "pread", Path: "/p", Err: syscall.ENOMEM}, "pread /p: cannot allocate memory"},
		{errors.New("short read"), "read /p: short read"},
	}
	for _, tt := range tests {
		if got := readError("/p", tt.err).Error(); got != tt.want {
			t.Errorf("readError(/p, %v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}
