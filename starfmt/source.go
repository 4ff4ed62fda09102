package starfmt

import (
	"bytes"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"go.starlark.net/syntax"
)

// source is a program's text with its go.starlark.net syntax tree and the byte offsets
// Format works with: string and bytes literals (where a '#', a tab or the word "while" is
// not syntax), comments, and top-level statements.
type source struct {
	text     []byte // LF newlines
	lines    []int  // byte offset of each line's start
	file     *syntax.File
	lits     []literal // in text order
	comments []comment // in text order
	stmts    []int     // byte offset of each top-level statement's start
	groups   []group   // top-level statements by the lines they occupy
}

type literal struct {
	start, end int
	lit        *syntax.Literal
}

type comment struct {
	off  int
	text string // without trailing white space, which buildifier drops
}

// group is a run of top-level statements that share lines (`x = 1; y = 2`), from the
// first one's start to the end of the last one's last line, without the newline: what
// Format can leave as written when buildifier cannot print it faithfully.
type group struct {
	start, end  int
	first, last int // statement indices
}

func newSource(text []byte, f *syntax.File) (*source, error) {
	s := &source{text: text, lines: lineStarts(text), file: f}
	var err error
	syntax.Walk(f, func(n syntax.Node) bool {
		lit, ok := n.(*syntax.Literal)
		if !ok || err != nil || lit.Token != syntax.STRING && lit.Token != syntax.BYTES {
			return err == nil
		}
		var off int
		if off, err = s.offset(lit.TokenPos, lit.Raw); err == nil {
			s.lits = append(s.lits, literal{off, off + len(lit.Raw), lit})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	// Walk visits a conditional expression's condition first, not in text order.
	slices.SortFunc(s.lits, func(a, b literal) int { return a.start - b.start })
	s.findComments()
	return s, s.findStatements()
}

// findComments records every comment. Outside literals, '#' always starts a comment that
// runs to the end of the line.
func (s *source) findComments() {
	for i, next := 0, 0; i < len(s.text); i++ {
		if next < len(s.lits) && i == s.lits[next].start {
			i = s.lits[next].end - 1
			next++
			continue
		}
		if s.text[i] != '#' {
			continue
		}
		end := bytes.IndexByte(s.text[i:], '\n')
		if end < 0 {
			end = len(s.text) - i
		}
		s.comments = append(s.comments, comment{i, string(bytes.TrimRightFunc(s.text[i:i+end], unicode.IsSpace))})
		i += end
	}
}

func (s *source) findStatements() error {
	for i, stmt := range s.file.Stmts {
		from, to := stmt.Span()
		start, ok1 := s.offsetAt(from)
		end, ok2 := s.offsetAt(to)
		if !ok1 || !ok2 {
			return fmt.Errorf("%d:%d: internal error: the parser's span of a statement is not in the text", from.Line, from.Col)
		}
		if nl := bytes.IndexByte(s.text[end:], '\n'); nl >= 0 {
			end += nl
		} else {
			end = len(s.text)
		}
		s.stmts = append(s.stmts, start)
		// A statement may start after blanks and backslash-newlines (`\` alone on the
		// line before); they belong to it.
		for start > 0 {
			if c := s.text[start-1]; c == ' ' || c == '\t' {
				start--
			} else if c == '\n' && start > 1 && s.text[start-2] == '\\' {
				start -= 2
			} else {
				break
			}
		}
		if n := len(s.groups); n > 0 && start < s.groups[n-1].end {
			s.groups[n-1].end = max(s.groups[n-1].end, end)
			s.groups[n-1].last = i
			continue
		}
		s.groups = append(s.groups, group{start, end, i, i})
	}
	return nil
}

// groupOf returns the index of the group holding top-level statement i.
func (s *source) groupOf(i int) int {
	for g, gr := range s.groups {
		if gr.first <= i && i <= gr.last {
			return g
		}
	}
	return -1
}

// groupAt returns the index of the group whose text holds the byte at off, or else of the
// next group (off is between statements), or -1.
func (s *source) groupAt(off int) int {
	for g, gr := range s.groups {
		if off <= gr.end {
			return g
		}
	}
	return -1
}

// commentsAround returns, sorted, the comments from the start of top-level statement i
// (from the start of the text for the first) to the start of the next one: buildifier
// may move a comment within a statement or to the neighbouring node, but must keep it.
func (s *source) commentsAround(i int) []string {
	from, to := 0, len(s.text)
	if i > 0 {
		from = s.stmts[i]
	}
	if i+1 < len(s.stmts) {
		to = s.stmts[i+1]
	}
	byOff := func(c comment, off int) int { return c.off - off }
	i0, _ := slices.BinarySearchFunc(s.comments, from, byOff)
	i1, _ := slices.BinarySearchFunc(s.comments, to, byOff)
	var texts []string
	for _, c := range s.comments[i0:i1] {
		texts = append(texts, c.text)
	}
	slices.Sort(texts)
	return texts
}

// offset converts the go.starlark.net position of a token (1-based line, 1-based column
// counted in runes) to a byte offset, and checks that the token's text is there.
func (s *source) offset(pos syntax.Position, token string) (int, error) {
	off, ok := s.offsetAt(pos)
	if !ok || !bytes.HasPrefix(s.text[off:], []byte(token)) {
		return 0, fmt.Errorf("%d:%d: internal error: the parser reported %q here, the text differs", pos.Line, pos.Col, token)
	}
	return off, nil
}

// offsetAt converts a go.starlark.net position to a byte offset; the position just past
// the end of a line is allowed (the end of a node's span).
func (s *source) offsetAt(pos syntax.Position) (int, bool) {
	if pos.Line < 1 || int(pos.Line) > len(s.lines) || pos.Col < 1 {
		return 0, false
	}
	off := s.lines[pos.Line-1]
	for col := int32(1); col < pos.Col; col++ {
		if off >= len(s.text) || s.text[off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(s.text[off:])
		off += size
	}
	return off, true
}

// inString says whether the byte at off is inside a string or bytes literal (not its
// first byte).
func (s *source) inString(off int) bool {
	i, _ := slices.BinarySearchFunc(s.lits, off, func(l literal, off int) int { return l.start - off })
	// lits[i-1] is the last literal starting before off.
	return i > 0 && off < s.lits[i-1].end
}

// lineStarts returns the byte offset of each line's start; lines are LF-terminated.
func lineStarts(text []byte) []int {
	starts := []int{0}
	for i, c := range text {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}
