package starfmt

import (
	"bytes"
	"unicode/utf8"

	vstar "github.com/voidbox/voidbox/starlark"
	"go.starlark.net/syntax"
)

// checkText refuses text that is not UTF-8 the way `voidbox exec` does (a
// *starlark.SourceError naming the first bad byte as file:line:col, in the Starlark
// scanner's convention: 1-based line, 1-based column counted in runes); buildifier would
// escape such bytes in octal, changing what a string holds. It also refuses a NUL byte:
// go.starlark.net takes one outside a string for the end of the file and ignores the rest,
// which fmt would then have to drop or keep without knowing what it means. body's
// newlines must already be LF.
func checkText(filename string, body []byte) error {
	nul := bytes.IndexByte(body, 0)
	if nul < 0 && utf8.Valid(body) {
		return nil
	}
	line, col := int32(1), int32(1)
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRune(body[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return sourceError(filename, line, col, "source is not valid UTF-8")
		case i == nul:
			return sourceError(filename, line, col, "source contains a NUL byte")
		case r == '\n':
			line, col = line+1, 1
		default:
			col++
		}
		i += size
	}
	return nil // unreachable: there is a bad byte
}

func sourceError(filename string, line, col int32, msg string) error {
	return &vstar.SourceError{Pos: syntax.MakePosition(&filename, line, col), Msg: msg}
}
