package starfmt

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	vstar "github.com/voidbox/voidbox/starlark"
)

// Options configure FormatFiles.
type Options struct {
	// Check changes no file: the paths that are not formatted are written to List, one
	// per line.
	Check bool
	// List receives the unformatted paths in Check mode. Nil discards them.
	List io.Writer
}

// FormatFiles formats each file in place and returns the files that were (or, with
// opts.Check, would be) changed, and one error per file that could not be formatted. A
// bad file does not stop the others; an error names its file once, and is a syntax.Error
// exactly when go.starlark.net cannot parse the file.
func FormatFiles(paths []string, opts Options) (changed []string, errs []error) {
	for _, p := range paths {
		did, err := formatFile(p, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !did {
			continue
		}
		changed = append(changed, p)
		if opts.Check && opts.List != nil {
			fmt.Fprintln(opts.List, p)
		}
	}
	return changed, errs
}

func formatFile(p string, opts Options) (changed bool, err error) {
	src, err := readFile(p)
	if err != nil {
		return false, err
	}
	out, err := Format(p, src)
	if err != nil {
		return false, err
	}
	if bytes.Equal(src, out) {
		return false, nil
	}
	if !opts.Check {
		if err := replaceFile(p, out); err != nil {
			return false, fmt.Errorf("%s: write formatted file: %s", p, vstar.NewFileError(p, err).Why)
		}
	}
	return true, nil
}

// readFile reads a .star file with exec's reader (starlark.ReadSource), so a file fmt
// cannot read gets exec's message and exec's size limit. It refuses up front what only
// fmt cannot handle: a file that is not regular, since fmt replaces the file by renaming a
// new one over it, which would turn a device or a pipe into a plain file (and reading a
// pipe could block). A failing Stat is left to ReadSource to report.
func readFile(p string) ([]byte, error) {
	if info, err := os.Stat(p); err == nil && !info.IsDir() && !info.Mode().IsRegular() {
		return nil, &vstar.FileError{Path: p, Why: fmt.Sprintf("not a regular file (%s)", info.Mode().Type()), Err: fs.ErrInvalid}
	}
	return vstar.ReadSource(p)
}

// replaceFile writes data next to p and renames it over p, so an interrupted fmt never
// leaves a half-written program behind. The file keeps its permission bits.
func replaceFile(p string, data []byte) error {
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
