package starfmt

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.starlark.net/syntax"
)

// sentinelBase names what stands in for syntax buildifier lacks. Format uses the first of
// sentinelBase, sentinelBase1, sentinelBase2, ... that occurs nowhere in the file, so every
// occurrence in buildifier's output is one Format put there.
const sentinelBase = "_voidbox_fmt_"

// tabWidth is go.starlark.net's tab stop when it measures indentation.
const tabWidth = 8

// hidden is a program's text rewritten into the grammar buildifier parses:
//
//   - `while COND:` becomes `for <sentinel> in COND:`
//   - a bytes literal (b"...") becomes the identifier <sentinel>_b<N>, printed verbatim
//   - a single-quoted string without a double quote in its value becomes the same
//     string in double quotes (buildifier would requote it itself, but escapes non-ASCII
//     bytes in octal, which go.starlark.net refuses)
//   - a conditional expression after a comma in a tuple without parentheses gets them
//   - a space goes between a number and a keyword written right after it (`1if`)
//   - tabs in indentation become spaces at go.starlark.net's tab stops
//   - the text of each kept statement group (see Format) becomes the identifier
//     <sentinel>_s<N>, so it is printed as written
//
// Every rewrite is made at a position go.starlark.net recorded, never by searching the
// text (a "while" may sit in a string or a comment).
type hidden struct {
	src      []byte
	sentinel string
	pad      int // extra underscores in the while sentinel
	whiles   int
	verbatim map[string]string // <sentinel>_b<N> and <sentinel>_s<N> to the text they stand for
	edits    []edit            // applied, in text order
}

type edit struct {
	start, end int // byte offsets in the original text
	text       string
}

