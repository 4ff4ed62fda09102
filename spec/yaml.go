package spec

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Reading YAML through yaml.Node rather than struct tags: every value keeps its line
// and column, so each error can point at the key or value at fault, and unknown keys
// are found (and named, with the known ones) instead of silently dropped.

// Error is an invalid spec: FILE:LINE:COL: what is wrong, and what would be right.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg) }

// reader turns yaml.Nodes into values, reporting errors against file.
type reader struct{ file string }

func (r *reader) errAt(n *yaml.Node, format string, a ...any) *Error {
	e := &Error{File: r.file, Msg: fmt.Sprintf(format, a...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

// object is a YAML mapping read with a fixed set of keys.
type object struct {
	r    *reader
	path string // "agent", "pipeline.boxes[1]"
	node *yaml.Node
	vals map[string]*yaml.Node
}

// describe names a node's YAML type for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!int":
		return "integer " + n.Value
	case "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	case "!!null":
		return "null"
	}
	return "string " + strconv.Quote(n.Value)
}

// isNull says whether a value was left empty ("key:" or "key: null"): the same as absent.
func isNull(n *yaml.Node) bool { return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") }

// object reads n as a mapping whose keys must be among known.
func (r *reader) object(n *yaml.Node, path string, known ...string) (*object, error) {
	if n.Kind != yaml.MappingNode {
		return nil, r.errAt(n, "%s must be a mapping, got %s", orSpec(path), describe(n))
	}
	o := &object{r: r, path: path, node: n, vals: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" && k.Tag != "" {
			return nil, r.errAt(k, "%s: keys must be strings, got %s", path, describe(k))
		}
		if !contains(known, k.Value) {
			return nil, r.errAt(k, "unknown key %q in %s (known: %s)", k.Value, orSpec(path), strings.Join(known, ", "))
		}
		if _, dup := o.vals[k.Value]; dup {
			return nil, r.errAt(k, "key %q appears twice in %s", k.Value, orSpec(path))
		}
		o.vals[k.Value] = v
	}
	return o, nil
}

func orSpec(path string) string {
	if path == "" {
		return "the spec"
	}
	return path
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// key is the full path of one of o's keys, for messages.
func (o *object) key(k string) string {
	if o.path == "" {
		return k
	}
	return o.path + "." + k
}

// get returns a key's value node, nil when absent or null.
func (o *object) get(k string) *yaml.Node {
	if v := o.vals[k]; !isNull(v) {
		return v
	}
	return nil
}

// required returns a key's value node or an error at the mapping naming the key.
func (o *object) required(k string) (*yaml.Node, error) {
	if v := o.get(k); v != nil {
		return v, nil
	}
	return nil, o.r.errAt(o.node, "%s: missing required key %q", orSpec(o.path), k)
}

// requiredStr reads a required string.
func (o *object) requiredStr(k string) (string, *yaml.Node, error) {
	v, err := o.required(k)
	if err != nil {
		return "", nil, err
	}
	s, err := o.r.scalarString(v, o.key(k), false)
	return s, v, err
}

// str reads an optional string.
func (o *object) str(k string) (string, *yaml.Node, error) {
	v := o.get(k)
	if v == nil {
		return "", nil, nil
	}
	s, err := o.r.scalarString(v, o.key(k), false)
	return s, v, err
}

// scalarString reads a string; loose also takes numbers and booleans as their text
// (command arguments and environment values, where `5` means "5").
func (r *reader) scalarString(v *yaml.Node, path string, loose bool) (string, error) {
	if v.Kind == yaml.ScalarNode && (v.Tag == "!!str" || loose && v.Tag != "!!null") {
		return v.Value, nil
	}
	hint := ""
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		hint = fmt.Sprintf(" (quote it: %q)", v.Value)
	}
	return "", r.errAt(v, "%s must be a string, got %s%s", path, describe(v), hint)
}

// integer reads an optional integer.
func (o *object) integer(k string) (int, *yaml.Node, error) {
	v := o.get(k)
	if v == nil {
		return 0, nil, nil
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
		n, err := strconv.Atoi(v.Value)
		if err == nil {
			return n, v, nil
		}
	}
	return 0, v, o.r.errAt(v, "%s must be an integer, got %s", o.key(k), describe(v))
}

// boolean reads an optional boolean.
func (o *object) boolean(k string) (bool, *yaml.Node, error) {
	v := o.get(k)
	if v == nil {
		return false, nil, nil
	}
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		return false, v, o.r.errAt(v, "%s must be true or false, got %s", o.key(k), describe(v))
	}
	return b, v, nil
}

// list reads an optional sequence.
func (o *object) list(k string) ([]*yaml.Node, *yaml.Node, error) {
	v := o.get(k)
	if v == nil {
		return nil, nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, v, o.r.errAt(v, "%s must be a list, got %s", o.key(k), describe(v))
	}
	return v.Content, v, nil
}

// strings reads an optional list of strings (loose: numbers as their text).
func (o *object) strings(k string, loose bool) ([]string, []*yaml.Node, *yaml.Node, error) {
	items, v, err := o.list(k)
	if err != nil {
		return nil, nil, v, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		if out[i], err = o.r.scalarString(it, fmt.Sprintf("%s[%d]", o.key(k), i), loose); err != nil {
			return nil, nil, v, err
		}
	}
	return out, items, v, nil
}

// stringMap reads an optional mapping of string to string (values loose).
func (o *object) stringMap(k string) ([][2]string, *yaml.Node, error) {
	v := o.get(k)
	if v == nil {
		return nil, nil, nil
	}
	if v.Kind != yaml.MappingNode {
		return nil, v, o.r.errAt(v, "%s must be a mapping of names to values, got %s", o.key(k), describe(v))
	}
	var out [][2]string
	for i := 0; i+1 < len(v.Content); i += 2 {
		name, err := o.r.scalarString(v.Content[i], o.key(k)+" key", false)
		if err != nil {
			return nil, v, err
		}
		val, err := o.r.scalarString(v.Content[i+1], o.key(k)+"."+name, true)
		if err != nil {
			return nil, v, err
		}
		out = append(out, [2]string{name, val})
	}
	return out, v, nil
}
