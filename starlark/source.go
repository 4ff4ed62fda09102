package starlark

import (
	"bytes"
	"errors"
	"fmt"
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
// the first real character) and refuses text that is not valid UTF-8 with a
// *SourceError at the line and column of the first bad byte, as the Starlark scanner
// counts them. Every reader of .star files (exec, check, load, fmt) should use it, so
// they accept and refuse the same files.
func PrepareSource(filename string, src []byte) ([]byte, error) {
	src = bytes.TrimPrefix(src, utf8BOM)
	if utf8.Valid(src) {
		return src, nil
	}
	line, col := int32(1), int32(1)
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size <= 1 {
			break
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
	return nil, &SourceError{Pos: syntax.MakePosition(&filename, line, col), Msg: "source is not valid UTF-8"}
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

// fileError describes err, from opening or reading path, as a FileError.
func fileError(path string, err error) *FileError {
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

// readFileBounded reads a program or module file, refusing directories and files over
// MaxFileSize.
func readFileBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &FileError{Path: path, Why: "it is a directory, not a .star file", Err: fs.ErrInvalid}
	}
	return readBounded(f, path)
}
