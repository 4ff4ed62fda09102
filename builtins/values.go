package builtins

import (
	"fmt"
	"sort"
	"strings"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// The DSL's value types. Every one is immutable once its builtin returns: the
// validated data lives in Go fields and attributes are built on demand as frozen
// Starlark values, so a script can read a box's settings but never change them.
// All of them are unhashable (like list and dict) and compare equal only to
// themselves, which keeps "the same box" an identity question everywhere.

// Box is the value box() returns: one stage, validated.
type Box struct {
	stage  runtime.Stage // Skills, LLM and Mounts are filled from the fields below on conversion
	skills []*Skill
	llm    *LLM
	mounts []*Mount
}

// Skill is the value skill() returns.
type Skill struct{ skill runtime.Skill }

// LLM is the value llm.claude/llm.ollama/llm.custom return.
type LLM struct{ llm runtime.LLM }

// Mount is the value mount() returns.
type Mount struct{ mount runtime.Mount }

// Pipe is the value pipe() returns: its elements run in sequence.
type Pipe struct {
	elems []starlark.Value
	shape graphShape
}

// FanOut is the value fan_out() returns: its elements run concurrently.
type FanOut struct {
	elems []starlark.Value
	shape graphShape
}

var (
	_ starlark.HasAttrs = (*Box)(nil)
	_ starlark.HasAttrs = (*Skill)(nil)
	_ starlark.HasAttrs = (*LLM)(nil)
	_ starlark.HasAttrs = (*Mount)(nil)
	_ starlark.HasAttrs = (*Pipe)(nil)
	_ starlark.HasAttrs = (*FanOut)(nil)
)

func unhashable(v starlark.Value) (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", v.Type())
}

// attrs turns a fixed attribute table into the HasAttrs methods' answers.
type attrTable map[string]func() starlark.Value

func (t attrTable) get(name string) (starlark.Value, error) {
	f, ok := t[name]
	if !ok {
		return nil, nil // starlark reports "has no .name field or method"
	}
	v := f()
	v.Freeze()
	return v, nil
}

func (t attrTable) names() []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func stringList(ss []string) *starlark.List {
	vs := make([]starlark.Value, len(ss))
	for i, s := range ss {
		vs[i] = starlark.String(s)
	}
	return starlark.NewList(vs)
}

func stringDict(m map[string]string) *starlark.Dict {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := starlark.NewDict(len(m))
	for _, k := range keys {
		_ = d.SetKey(starlark.String(k), starlark.String(m[k])) // a fresh dict cannot fail
	}
	return d
}

func noneOr(s string) starlark.Value {
	if s == "" {
		return starlark.None
	}
	return starlark.String(s)
}

// --- Box ---

func (b *Box) String() string        { return fmt.Sprintf("box(%q)", b.stage.Name) }
func (b *Box) Type() string          { return "box" }
func (b *Box) Freeze()               {}
func (b *Box) Truth() starlark.Bool  { return starlark.True }
func (b *Box) Hash() (uint32, error) { return unhashable(b) }

// Name is the box's stage name.
func (b *Box) Name() string { return b.stage.Name }

func (b *Box) attrs() attrTable {
	s := &b.stage
	return attrTable{
		"name":      func() starlark.Value { return starlark.String(s.Name) },
		"cmd":       func() starlark.Value { return noneOrList(s.Cmd) },
		"prompt":    func() starlark.Value { return noneOr(s.Prompt) },
		"image":     func() starlark.Value { return noneOr(s.Image) },
		"memory_mb": func() starlark.Value { return starlark.MakeInt(s.MemoryMB) },
		"vcpus":     func() starlark.Value { return starlark.MakeInt(s.VCPUs) },
		"network":   func() starlark.Value { return starlark.Bool(s.Network) },
		"egress":    func() starlark.Value { return stringList(s.Egress) },
		"ports": func() starlark.Value {
			ps := make([]string, len(s.Ports))
			for i, p := range s.Ports {
				ps[i] = p.String()
			}
			return stringList(ps)
		},
		"env":         func() starlark.Value { return stringDict(s.Env) },
		"timeout":     func() starlark.Value { return starlark.String(s.Timeout.String()) },
		"retries":     func() starlark.Value { return starlark.MakeInt(s.Retries) },
		"on_failure":  func() starlark.Value { return starlark.String(string(s.OnFailure)) },
		"allow":       func() starlark.Value { return stringList(s.Allow) },
		"pos":         func() starlark.Value { return starlark.String(s.Pos) },
		"steps":       func() starlark.Value { return stepValues(s.Steps) },
		"output_step": func() starlark.Value { return noneOr(s.OutputStep) },
		"output_file": func() starlark.Value { return noneOr(s.OutputFile) },
		"skills": func() starlark.Value {
			vs := make([]starlark.Value, len(b.skills))
			for i, sk := range b.skills {
				vs[i] = sk
			}
			return starlark.NewList(vs)
		},
		"mounts": func() starlark.Value {
			vs := make([]starlark.Value, len(b.mounts))
			for i, m := range b.mounts {
				vs[i] = m
			}
			return starlark.NewList(vs)
		},
		"llm": func() starlark.Value {
			if b.llm == nil {
				return starlark.None
			}
			return b.llm
		},
	}
}

func noneOrList(ss []string) starlark.Value {
	if ss == nil {
		return starlark.None
	}
	return stringList(ss)
}

func (b *Box) Attr(name string) (starlark.Value, error) { return b.attrs().get(name) }
func (b *Box) AttrNames() []string                      { return b.attrs().names() }

// --- Skill ---

func (s *Skill) String() string {
	k := &s.skill
	switch k.Kind {
	case runtime.SkillImage:
		return fmt.Sprintf("skill(image=%q, mount=%q)", k.Image, k.MountPath)
	case runtime.SkillMCP:
		return fmt.Sprintf("skill(mcp=%q)", strings.Join(append([]string{k.Command}, k.Args...), " "))
	case runtime.SkillFile:
		return fmt.Sprintf("skill(%q)", "file:"+k.Path)
	case runtime.SkillRemote:
		return fmt.Sprintf("skill(%q)", "remote:"+k.URL)
	}
	return fmt.Sprintf("skill(%q)", string(k.Kind)+":"+k.Name)
}
func (s *Skill) Type() string          { return "skill" }
func (s *Skill) Freeze()               {}
func (s *Skill) Truth() starlark.Bool  { return starlark.True }
func (s *Skill) Hash() (uint32, error) { return unhashable(s) }

func (s *Skill) attrs() attrTable {
	k := &s.skill
	return attrTable{
		"kind":        func() starlark.Value { return starlark.String(string(k.Kind)) },
		"name":        func() starlark.Value { return starlark.String(k.Name) },
		"description": func() starlark.Value { return starlark.String(k.Description) },
		"path":        func() starlark.Value { return noneOr(k.Path) },
		"content":     func() starlark.Value { return noneOr(k.Content) },
		"command":     func() starlark.Value { return noneOr(k.Command) },
		"args":        func() starlark.Value { return stringList(k.Args) },
		"env":         func() starlark.Value { return stringDict(k.Env) },
		"url":         func() starlark.Value { return noneOr(k.URL) },
		"image":       func() starlark.Value { return noneOr(k.Image) },
		"mount":       func() starlark.Value { return noneOr(k.MountPath) },
	}
}

func (s *Skill) Attr(name string) (starlark.Value, error) { return s.attrs().get(name) }
func (s *Skill) AttrNames() []string                      { return s.attrs().names() }

// --- LLM ---

func (l *LLM) String() string {
	return fmt.Sprintf("llm.%s(%q)", l.llm.Provider, l.llm.Model)
}
func (l *LLM) Type() string          { return "llm" }
func (l *LLM) Freeze()               {}
func (l *LLM) Truth() starlark.Bool  { return starlark.True }
func (l *LLM) Hash() (uint32, error) { return unhashable(l) }

func (l *LLM) attrs() attrTable {
	m := &l.llm
	return attrTable{
		"provider":    func() starlark.Value { return starlark.String(m.Provider) },
		"model":       func() starlark.Value { return starlark.String(m.Model) },
		"base_url":    func() starlark.Value { return noneOr(m.BaseURL) },
		"api_key_env": func() starlark.Value { return noneOr(m.APIKeyEnv) },
	}
}

func (l *LLM) Attr(name string) (starlark.Value, error) { return l.attrs().get(name) }
func (l *LLM) AttrNames() []string                      { return l.attrs().names() }

// --- Mount ---

func (m *Mount) String() string {
	return fmt.Sprintf("mount(%q, %q, mode=%q)", m.mount.Host, m.mount.Guest, string(m.mount.Mode))
}
func (m *Mount) Type() string          { return "mount" }
func (m *Mount) Freeze()               {}
func (m *Mount) Truth() starlark.Bool  { return starlark.True }
func (m *Mount) Hash() (uint32, error) { return unhashable(m) }

func (m *Mount) attrs() attrTable {
	return attrTable{
		"host":  func() starlark.Value { return starlark.String(m.mount.Host) },
		"guest": func() starlark.Value { return starlark.String(m.mount.Guest) },
		"mode":  func() starlark.Value { return starlark.String(string(m.mount.Mode)) },
	}
}

func (m *Mount) Attr(name string) (starlark.Value, error) { return m.attrs().get(name) }
func (m *Mount) AttrNames() []string                      { return m.attrs().names() }

// --- Pipe and FanOut ---

// graphString renders a graph value the way a user would write it, naming boxes by
// the variable-like stage name: pipe(fetch, fan_out(shout, review)). One builder for
// the whole string, so the cost is linear in the graph (bounded by MaxElements).
func graphString(v starlark.Value) string {
	var b strings.Builder
	writeGraph(&b, v)
	return b.String()
}

func writeGraph(b *strings.Builder, v starlark.Value) {
	var elems []starlark.Value
	switch v := v.(type) {
	case *Box:
		b.WriteString(v.stage.Name)
		return
	case *Pipe:
		b.WriteString("pipe(")
		elems = v.elems
	case *FanOut:
		b.WriteString("fan_out(")
		elems = v.elems
	default:
		b.WriteString(v.String())
		return
	}
	for i, e := range elems {
		if i > 0 {
			b.WriteString(", ")
		}
		writeGraph(b, e)
	}
	b.WriteByte(')')
}

func graphAttrs(elems []starlark.Value) attrTable {
	return attrTable{
		"nodes": func() starlark.Value { return starlark.NewList(append([]starlark.Value(nil), elems...)) },
		"stages": func() starlark.Value {
			var out []starlark.Value
			for _, b := range appendBoxes(nil, elems) {
				out = append(out, b)
			}
			return starlark.NewList(out)
		},
	}
}

// appendBoxes appends the boxes under elems in declaration order (duplicates kept).
func appendBoxes(out []*Box, elems []starlark.Value) []*Box {
	for _, e := range elems {
		switch e := e.(type) {
		case *Box:
			out = append(out, e)
		case *Pipe:
			out = appendBoxes(out, e.elems)
		case *FanOut:
			out = appendBoxes(out, e.elems)
		}
	}
	return out
}

func (p *Pipe) String() string                           { return graphString(p) }
func (p *Pipe) Type() string                             { return "pipe" }
func (p *Pipe) Freeze()                                  {}
func (p *Pipe) Truth() starlark.Bool                     { return starlark.True }
func (p *Pipe) Hash() (uint32, error)                    { return unhashable(p) }
func (p *Pipe) Attr(name string) (starlark.Value, error) { return graphAttrs(p.elems).get(name) }
func (p *Pipe) AttrNames() []string                      { return graphAttrs(p.elems).names() }

func (f *FanOut) String() string                           { return graphString(f) }
func (f *FanOut) Type() string                             { return "fan_out" }
func (f *FanOut) Freeze()                                  {}
func (f *FanOut) Truth() starlark.Bool                     { return starlark.True }
func (f *FanOut) Hash() (uint32, error)                    { return unhashable(f) }
func (f *FanOut) Attr(name string) (starlark.Value, error) { return graphAttrs(f.elems).get(name) }
func (f *FanOut) AttrNames() []string                      { return graphAttrs(f.elems).names() }
