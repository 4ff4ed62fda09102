package starfmt

import (
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"

	vstar "github.com/voidbox/voidbox/starlark"
	"go.starlark.net/syntax"
)

// compare checks that the formatted text out is the program orig, with the same
// comments: buildifier's printer was written for another grammar, and a formatter that
// silently changed a program would be worse than none. It returns the top-level
// statements of orig that buildifier did not print faithfully (the first of them only
// when out has a different number of statements), and an error when out does not parse.
func compare(filename string, orig *source, out []byte) (bad []int, err error) {
	f, err := vstar.FileOptions().Parse(filename, out, 0)
	if err != nil {
		detail := err.Error()
		if se, ok := err.(syntax.Error); ok { // its position is in the output, not the file
			detail = fmt.Sprintf("output line %d column %d: %s", se.Pos.Line, se.Pos.Col, se.Msg)
		}
		return nil, &unparsableError{fmt.Sprintf("%s: cannot format: buildifier printed text that does not parse (%s); the file is left as it is", filename, detail)}
	}
	got, err := newSource(out, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	want, have := orig.file.Stmts, got.file.Stmts
	for i := 0; i < min(len(want), len(have)); i++ {
		if dump(want[i]) != dump(have[i]) {
			bad = append(bad, i)
		}
	}
	if len(want) != len(have) {
		// Statements were split or merged: only the first difference can be trusted.
		first := min(len(want), len(have), len(want)-1)
		if len(bad) > 0 {
			first = bad[0]
		}
		return []int{first}, nil
	}
	for i := range want {
		if !slices.Equal(orig.commentsAround(i), got.commentsAround(i)) && !slices.Contains(bad, i) {
			bad = append(bad, i)
		}
	}
	return bad, nil
}

// unparsableError is formatted text that go.starlark.net cannot parse.
type unparsableError struct{ msg string }

func (e *unparsableError) Error() string { return e.msg }

// dump renders a syntax tree without what layout may change: positions, the raw spelling
// of literals ('a' and "a" are the same string) and redundant parentheses.
func dump(n syntax.Node) string {
	var b strings.Builder
	dumpValue(&b, reflect.ValueOf(n))
	return b.String()
}

var positionType = reflect.TypeFor[syntax.Position]()

func dumpValue(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		switch x := v.Interface().(type) {
		case *syntax.ParenExpr:
			dumpValue(b, reflect.ValueOf(x.X))
			return
		case *syntax.Literal:
			fmt.Fprintf(b, "Literal(%s %s)", x.Token, literalValue(x.Value))
			return
		}
		dumpValue(b, v.Elem())
	case reflect.Struct:
		t := v.Type()
		b.WriteString(t.Name())
		b.WriteByte('{')
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Type == positionType {
				continue
			}
			b.WriteString(f.Name)
			b.WriteByte(':')
			dumpValue(b, v.Field(i))
			b.WriteByte(' ')
		}
		b.WriteByte('}')
	case reflect.Slice:
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			dumpValue(b, v.Index(i))
			b.WriteByte(' ')
		}
		b.WriteByte(']')
	default:
		fmt.Fprintf(b, "%#v", v.Interface())
	}
}

func literalValue(v any) string {
	if bi, ok := v.(*big.Int); ok {
		return bi.String()
	}
	return fmt.Sprintf("%#v", v)
}
