package spec

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// builder turns a spec's YAML into the statements of its .star program.
type builder struct {
	r   *reader
	dir string // the spec's directory
}

func at(path string, n *yaml.Node) origin { return origin{path: path, node: n} }

// sections says which top-level sections each kind takes.
var sections = map[string][]string{
	KindAgent:    {"agent", "llm"},
	KindPipeline: {"pipeline", "llm"},
	KindWorkflow: {"workflow"},
	KindSandbox:  {},
}

// header reads api_version, kind, name and the sandbox section's own settings.
func (b *builder) header(top *object) (*Spec, error) {
	s := &Spec{Mode: ModeAuto, at: map[string]*yaml.Node{}}
	v, vn, err := top.str("api_version")
	if err != nil {
		return nil, err
	}
	if vn != nil && v != "v1" {
		return nil, b.r.errAt(vn, "api_version %q is not supported; use v1", v)
	}
	kn, err := top.required("kind")
	if err != nil {
		return nil, err
	}
	if s.Kind, err = b.r.scalarString(kn, "kind", false); err != nil {
		return nil, err
	}
	allowed, ok := sections[s.Kind]
	if !ok {
		return nil, b.r.errAt(kn, "unknown kind %q (known: agent, pipeline, workflow, sandbox)", s.Kind)
	}
	for _, sec := range []string{"agent", "pipeline", "workflow", "llm"} {
		if n := top.get(sec); n != nil && !contains(allowed, sec) {
			return nil, b.r.errAt(top.keyNode(sec), "a spec of kind %s takes no %s section (%s)", s.Kind, sec, sectionHint(sec))
		}
	}
	nn, err := top.required("name")
	if err != nil {
		return nil, err
	}
	if s.Name, err = b.r.scalarString(nn, "name", false); err != nil {
		return nil, err
	}
	sb := top.get("sandbox")
	if sb == nil {
		return s, nil
	}
	o, err := b.r.object(sb, "sandbox", "mode", "kernel", "initramfs", "guest_image", "image", "memory_mb", "vcpus", "network", "env", "mounts")
	if err != nil {
		return nil, err
	}
	mode, mn, err := o.str("mode")
	if err != nil {
		return nil, err
	}
	if mn != nil {
		switch mode {
		case ModeAuto, ModeLocal, ModeMock:
			s.Mode = mode
		default:
			return nil, b.r.errAt(mn, "sandbox.mode must be auto, local or mock, got %q", mode)
		}
		s.at["sandbox.mode"] = mn
	}
	for _, f := range []struct {
		key  string
		dst  *string
		path bool
	}{{"kernel", &s.Kernel, true}, {"initramfs", &s.Initramfs, true}, {"guest_image", &s.GuestImage, false}} {
		v, n, err := o.str(f.key)
		if err != nil {
			return nil, err
		}
		if n == nil {
			continue
		}
		if v == "" {
			return nil, b.r.errAt(n, "sandbox.%s must not be empty; remove it to use the default", f.key)
		}
		if f.path && !filepath.IsAbs(v) {
			v = filepath.Join(b.dir, v)
		}
		if f.path {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
		}
		*f.dst = v
		s.at["sandbox."+f.key] = n
	}
	return s, nil
}

func sectionHint(sec string) string {
	switch sec {
	case "llm":
		return "llm is for kinds agent and pipeline, whose boxes run a model"
	case "agent":
		return "it belongs to kind agent"
	}
	return "it belongs to kind " + sec
}

// keyNode is the key node of k in o (for errors about the key itself).
func (o *object) keyNode(k string) *yaml.Node {
	for i := 0; i+1 < len(o.node.Content); i += 2 {
		if o.node.Content[i].Value == k {
			return o.node.Content[i]
		}
	}
	return o.node
}

