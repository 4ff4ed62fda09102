// Package starfmt formats voidbox programs (.star files) in buildifier style, for
// `voidbox fmt`.
//
// voidbox programs are written in a wider Starlark dialect than buildifier parses (while
// loops above all), so the source is parsed first with go.starlark.net, the parser
// `voidbox exec` uses: fmt refuses only what exec refuses, with the same message at the
// same file:line:col. What buildifier cannot parse is then rewritten, at the positions
// go.starlark.net recorded, into something it can (`while` into a `for` over a fresh
// name; see hide.go), and put back into the printed text. Finally the result is parsed
// again and compared with the original node by node and comment by comment, so fmt never
// writes a program that means something else, and formatted again, so fmt is a fixed
// point. A top-level statement that fails either check is left as written.
package starfmt

import (
	"bytes"
	"errors"
	"fmt"

	vstar "github.com/voidbox/voidbox/starlark"
)

// bom is the UTF-8 encoding of U+FEFF. Some editors start files with it; it is not part of
// the program, so parsing skips it, and Format puts it back so fmt changes only layout.
var bom = []byte("\ufeff")

// Format returns src in canonical layout. filename is used in error positions.
//
// Errors: a go.starlark.net syntax.Error for a program that does not parse and a
// *starlark.SourceError for text that is not UTF-8 or holds a NUL byte, both as `voidbox exec` reports them
// (print them with starlark.FormatError).
//
// buildifier's printer loses comments in a few odd places (inside a subscript split over
// lines, for one), and now and then lays out its own output differently again. A
// top-level statement it does not print faithfully and stably is left as written; the
// rest of the file is formatted.
func Format(filename string, src []byte) ([]byte, error) {
	// PrepareSource refuses what exec refuses, in its words: text that is not UTF-8
	// (buildifier would escape such bytes in octal, changing what a string holds) and a
	// NUL byte (go.starlark.net takes it for the end of the file). It drops the BOM.
	hasBOM := bytes.HasPrefix(src, bom)
	body, err := vstar.PrepareSource(filename, src)
	if err != nil {
		return nil, err
	}
	body = normalizeNewlines(body)
	orig, err := parse(filename, body)
	if err != nil {
		return nil, err
	}
	keep := map[int]bool{} // statement groups of orig left as written
	for {
		out, err := formatKeeping(filename, orig, keep)
		if err != nil {
			return nil, err
		}
		// fmt must be a fixed point: formatting out must give out. Where it does not,
		// keep the statements of orig that moved again, and try again.
		g, err := unstable(filename, orig, out, keep)
		if err != nil {
			return nil, err
		}
		if g < 0 {
			if hasBOM {
				out = append(append([]byte{}, bom...), out...)
			}
			return out, nil
		}
		if keep[g] {
			return nil, changedAt(filename, orig, g)
		}
		keep[g] = true
	}
}

func parse(filename string, text []byte) (*source, error) {
	// exec's dialect: the parser accepts the same syntax for any options (they steer the
	// resolver), so this keeps fmt accepting what exec parses should that ever change.
	f, err := vstar.FileOptions().Parse(filename, text, 0)
	if err != nil {
		return nil, err
	}
	src, err := newSource(text, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return src, nil
}

// unstable formats out, orig formatted with the groups in keep left as written, again
// (leaving the same statements as written: formatting out decides the same way), and
// returns the group of orig whose statements come out differently the second time, or -1
// when out is a fixed point.
func unstable(filename string, orig *source, out []byte, keep map[int]bool) (int, error) {
	src, err := parse(filename, out)
	if err != nil {
		return 0, fmt.Errorf("%s: cannot format: internal error: the formatted text does not parse: %v", filename, err)
	}
	// out has orig's statements (compare made sure), so statement indices carry over.
	keepOut := map[int]bool{}
	for g := range keep {
		keepOut[src.groupOf(orig.groups[g].first)] = true
	}
	again, err := formatKeeping(filename, src, keepOut)
	if err != nil {
		return 0, fmt.Errorf("%s: cannot format: formatting the formatted text fails: %w", filename, err)
	}
	d := 0
	for d < min(len(out), len(again)) && out[d] == again[d] {
		d++
	}
	if d == len(out) && d == len(again) {
		return -1, nil
	}
	g := src.groupAt(d)
	if g < 0 {
		g = len(src.groups) - 1
	}
	if g < 0 {
		return 0, fmt.Errorf("%s: cannot format: formatting a file without statements is not stable", filename)
	}
	return orig.groupOf(src.groups[g].first), nil
}

// formatKeeping formats orig leaving the groups in keep as written, and adds to keep the
// groups buildifier does not print faithfully.
func formatKeeping(filename string, orig *source, keep map[int]bool) ([]byte, error) {
	for {
		out, bad, err := formatOnce(filename, orig, keep)
		if err != nil {
			return nil, err
		}
		if len(bad) == 0 {
			return out, nil
		}
		// Each round keeps at least one more group as written, so this ends.
		kept := len(keep)
		for _, g := range bad {
			keep[g] = true
		}
		if len(keep) == kept {
			return nil, changedAt(filename, orig, bad[0])
		}
	}
}

// formatOnce formats orig leaving the groups in keep as written, and returns the groups
// buildifier did not print faithfully.
func formatOnce(filename string, orig *source, keep map[int]bool) (out []byte, bad []int, err error) {
	out, culprits, err := layout(filename, orig, keep)
	var pe *parseError
	if errors.As(err, &pe) {
		// buildifier's parser lacks a construct go.starlark.net accepted.
		if g := orig.groupAt(pe.off); g >= 0 && !keep[g] {
			return nil, []int{g}, nil
		}
		return nil, nil, fmt.Errorf("%s: cannot format: buildifier's parser rejects the program (%s) although voidbox exec accepts it; the file is left as it is", filename, pe.msg)
	}
	if err != nil {
		return nil, nil, err
	}
	stmts, err := compare(filename, orig, out)
	var up *unparsableError
	if errors.As(err, &up) {
		// buildifier printed something go.starlark.net cannot read; find the statements.
		if bad = culprits(); len(bad) > 0 {
			return nil, bad, nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	for _, i := range stmts {
		bad = append(bad, orig.groupOf(i))
	}
	return out, bad, nil
}

// changedAt reports top-level statement group g, which buildifier cannot print
// faithfully even when the statements around it are left as written.
func changedAt(filename string, src *source, g int) error {
	start, _ := src.file.Stmts[src.groups[g].first].Span()
	return fmt.Errorf("%s:%d:%d: cannot format: buildifier would change the statement starting here; the file is left as it is", filename, start.Line, start.Col)
}

// normalizeNewlines turns CRLF and lone CR into LF. go.starlark.net reads all three as a
// newline (also inside triple-quoted strings), buildifier only LF; line numbers stay the
// same, so positions from the first parse remain valid.
func normalizeNewlines(b []byte) []byte {
	if !bytes.ContainsRune(b, '\r') {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}
