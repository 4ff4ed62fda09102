package spec

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// varName is a Starlark variable for a box: its name with other characters as "_".
var notIdent = regexp.MustCompile(`[^a-z0-9_]`)

func varName(name string, used map[string]bool) string {
	v := notIdent.ReplaceAllString(name, "_")
	if v == "" || v[0] >= '0' && v[0] <= '9' {
		v = "box_" + v
	}
	switch v {
	case "pipeline", "box", "step", "skill", "llm", "mount", "pipe", "fan_out", "run", "json", "time", "math", "struct", "args",
		"and", "or", "not", "if", "else", "elif", "for", "in", "def", "return", "pass", "break", "continue", "load", "lambda", "while", "True", "False", "None":
		v += "_box"
	}
	base := v
	for i := 2; used[v]; i++ {
		v = fmt.Sprintf("%s_%d", base, i)
	}
	used[v] = true
	return v
}

// pipeline builds kind pipeline: its boxes, then pipe() of its stages.
func (b *builder) pipeline(top *object, common settings) ([]statement, error) {
	n, err := top.required("pipeline")
	if err != nil {
		return nil, err
	}
	o, err := b.r.object(n, "pipeline", "boxes", "stages")
	if err != nil {
		return nil, err
	}
	items, bn, err := o.list("boxes")
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		where := bn
		if where == nil {
			where = n
		}
		return nil, b.r.errAt(where, "pipeline.boxes must list at least one box")
	}
	var stmts []statement
	vars := map[string]string{} // box name -> variable
	names := []string{}
	used := map[string]bool{}
	for i, it := range items {
		path := fmt.Sprintf("pipeline.boxes[%d]", i)
		bo, err := b.r.object(it, path, "name", "prompt", "skills", "llm", "timeout_secs", "sandbox")
		if err != nil {
			return nil, err
		}
		name, nn, err := bo.requiredStr("name")
		if err != nil {
			return nil, err
		}
		if _, dup := vars[name]; dup {
			return nil, b.r.errAt(nn, "%s: box name %q is used twice in pipeline.boxes; box names must be unique", bo.key("name"), name)
		}
		llmNode, llmPath := top.get("llm"), "llm"
		if ln := bo.get("llm"); ln != nil {
			llmNode, llmPath = ln, bo.key("llm")
		}
		args, err := b.agentArgs(bo, llmNode, llmPath)
		if err != nil {
			return nil, err
		}
		var over *settings
		if sn := bo.get("sandbox"); sn != nil {
			so, err := b.r.object(sn, bo.key("sandbox"), "image", "memory_mb", "vcpus", "network", "env", "mounts")
			if err != nil {
				return nil, err
			}
			st, err := b.settings(so)
			if err != nil {
				return nil, err
			}
			over = &st
		}
		c := &call{fn: "box", at: at(path, it), args: append(append([]arg{{name: "name", val: name, at: at(bo.key("name"), nn)}}, args...), common.args(over)...)}
		v := varName(name, used)
		vars[name] = v
		names = append(names, name)
		stmts = append(stmts, statement{name: v, val: c})
	}
	graph, err := b.stages(o, vars, names)
	if err != nil {
		return nil, err
	}
	return append(stmts, statement{name: "pipeline", expr: ident(graph)}), nil
}

// stages reads pipeline.stages into a pipe() expression; without stages the boxes run
// in the order they are listed.
func (b *builder) stages(o *object, vars map[string]string, names []string) (string, error) {
	items, _, err := o.list("stages")
	if err != nil {
		return "", err
	}
	if len(items) == 0 {
		var vs []string
		for _, name := range names {
			vs = append(vs, vars[name])
		}
		return "pipe(" + strings.Join(vs, ", ") + ")", nil
	}
	usedBy := map[string]string{}
	ref := func(n *yaml.Node, path string) (string, error) {
		name, err := b.r.scalarString(n, path, false)
		if err != nil {
			return "", err
		}
		v, ok := vars[name]
		if !ok {
			return "", b.r.errAt(n, "%s: no box named %q in pipeline.boxes (boxes: %s)", path, name, strings.Join(names, ", "))
		}
		if prev, dup := usedBy[name]; dup {
			return "", b.r.errAt(n, "%s: box %q already runs at %s; a box runs once in a pipeline (declare another box to run it twice)", path, name, prev)
		}
		usedBy[name] = path
		return v, nil
	}
	var parts []string
	for i, it := range items {
		path := fmt.Sprintf("pipeline.stages[%d]", i)
		so, err := b.r.object(it, path, "type", "name", "boxes")
		if err != nil {
			return "", err
		}
		typ, tn, err := so.requiredStr("type")
		if err != nil {
			return "", err
		}
		switch typ {
		case "box":
			if bn := so.get("boxes"); bn != nil {
				return "", b.r.errAt(so.keyNode("boxes"), "%s: a stage of type box names one box with name, not boxes", path)
			}
			nn, err := so.required("name")
			if err != nil {
				return "", err
			}
			v, err := ref(nn, so.key("name"))
			if err != nil {
				return "", err
			}
			parts = append(parts, v)
		case "fan_out":
			if nn := so.get("name"); nn != nil {
				return "", b.r.errAt(so.keyNode("name"), "%s: a stage of type fan_out lists its boxes in boxes, not name", path)
			}
			if _, err := so.required("boxes"); err != nil {
				return "", err
			}
			list, nodes, ln, err := so.strings("boxes", false)
			if err != nil {
				return "", err
			}
			if len(list) == 0 {
				return "", b.r.errAt(ln, "%s must list at least one box", so.key("boxes"))
			}
			var vs []string
			for k, nd := range nodes {
				v, err := ref(nd, fmt.Sprintf("%s[%d]", so.key("boxes"), k))
				if err != nil {
					return "", err
				}
				vs = append(vs, v)
			}
			parts = append(parts, "fan_out("+strings.Join(vs, ", ")+")")
		default:
			return "", b.r.errAt(tn, "%s must be box or fan_out, got %q", so.key("type"), typ)
		}
	}
	return "pipe(" + strings.Join(parts, ", ") + ")", nil
}