// body builds the program's statements for the spec's kind.
func (b *builder) body(top *object, s *Spec) ([]statement, error) {
	common, err := b.sandboxArgs(top.get("sandbox"))
	if err != nil {
		return nil, err
	}
	nameArg := arg{name: "name", val: s.Name, at: at("name", top.get("name"))}
	switch s.Kind {
	case KindAgent:
		return b.agent(top, nameArg, common)
	case KindPipeline:
		return b.pipeline(top, common)
	case KindWorkflow:
		return b.workflow(top, nameArg, common)
	}
	// kind sandbox: the original boots a sandbox and waits for someone to attach. voidbox
	// has no attach, so the sandbox runs a shell that reads its script from the input
	// (--input), and the shell's output is the run's output.
	c := &call{fn: "box", at: at("kind", top.get("kind")), args: append([]arg{nameArg, {name: "cmd", val: []any{"sh"}, at: at("kind", top.get("kind"))}}, common.args(nil)...)}
	return []statement{{name: "pipeline", val: c}}, nil
}

// settings are a box's sandbox arguments: from the spec's sandbox section, and for a
// pipeline box from its own override.
type settings struct {
	scalars []arg // image, memory_mb, vcpus, network
	env     dict
	envAt   origin
	mounts  []any
	mountAt origin
}

// args are the settings as box() arguments, with over's on top: its scalars replace
// ours, its env entries are added to (and override) ours, its mounts follow ours.
func (st settings) args(over *settings) []arg {
	merged := st
	if over != nil {
		merged.scalars = nil
		for _, a := range st.scalars {
			if !hasArg(over.scalars, a.name) {
				merged.scalars = append(merged.scalars, a)
			}
		}
		merged.scalars = append(merged.scalars, over.scalars...)
		merged.env = mergeEnv(st.env, over.env)
		if len(over.env) > 0 {
			merged.envAt = over.envAt
		}
		merged.mounts = append(append([]any{}, st.mounts...), over.mounts...)
		if len(over.mounts) > 0 {
			merged.mountAt = over.mountAt
		}
	}
	out := append([]arg{}, merged.scalars...)
	if len(merged.env) > 0 {
		out = append(out, arg{name: "env", val: merged.env, at: merged.envAt})
	}
	if len(merged.mounts) > 0 {
		out = append(out, arg{name: "mounts", val: merged.mounts, at: merged.mountAt})
	}
	return out
}

func hasArg(args []arg, name string) bool {
	for _, a := range args {
		if a.name == name {
			return true
		}
	}
	return false
}

