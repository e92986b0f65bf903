package cli

import (
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
)

// version, when set at link time (go build -ldflags "-X
// same/internal/cli.version=1.2.3"), is the version the tools report; a
// build from a source tree without its version control data can be named
// this way.
var version string

// Version names the build: the module version when built from a tagged
// module (go install same/cmd/hashfile@v1.2.0), else the commit it was built
// from, with "+modified" when the tree had uncommitted changes, and the
// commit's time: "9b11c60a1b2c+modified 2026-12-01T21:10:03Z". A build
// without either (go run, go test) is "devel".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(info)
}

// pseudo matches the end of a pseudo-version or a version of a modified
// tree.
var pseudo = regexp.MustCompile(`([0-9]{14}-[0-9a-f]{12}|\+dirty)$`)

func versionOf(info *debug.BuildInfo) string {
	var rev, at string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	// Go stamps a build in a repository with a pseudo-version made of the
	// commit's time and hash, and "+dirty": the commit says it better.
	if v := info.Main.Version; v != "" && v != "(devel)" && (rev == "" || !pseudo.MatchString(v)) {
		return v
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += "+modified"
	}
	if at != "" {
		rev += " " + at
	}
	return rev
}

// VersionLine is what -version prints: the command's name, Version and
// the Go release it was built with, then any details the command adds.
func VersionLine(name string, details ...string) string {
	parts := append([]string{name + " " + Version(), runtime.Version()}, details...)
	return strings.Join(parts, ", ") + "\n"
}
