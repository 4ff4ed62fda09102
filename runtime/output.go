package runtime

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// fanOut runs n's branches concurrently and returns the JSON array of their outputs.
//
// The array is the one value a graph makes bigger than its stages' outputs: nesting
// fan_outs re-escapes the same bytes at every level (a backslash doubles each time), so
// its size is checked against the output cap before anything is encoded. Branches add
// their encoded size to a running total as they finish, so a fan_out whose array cannot
// fit stops the run (cancelling the branches still running) without holding more than
// the cap in branch outputs.
func (r *run) fanOut(n *FanOut, input string) string {
	outs := make([]string, len(n.Nodes))
	var mu sync.Mutex
	size := 2 + len(n.Nodes) - 1 // brackets and commas
	over := false
	var wg sync.WaitGroup
	for i, c := range n.Nodes {
		wg.Go(func() {
			out := r.node(c, input)
			l := jsonStringLen(out, r.limit)
			mu.Lock()
			defer mu.Unlock()
			if over {
				return
			}
			if size += l; size > r.limit {
				over = true
				r.fail(fmt.Sprintf("%s output exceeds %s (the JSON array of its branches' outputs; stage outputs and graph outputs are each capped)", label(n), sizeString(r.limit)))
				return
			}
			outs[i] = out
		})
	}
	wg.Wait()
	if over {
		return ""
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i, o := range outs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, o)
	}
	return string(append(b, ']'))
}

// label names a pipe or fan_out in messages by its elements: stages by name, nested
// pipes and fan_outs by their first element, e.g. `fan_out(a, pipe(b, …), c, …)`.
func label(n Node) string {
	kind, kids, _ := composite(n)
	var parts []string
	for i, k := range kids {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, shortLabel(k))
	}
	return kind + "(" + strings.Join(parts, ", ") + ")"
}

func shortLabel(n Node) string {
	if s, ok := n.(*Stage); ok {
		return s.Name
	}
	kind, kids, _ := composite(n)
	if s := firstStage(n); s != nil {
		if len(kids) == 1 {
			if _, ok := kids[0].(*Stage); ok {
				return kind + "(" + s.Name + ")"
			}
		}
		return kind + "(" + s.Name + ", …)"
	}
	return kind + "()"
}

// jsonEscapes is how encoding/json writes each ASCII byte in a string ("" for the byte
// itself): quote and backslash escaped, control bytes as short or \u00XX escapes, and
// <, > and & as \u00XX (json.Marshal escapes HTML).
var jsonEscapes = func() (t [utf8.RuneSelf]string) {
	const hex = "0123456789abcdef"
	for b := range t {
		if b < 0x20 || b == '<' || b == '>' || b == '&' {
			t[b] = `\u00` + string(hex[b>>4]) + string(hex[b&0xf])
		}
	}
	t['"'], t['\\'] = `\"`, `\\`
	t['\b'], t['\f'], t['\n'], t['\r'], t['\t'] = `\b`, `\f`, `\n`, `\r`, `\t`
	return t
}()

// jsonEscape says how s[i:] starts in a JSON string: esc is the escape to write ("" to
// copy the size bytes as they are). Like encoding/json, invalid UTF-8 becomes \ufffd and
// U+2028/U+2029 are escaped.
func jsonEscape(s string, i int) (esc string, size int) {
	if b := s[i]; b < utf8.RuneSelf {
		return jsonEscapes[b], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return `\ufffd`, 1
	case r == '\u2028':
		return `\u2028`, size
	case r == '\u2029':
		return `\u2029`, size
	}
	return "", size
}

// jsonStringLen is the length of s encoded as a JSON string, quotes included, computed
// without encoding it. It stops counting once the length exceeds limit (the result is
// then only known to be > limit), so a huge string costs no more than the cap.
func jsonStringLen(s string, limit int) int {
	n := 2
	for i := 0; i < len(s) && n <= limit; {
		esc, size := jsonEscape(s, i)
		if esc == "" {
			n += size
		} else {
			n += len(esc)
		}
		i += size
	}
	return n
}

// appendJSONString appends s as a JSON string, byte for byte as json.Marshal writes it.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		esc, size := jsonEscape(s, i)
		if esc != "" {
			b = append(append(b, s[start:i]...), esc...)
			start = i + size
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}
