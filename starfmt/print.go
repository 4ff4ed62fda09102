package starfmt

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/bazelbuild/buildtools/build"
	vstar "github.com/voidbox/voidbox/starlark"
)

// rewriteSet names the buildifier rewrites Format applies: only those that change layout.
// The default set also sorts loads and "# keep sorted" lists, reorders call arguments and
// reindents docstrings, which changes what a program does.
var rewriteSet = []string{"collapseEmpty"}

// parseError is buildifier's parser refusing the hidden text, at an offset in the file.
type parseError struct {
	off int
	msg string
}

func (e *parseError) Error() string { return e.msg }

// layout prints the program with buildifier, leaving the groups in keep as written. When
// the result does not parse, culprits finds the groups whose statements print into text
// that does not parse on their own.
func layout(filename string, src *source, keep map[int]bool) (out []byte, culprits func() []int, err error) {
	h, bf, out, err := printHidden(filename, src, 0, keep)
	if err != nil {
		return nil, nil, err
	}
	culprits = func() []int { return unparsable(src, h, bf) }
	if h.whiles == 0 {
		return h.restore(out), culprits, nil
	}
	// buildifier aligns continuation lines of a condition with a bracket on the header
	// line, whose column depends on the header's length: `for <sentinel> in ` is longer
	// than `while `. Printing again with a longer sentinel shows which lines moved with it.
	_, _, probe, err := printHidden(filename, src, alignProbe, keep)
	if err != nil {
		return nil, nil, err
	}
	out = realign(out, probe, alignProbe, len(h.whileHeader())-len("while "))
	return h.restore(out), culprits, nil
}

// unparsable returns the groups of src with a statement that buildifier prints, on its
// own, into text go.starlark.net cannot parse.
func unparsable(src *source, h *hidden, bf *build.File) []int {
	var groups []int
	for _, stmt := range bf.Stmt {
		if _, ok := stmt.(*build.CommentBlock); ok {
			continue
		}
		start, _ := stmt.Span()
		g := src.groupAt(h.origOffset(start.Byte))
		one := &build.File{Type: bf.Type, Stmt: []build.Expr{stmt}}
		if _, err := vstar.FileOptions().Parse("", h.restore(build.FormatWithoutRewriting(one)), 0); err != nil && g >= 0 && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return groups
}

// alignProbe is how much longer the sentinel is in the second print.
const alignProbe = 8

// printHidden prints src with buildifier after hiding what it cannot parse; pad lengthens
// the while sentinel. The result still holds the sentinels (see hidden.restore).
func printHidden(filename string, src *source, pad int, keep map[int]bool) (*hidden, *build.File, []byte, error) {
	h, err := hide(src, pad, keep)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", filename, err)
	}
	bf, err := build.ParseDefault(filename, h.src)
	if err != nil {
		var pe build.ParseError
		if errors.As(err, &pe) {
			return nil, nil, nil, &parseError{off: h.origOffset(pe.Pos.Byte), msg: pe.Message}
		}
		return nil, nil, nil, fmt.Errorf("%s: cannot format: %w", filename, err)
	}
	out, err := printFile(bf)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: cannot format: %w", filename, err)
	}
	return h, bf, out, nil
}

// printFile lays out bf. buildifier's parser turns its own panics into errors; its printer
// does not, and it was written for another grammar.
func printFile(bf *build.File) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in buildifier's printer: %v", r)
		}
	}()
	(&build.Rewriter{RewriteSet: rewriteSet}).Rewrite(bf)
	return build.FormatWithoutRewriting(bf), nil
}

// realign moves left by shift every line of out that probe, printed with a sentinel pad
// columns longer, indents exactly pad columns deeper: such a line is aligned with
// something on a while header, which gets shift columns shorter when `while` returns.
// (buildifier breaks lines where the source does, not by width, so the two prints have
// the same lines; should they not, out is left alone: only its looks suffer.)
func realign(out, probe []byte, pad, shift int) []byte {
	lines := bytes.Split(out, []byte("\n"))
	probes := bytes.Split(probe, []byte("\n"))
	if len(lines) != len(probes) {
		return out
	}
	for i, line := range lines {
		text := bytes.TrimLeft(line, " ")
		indent := len(line) - len(text)
		ptext := bytes.TrimLeft(probes[i], " ")
		if indent >= shift && len(probes[i])-len(ptext) == indent+pad && bytes.Equal(text, ptext) {
			lines[i] = line[shift:]
		}
	}
	return bytes.Join(lines, []byte("\n"))
}