func mergeEnv(base, over dict) dict {
	out := dict{}
	for _, kv := range base {
		replaced := false
		for _, o := range over {
			replaced = replaced || o[0] == kv[0]
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}

// sandboxArgs reads the box settings of the top-level sandbox section.
func (b *builder) sandboxArgs(n *yaml.Node) (settings, error) {
	if n == nil {
		return settings{}, nil
	}
	o, err := b.r.object(n, "sandbox", "mode", "kernel", "initramfs", "guest_image", "image", "memory_mb", "vcpus", "network", "env", "mounts")
	if err != nil {
		return settings{}, err
	}
	return b.settings(o)
}

// settings reads image, memory_mb, vcpus, network, env and mounts from o.
func (b *builder) settings(o *object) (settings, error) {
	var st settings
	if v, n, err := o.str("image"); err != nil {
		return st, err
	} else if n != nil {
		st.scalars = append(st.scalars, arg{name: "image", val: v, at: at(o.key("image"), n)})
	}
	for _, k := range []string{"memory_mb", "vcpus"} {
		v, n, err := o.integer(k)
		if err != nil {
			return st, err
		}
		if n != nil {
			st.scalars = append(st.scalars, arg{name: k, val: v, at: at(o.key(k), n)})
		}
	}
	if v, n, err := o.boolean("network"); err != nil {
		return st, err
	} else if n != nil {
		st.scalars = append(st.scalars, arg{name: "network", val: v, at: at(o.key("network"), n)})
	}
	env, en, err := o.stringMap("env")
	if err != nil {
		return st, err
	}
	st.env, st.envAt = env, at(o.key("env"), en)
	items, mn, err := o.list("mounts")
	if err != nil {
		return st, err
	}
	st.mountAt = at(o.key("mounts"), mn)
	for i, it := range items {
		path := fmt.Sprintf("%s[%d]", o.key("mounts"), i)
		m, err := b.r.object(it, path, "host", "guest", "mode")
		if err != nil {
			return st, err
		}
		c := &call{fn: "mount", at: at(path, it)}
		for _, k := range []string{"host", "guest", "mode"} {
			v, n, err := m.str(k)
			if err != nil {
				return st, err
			}
			if n == nil && k != "mode" {
				return st, b.r.errAt(it, "%s: missing required key %q", path, k)
			}
			if n != nil {
				c.args = append(c.args, arg{name: k, val: v, at: at(m.key(k), n)})
			}
		}
		st.mounts = append(st.mounts, c)
	}
	return st, nil
}

// timeoutArg reads timeout_secs as box()'s or step()'s timeout.
func (b *builder) timeoutArg(o *object) ([]arg, error) {
	secs, n, err := o.integer("timeout_secs")
	if err != nil || n == nil {
		return nil, err
	}
	if secs <= 0 || secs > int(24*time.Hour/time.Second)*365 {
		return nil, b.r.errAt(n, "%s must be a positive number of seconds, got %d", o.key("timeout_secs"), secs)
	}
	return []arg{{name: "timeout", val: fmt.Sprintf("%ds", secs), at: at(o.key("timeout_secs"), n)}}, nil
}

// agent builds kind agent: one agent box.
func (b *builder) agent(top *object, nameArg arg, common settings) ([]statement, error) {
	n, err := top.required("agent")
	if err != nil {
		return nil, err
	}
	o, err := b.r.object(n, "agent", "prompt", "skills", "timeout_secs", "output_file", "mode")
	if err != nil {
		return nil, err
	}
	if mode, mn, err := o.str("mode"); err != nil {
		return nil, err
	} else if mn != nil && mode != "task" {
		return nil, b.r.errAt(mn, "agent.mode %q is not supported: voidbox runs an agent as a task (mode: task) that ends with its answer", mode)
	}
	args, err := b.agentArgs(o, top.get("llm"), "llm")
	if err != nil {
		return nil, err
	}
	if f, fn, err := o.str("output_file"); err != nil {
		return nil, err
	} else if fn != nil {
		args = append(args, arg{name: "output_file", val: f, at: at("agent.output_file", fn)})
	}
	c := &call{fn: "box", at: at("agent", n), args: append(append([]arg{nameArg}, args...), common.args(nil)...)}
	return []statement{{name: "pipeline", val: c}}, nil
}

// agentArgs reads prompt, skills, llm and timeout_secs of an agent or a pipeline box.
func (b *builder) agentArgs(o *object, llmNode *yaml.Node, llmPath string) ([]arg, error) {
	prompt, pn, err := o.requiredStr("prompt")
	if err != nil {
		return nil, err
	}
	args := []arg{{name: "prompt", val: prompt, at: at(o.key("prompt"), pn)}}
	skills, err := b.skills(o)
	if err != nil {
		return nil, err
	}
	args = append(args, skills)
	if llmNode != nil {
		l, err := b.llm(llmNode, llmPath)
		if err != nil {
			return nil, err
		}
		args = append(args, arg{name: "llm", val: l, at: l.at})
	}
	t, err := b.timeoutArg(o)
	return append(args, t...), err
}

// skills reads an agent's skills. The original runs claude-code when no agent skill is
// named, so one is added then.
func (b *builder) skills(o *object) (arg, error) {
	items, n, err := o.list("skills")
	if err != nil {
		return arg{}, err
	}
	where := at(o.key("skills"), n)
	if n == nil {
		where = at(o.path, o.node)
	}
	var vals []any
	hasAgent := false
	for i, it := range items {
		path := fmt.Sprintf("%s[%d]", o.key("skills"), i)
		if it.Kind == yaml.ScalarNode {
			s, err := b.r.scalarString(it, path, false)
			if err != nil {
				return arg{}, err
			}
			hasAgent = hasAgent || strings.HasPrefix(s, "agent:")
			vals = append(vals, &call{fn: "skill", at: at(path, it), args: []arg{{val: s, at: at(path, it)}}})
			continue
		}
		so, err := b.r.object(it, path, "image", "mount", "readonly")
		if err != nil {
			return arg{}, err
		}
		c := &call{fn: "skill", at: at(path, it)}
		for _, k := range []string{"image", "mount"} {
			kn, err := so.required(k)
			if err != nil {
				return arg{}, err
			}
			v, err := b.r.scalarString(kn, so.key(k), false)
			if err != nil {
				return arg{}, err
			}
			c.args = append(c.args, arg{name: k, val: v, at: at(so.key(k), kn)})
		}
		if ro, rn, err := so.boolean("readonly"); err != nil {
			return arg{}, err
		} else if rn != nil && !ro {
			return arg{}, b.r.errAt(rn, "%s: image skills are always mounted read-only; remove readonly: false", so.key("readonly"))
		}
		vals = append(vals, c)
	}
	if !hasAgent {
		vals = append([]any{&call{fn: "skill", at: where, args: []arg{{val: "agent:claude-code", at: where}}}}, vals...)
	}
	return arg{name: "skills", val: vals, at: where}, nil
}

// llm reads an llm section as llm.claude(), llm.ollama() or llm.custom().
func (b *builder) llm(n *yaml.Node, path string) (*call, error) {
	o, err := b.r.object(n, path, "provider", "model", "base_url", "api_key_env")
	if err != nil {
		return nil, err
	}
	provider, pn, err := o.requiredStr("provider")
	if err != nil {
		return nil, err
	}
	vals := map[string]string{}
	nodes := map[string]*yaml.Node{}
	for _, k := range []string{"model", "base_url", "api_key_env"} {
		v, vn, err := o.str(k)
		if err != nil {
			return nil, err
		}
		if vn != nil {
			vals[k], nodes[k] = v, vn
		}
	}
	c := &call{at: at(path, n)}
	add := func(keys ...string) {
		for _, k := range keys {
			if v, ok := vals[k]; ok {
				c.args = append(c.args, arg{name: k, val: v, at: at(o.key(k), nodes[k])})
			}
		}
	}
	refuse := func(k string) error {
		if vn := nodes[k]; vn != nil {
			return b.r.errAt(vn, "%s: provider %s takes no %s", o.key(k), provider, k)
		}
		return nil
	}
	switch provider {
	case "claude":
		if _, custom := vals["base_url"]; custom || vals["api_key_env"] != "" && vals["api_key_env"] != "ANTHROPIC_API_KEY" {
			// Another endpoint or key speaking Anthropic's API: llm.custom says both.
			c.fn = "llm.custom"
			if _, ok := vals["base_url"]; !ok {
				vals["base_url"], nodes["base_url"] = "https://api.anthropic.com", n
			}
			if _, ok := vals["model"]; !ok {
				vals["model"], nodes["model"] = "claude-sonnet-4-5", n
			}
			if _, ok := vals["api_key_env"]; !ok {
				vals["api_key_env"], nodes["api_key_env"] = "ANTHROPIC_API_KEY", n
			}
			add("base_url", "model", "api_key_env")
			return c, nil
		}
		c.fn = "llm.claude"
		add("model")
	case "ollama":
		c.fn = "llm.ollama"
		if err := refuse("api_key_env"); err != nil {
			return nil, err
		}
		add("model", "base_url")
	case "custom":
		c.fn = "llm.custom"
		add("base_url", "model", "api_key_env")
	default:
		return nil, b.r.errAt(pn, "%s %q is not supported (supported: claude, ollama, custom)", o.key("provider"), provider)
	}
	return c, nil
}