// hide rewrites the program src. pad lengthens the while sentinel by that many
// underscores (see layout); the groups in keep are left as written.
func hide(src *source, pad int, keep map[int]bool) (*hidden, error) {
	h := &hidden{sentinel: freshName(src.text), pad: pad, verbatim: map[string]string{}}
	var edits []edit
	var err error
	syntax.Walk(src.file, func(n syntax.Node) bool {
		if err != nil {
			return false
		}
		var off int
		switch n := n.(type) {
		case *syntax.WhileStmt:
			if off, err = src.offset(n.While, "while"); err == nil {
				edits = append(edits, edit{off, off + len("while"), strings.TrimSuffix(h.whileHeader(), " ")})
			}
		case *syntax.TupleExpr:
			err = parenthesizeConds(src, n, &edits)
		case *syntax.Literal:
			if n.Token != syntax.INT && n.Token != syntax.FLOAT {
				break
			}
			// go.starlark.net ends a number where its digits end (`0if x else 1`);
			// buildifier would read on into the keyword.
			if off, err = src.offset(n.TokenPos, n.Raw); err == nil {
				if end := off + len(n.Raw); end < len(src.text) && identByte(src.text[end]) {
					edits = append(edits, edit{end, end, " "})
				}
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, l := range src.lits {
		switch {
		case l.lit.Token == syntax.BYTES:
			edits = append(edits, h.verbatimEdit("b", l.start, l.end, src))
		case strings.HasPrefix(l.lit.Raw, "'") && !strings.Contains(l.lit.Value.(string), `"`):
			edits = append(edits, edit{l.start, l.end, doubleQuoted(l.lit.Raw)})
		}
	}
	edits = append(edits, untab(src)...)
	// A kept group replaces every other edit inside it.
	for g, gr := range src.groups {
		if !keep[g] {
			continue
		}
		edits = slices.DeleteFunc(edits, func(e edit) bool { return gr.start <= e.start && e.end <= gr.end })
		edits = append(edits, h.verbatimEdit("s", gr.start, gr.end, src))
	}
	slices.SortStableFunc(edits, func(a, b edit) int { return a.start - b.start })
	var b bytes.Buffer
	last := 0
	for _, e := range edits {
		b.Write(src.text[last:e.start])
		b.WriteString(e.text)
		last = e.end
		if strings.HasPrefix(e.text, "for "+h.sentinel) {
			h.whiles++
		}
	}
	b.Write(src.text[last:])
	h.src, h.edits = b.Bytes(), edits
	return h, nil
}

// verbatimEdit replaces src's text from start to end by a fresh identifier that restore
// turns back into that text.
func (h *hidden) verbatimEdit(kind string, start, end int, src *source) edit {
	id := h.sentinel + "_" + kind + strconv.Itoa(len(h.verbatim))
	h.verbatim[id] = string(src.text[start:end])
	return edit{start, end, id}
}

// origOffset maps a byte offset in the hidden text back to the original text; an offset
// inside a rewritten piece maps to the piece's start.
func (h *hidden) origOffset(off int) int {
	delta := 0 // hidden offset minus original offset, before the edit at hand
	for _, e := range h.edits {
		at := e.start + delta
		if off < at {
			break
		}
		if off < at+len(e.text) {
			return e.start
		}
		delta += len(e.text) - (e.end - e.start)
	}
	return off - delta
}

// parenthesizeConds wraps in parentheses each conditional expression that follows a comma
// in a tuple written without parentheses (`x = a, b if c else d`): buildifier's grammar
// stops at the `if`. The parentheses stay; they change nothing but the layout.
func parenthesizeConds(src *source, t *syntax.TupleExpr, edits *[]edit) error {
	if t.Lparen.IsValid() {
		return nil
	}
	for _, x := range t.List[min(1, len(t.List)):] {
		if _, ok := x.(*syntax.CondExpr); !ok {
			continue
		}
		from, to := x.Span()
		start, ok1 := src.offsetAt(from)
		end, ok2 := src.offsetAt(to)
		if !ok1 || !ok2 || start >= end {
			return fmt.Errorf("%d:%d: internal error: the parser's span of a conditional expression is not in the text", from.Line, from.Col)
		}
		*edits = append(*edits, edit{start, start, "("}, edit{end, end, ")"})
	}
	return nil
}

// identByte says whether c can continue an identifier (non-ASCII letters start with a
// byte >= 0x80).
func identByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= utf8.RuneSelf
}

// doubleQuoted turns a single-quoted string literal whose value has no double quote (so
// whose text has none either) into the double-quoted literal of the same value: the quotes
// change, \' becomes ', every other escape stays as written.
func doubleQuoted(raw string) string {
	q := 1
	if strings.HasPrefix(raw, "'''") {
		q = 3
	}
	body := raw[q : len(raw)-q]
	var b strings.Builder
	b.WriteString(strings.Repeat(`"`, q))
	for i := 0; i < len(body); i++ {
		if body[i] == '\\' && i+1 < len(body) {
			if body[i+1] != '\'' {
				b.WriteByte('\\')
			}
			b.WriteByte(body[i+1])
			i++
			continue
		}
		b.WriteByte(body[i])
	}
	b.WriteString(strings.Repeat(`"`, q))
	return b.String()
}

// untab returns the edits that turn tabs in indentation into spaces. A line that starts
// inside a string literal is left alone: its leading tabs are part of the string.
func untab(src *source) []edit {
	var edits []edit
	for _, start := range src.lines {
		end := start
		for end < len(src.text) && (src.text[end] == ' ' || src.text[end] == '\t') {
			end++
		}
		if bytes.IndexByte(src.text[start:end], '\t') < 0 || src.inString(start) {
			continue
		}
		col := 0
		for _, c := range src.text[start:end] {
			if c == '\t' {
				col += tabWidth - col%tabWidth
			} else {
				col++
			}
		}
		edits = append(edits, edit{start, end, strings.Repeat(" ", col)})
	}
	return edits
}

// whileHeader is what stands for "while " in the hidden text.
func (h *hidden) whileHeader() string {
	return "for " + h.sentinel + strings.Repeat("_", h.pad) + " in "
}

// restore puts the hidden syntax back into buildifier's output.
func (h *hidden) restore(out []byte) []byte {
	if h.whiles > 0 {
		out = bytes.ReplaceAll(out, []byte(h.whileHeader()), []byte("while "))
	}
	if len(h.verbatim) > 0 {
		re := regexp.MustCompile(regexp.QuoteMeta(h.sentinel) + `_[bs][0-9]+`)
		out = re.ReplaceAllFunc(out, func(id []byte) []byte {
			if text, ok := h.verbatim[string(id)]; ok {
				return []byte(text)
			}
			return id // cannot happen; Format's comparison would report the difference
		})
	}
	return out
}

func freshName(src []byte) string {
	name := sentinelBase
	for i := 1; bytes.Contains(src, []byte(name)); i++ {
		name = sentinelBase + strconv.Itoa(i)
	}
	return name
}
