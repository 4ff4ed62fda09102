package spec

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/voidbox/voidbox/builtins"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/starfmt"
	vstar "github.com/voidbox/voidbox/starlark"
	sk "go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"gopkg.in/yaml.v3"
)

// A spec becomes a graph by way of the equivalent .star program: the spec is written
// out as box()/step()/skill()/pipe() calls and that program is run. Every value is
// thereby checked by the DSL's own builtins (the same rules, the same words), and the
// program `voidbox convert` prints is, by construction, the one `run --file` runs. Each
// line of the program remembers the spec node it came from, so a builtin's error is
// reported at the YAML line and column of the value at fault.

// origin is where in the spec a piece of the program came from.
type origin struct {
	path string // "pipeline.boxes[1].sandbox.memory_mb"
	node *yaml.Node
}

// The program's values.
type (
	ident string      // a variable or other expression, written as is
	dict  [][2]string // a dict of strings, in spec order
	call  struct {
		fn   string
		args []arg
		at   origin
	}
	arg struct {
		name string // "" for a positional argument
		val  any    // string, int, bool, ident, dict, []any, *call
		at   origin
	}
)

// statement is "name = value" at the program's top level.
type statement struct {
	name string
	val  *call
	expr ident // when val is nil
}

// program is a generated .star program and, per line, where it came from.
type program struct {
	b     strings.Builder
	line  int // the line being written, from 1
	lines map[int]origin
	calls map[int]*call // calls written on (or opened on) each line
}

func newProgram() *program {
	return &program{line: 1, lines: map[int]origin{}, calls: map[int]*call{}}
}

func (p *program) write(s string, at origin) {
	if _, ok := p.lines[p.line]; !ok {
		p.lines[p.line] = at
	}
	p.b.WriteString(s)
}

func (p *program) newline() {
	p.b.WriteString("\n")
	p.line++
}

// render writes the program: a header comment, then the statements.
func render(header []string, stmts []statement) *program {
	p := newProgram()
	for _, h := range header {
		p.write("# "+h, origin{})
		p.newline()
	}
	for _, st := range stmts {
		p.newline()
		if st.val == nil {
			p.write(st.name+" = "+string(st.expr), origin{})
			p.newline()
			continue
		}
		p.write(st.name+" = ", st.val.at)
		p.multiCall(st.val, "")
		p.newline()
	}
	return p
}

// multiCall writes c with one argument per line.
func (p *program) multiCall(c *call, indent string) {
	p.calls[p.line] = c
	p.write(c.fn+"(", c.at)
	p.newline()
	for _, a := range c.args {
		p.write(indent+"    ", a.at)
		if a.name != "" {
			p.write(a.name+" = ", a.at)
		}
		p.value(a.val, indent+"    ", a.at)
		p.write(",", a.at)
		p.newline()
	}
	p.write(indent+")", c.at)
}

// value writes v; lists of calls get one element per line.
func (p *program) value(v any, indent string, at origin) {
	switch v := v.(type) {
	case string:
		p.write(syntax.Quote(v, false), at)
	case int:
		p.write(strconv.Itoa(v), at)
	case bool:
		p.write(map[bool]string{true: "True", false: "False"}[v], at)
	case ident:
		p.write(string(v), at)
	case dict:
		p.write("{", at)
		for i, kv := range v {
			if i > 0 {
				p.write(", ", at)
			}
			p.write(syntax.Quote(kv[0], false)+": "+syntax.Quote(kv[1], false), at)
		}
		p.write("}", at)
	case *call:
		p.calls[p.line] = v
		p.write(v.fn+"(", v.at)
		for i, a := range v.args {
			if i > 0 {
				p.write(", ", v.at)
			}
			if a.name != "" {
				p.write(a.name+" = ", v.at)
			}
			p.value(a.val, indent, v.at)
		}
		p.write(")", v.at)
	case []any:
		multi := false
		for _, e := range v {
			if _, ok := e.(*call); ok {
				multi = true
			}
		}
		if !multi {
			p.write("[", at)
			for i, e := range v {
				if i > 0 {
					p.write(", ", at)
				}
				p.value(e, indent, at)
			}
			p.write("]", at)
			return
		}
		p.write("[", at)
		p.newline()
		for _, e := range v {
			p.write(indent+"    ", at)
			p.value(e, indent+"    ", at)
			p.write(",", at)
			p.newline()
		}
		p.write(indent+"]", at)
	default:
		panic(fmt.Sprintf("spec: cannot write a %T", v)) // the builder makes only the types above
	}
}

// run executes the program as the file starFile (relative paths in skill() and mount()
// resolve against its directory, the spec's) and returns its `pipeline`.
func (p *program) run(specFile, starFile string) (runtime.Node, error) {
	prog, err := vstar.ExecSource(starFile, []byte(p.b.String()), vstar.Options{
		Runner:  &builtins.Planner{},
		Context: context.Background(),
		Print:   func(*sk.Thread, string) {},
	})
	if err != nil {
		return nil, p.specError(specFile, starFile, err)
	}
	if prog.Pipeline == nil {
		return nil, fmt.Errorf("%s: the converted program defines no pipeline", specFile)
	}
	return prog.Pipeline, nil
}

// specError turns an error of the generated program into one at the spec's node.
func (p *program) specError(specFile, starFile string, err error) error {
	var ev *sk.EvalError
	if !errors.As(err, &ev) {
		return fmt.Errorf("%s: %w", specFile, err)
	}
	line := 0
	for _, fr := range ev.CallStack {
		if fr.Pos.Filename() == starFile {
			line = int(fr.Pos.Line)
		}
	}
	at, msg := p.locate(line, ev.Msg)
	e := &Error{File: specFile, Msg: msg}
	if at.node != nil {
		e.Line, e.Col = at.node.Line, at.node.Column
	}
	return e
}

// locate finds the spec node behind an error raised on a line of the program. A
// builtin names the argument at fault ("box: memory_mb must be ..."), which picks the
// argument's own node when the call was written on that line.
func (p *program) locate(line int, msg string) (origin, string) {
	at := p.lines[line]
	if c := p.calls[line]; c != nil {
		fn := c.fn
		if i := strings.LastIndexByte(fn, '.'); i >= 0 {
			fn = fn[i+1:]
		}
		if rest, ok := strings.CutPrefix(msg, fn+": "); ok {
			name := rest
			if i := strings.IndexFunc(rest, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z') }); i >= 0 {
				name = rest[:i]
			}
			for _, a := range c.args {
				if a.name == name && a.name != "" && a.at.path != "" {
					return a.at, a.at.path + strings.TrimPrefix(rest, name)
				}
			}
			at = c.at
		}
	}
	if at.path != "" {
		msg = at.path + ": " + msg
	}
	return at, msg
}

// formatted is the program as `voidbox fmt` would write it.
func (p *program) formatted(starFile string) string {
	src := p.b.String()
	out, err := starfmt.Format(starFile, []byte(src))
	if err != nil {
		return src // the program ran, so it parses; keep it as written
	}
	return string(out)
}

// starName is the file name the program runs under: beside the spec, same base name.
func starName(specFile string) string {
	base := strings.TrimSuffix(specFile, filepath.Ext(specFile))
	return base + ".star"
}
