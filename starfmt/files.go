package starfmt

import (
	"bytes"
	"errors"
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
	// MaxFileSize bounds each file; a bigger one is refused unread. 0 means no bound.
	MaxFileSize int64
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
	src, err := readFile(p, opts.MaxFileSize)
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
			return false, fmt.Errorf("%s: write formatted file: %s", p, why(err))
		}
	}
	return true, nil
}

// readFile reads a .star file. Its errors are the ones `voidbox exec` gives for the same
// file (a *starlark.FileError naming the path once).
func readFile(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fileError(p, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fileError(p, err)
	}
	if info.IsDir() {
		return nil, &vstar.FileError{Path: p, Why: "it is a directory, not a .star file", Err: fs.ErrInvalid}
	}
	if !info.Mode().IsRegular() {
		// fmt replaces the file by renaming a new one over it, which would turn a device
		// or a pipe into a plain file.
		return nil, &vstar.FileError{Path: p, Why: fmt.Sprintf("not a regular file (%s)", info.Mode().Type()), Err: fs.ErrInvalid}
	}
	r := io.Reader(f)
	if max > 0 {
		r = io.LimitReader(f, max+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fileError(p, err)
	}
	if max > 0 && int64(len(data)) > max {
		return nil, &vstar.FileError{Path: p, Why: fmt.Sprintf("file is larger than the %s limit for .star files", size(max)), Err: fs.ErrInvalid}
	}
	return data, nil
}

func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d-byte", n)
}

// fileError is the error about p that `voidbox exec` gives for err.
func fileError(p string, err error) error {
	return &vstar.FileError{Path: p, Why: why(err), Err: err}
}

// why says what went wrong with a file in exec's words, without the path.
func why(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
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
