package apply

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"same/internal/dedupe"
	"same/internal/plan"
)

// fdupesSource reads the groups fdupes and jdupes print: paths one per
// line, groups separated by blank lines. The first path of a group is the
// source and the others are whole-file destinations, with the identities
// lstat gives while the group is read.
type fdupesSource struct {
	br   *bufio.Reader
	line int
}

func newFdupesSource(r io.Reader) *fdupesSource {
	return &fdupesSource{br: bufio.NewReader(r)}
}

func (s *fdupesSource) next() (item, error) {
	var paths []string
	first := 0
	for {
		text, err := s.br.ReadString('\n')
		if text == "" && err != nil {
			if err == io.EOF && len(paths) > 0 {
				break
			}
			return item{}, err
		}
		s.line++
		text = strings.TrimSuffix(strings.TrimSuffix(text, "\n"), "\r")
		if text == "" {
			if len(paths) > 0 {
				break
			}
			continue
		}
		if len(paths) == 0 {
			first = s.line
		}
		paths = append(paths, text)
	}
	if len(paths) < 2 {
		return item{line: first}, &plan.LineError{Line: first, Err: fmt.Errorf("group of one file (%s): nothing to dedupe", paths[0])}
	}
	return group(first, paths), nil
}

// group makes the item for one fdupes group.
func group(line int, paths []string) item {
	it := item{line: line, whole: true, d: &plan.Dedupe{Type: plan.TypeDedupe, V: plan.Version}}
	ids := make([]plan.Range, len(paths))
	errs := make([]error, len(paths))
	for i, p := range paths {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		id, err := dedupe.IdentityOf(p)
		ids[i], errs[i] = plan.Range{Path: p, Identity: id}, err
	}
	src := ids[0]
	it.d.Src, it.srcErr = src, errs[0]
	it.d.Len = src.Size
	it.d.Dst = ids[1:]
	it.dstErr = make([]error, len(it.d.Dst))
	for i, dst := range it.d.Dst {
		err := errs[i+1]
		switch {
		case err != nil:
		case dst.File() == src.File():
			err = fmt.Errorf("%w: hard link to the source", errSkip)
		case dst.Size != src.Size:
			err = fmt.Errorf("%w: size %d, source has %d", dedupe.ErrDiffers, dst.Size, src.Size)
		}
		for _, prev := range it.d.Dst[:i] {
			if err == nil && dst.File() == prev.File() {
				err = fmt.Errorf("%w: hard link to %s", errSkip, prev.Path)
			}
		}
		it.dstErr[i] = err
	}
	return it
}
