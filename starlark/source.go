package starlark

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"unicode/utf8"

	"go.starlark.net/syntax"
)

// How program and module files are read: one clean message per way a file can be
// missing or wrong, each naming the path once, and source text that is what the
// author wrote. Starlark strings are bytes, so without the UTF-8 check a Latin-1 "é"
// in a .star file would reach a stage as U+FFFD instead of failing where it is.

// utf8BOM is the byte order mark some editors put at the start of UTF-8 files.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// SourceError is a source file that cannot be executed at all, reported at a position
// in it: "f.star:3:7: source is not valid UTF-8".
type SourceError struct {
	Pos syntax.Position
	Msg string
}

func (e *SourceError) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// PrepareSource drops a leading UTF-8 byte order mark (so line 1's columns count from
// the first real character) and refuses, with a *SourceError at the line and column of
// the first bad byte as the Starlark scanner counts them, text that is not valid UTF-8 or
// that contains a NUL byte: go.starlark.net's scanner takes a NUL for the end of the file
// and would silently ignore every statement after it. Every reader of .star files (exec,
// check, load, fmt) uses it, so they accept and refuse the same files.
func PrepareSource(filename string, src []byte) ([]byte, error) {
	src = bytes.TrimPrefix(src, utf8BOM)
	nul := bytes.IndexByte(src, 0)
	if nul < 0 && utf8.Valid(src) {
		return src, nil
	}
	fail := func(line, col int32, msg string) error {
		return &SourceError{Pos: syntax.MakePosition(&filename, line, col), Msg: msg}
	}
	line, col := int32(1), int32(1)
	for i := 0; ; {
		if i == nul {
			return nil, fail(line, col, "source contains a NUL byte")
		}
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size <= 1 {
			// size 0 (end of text) cannot happen: there is a bad byte ahead.
			return nil, fail(line, col, "source is not valid UTF-8")
		}
		i += size
		// The scanner treats "\r\n" and a lone "\r" as one newline each.
		switch {
		case r == '\r' && i < len(src) && src[i] == '\n':
			i++
			fallthrough
		case r == '\n' || r == '\r':
			line, col = line+1, 1
		default:
			col++
		}
	}
}

// FileError is a program or module file that cannot be read: missing, a directory,
// or unreadable. Why says what is wrong without repeating the path.
type FileError struct {
	Path string // "" when the message around it already names the file
	Why  string
	Err  error // the underlying error, for errors.Is
}

func (e *FileError) Error() string {
	if e.Path == "" {
		return e.Why
	}
	return e.Path + ": " + e.Why
}
func (e *FileError) Unwrap() error { return e.Err }

// NewFileError describes err, from opening or reading path, as a FileError in the words
// exec uses: "no such file", "permission denied", or the system's reason without the path.
func NewFileError(path string, err error) *FileError {
	why := err.Error()
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "no such file"
	case errors.Is(err, fs.ErrPermission):
		why = "permission denied"
	case errors.As(err, &pe):
		why = pe.Err.Error() // the path is already ours to print
	}
	return &FileError{Path: path, Why: why, Err: err}
}

// ReadSource reads a program or module file as exec does, refusing directories and files
// over MaxFileSize with a *FileError naming path once. The text is returned as stored;
// PrepareSource checks it.
func ReadSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, NewFileError(path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &FileError{Path: path, Why: "it is a directory, not a .star file", Err: fs.ErrInvalid}
	}
	return readBounded(f, path)
}

// readBounded reads at most MaxFileSize bytes of the file named name.
func readBounded(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, NewFileError(name, err)
	}
	if len(data) > MaxFileSize {
		return nil, &FileError{Path: name, Why: fmt.Sprintf("file is larger than the %d MiB limit for .star files", MaxFileSize>>20), Err: fs.ErrInvalid}
	}
	return data, nil
}
