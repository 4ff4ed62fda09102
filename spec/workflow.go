package spec

import (
	"errors"
	"fmt"

	"github.com/voidbox/voidbox/runtime"
	"gopkg.in/yaml.v3"
)

// workflow builds kind workflow: one box whose steps share its sandbox.
func (b *builder) workflow(top *object, nameArg arg, common settings) ([]statement, error) {
	n, err := top.required("workflow")
	if err != nil {
		return nil, err
	}
	o, err := b.r.object(n, "workflow", "steps", "output_step")
	if err != nil {
		return nil, err
	}
	items, sn, err := o.list("steps")
	if err != nil {
		return nil, err
	}
	var steps []runtime.Step
	var calls []any
	type stepNodes struct {
		o     *object
		name  *yaml.Node
		prog  *yaml.Node
		stdin *yaml.Node
		deps  []*yaml.Node
	}
	var nodes []stepNodes
	for i, it := range items {
		path := fmt.Sprintf("workflow.steps[%d]", i)
		so, err := b.r.object(it, path, "name", "run", "depends_on", "timeout_secs")
		if err != nil {
			return nil, err
		}
		name, nn, err := so.requiredStr("name")
		if err != nil {
			return nil, err
		}
		rn, err := so.required("run")
		if err != nil {
			return nil, err
		}
		ro, err := b.r.object(rn, so.key("run"), "program", "args", "stdin_from")
		if err != nil {
			return nil, err
		}
		program, pn, err := ro.requiredStr("program")
		if err != nil {
			return nil, err
		}
		args, _, _, err := ro.strings("args", true)
		if err != nil {
			return nil, err
		}
		stdin, stdinNode, err := ro.str("stdin_from")
		if err != nil {
			return nil, err
		}
		deps, depNodes, dn, err := so.strings("depends_on", false)
		if err != nil {
			return nil, err
		}
		st := runtime.Step{Name: name, Args: append([]string{program}, args...), DependsOn: deps, StdinFrom: stdin}
		steps = append(steps, st)
		nodes = append(nodes, stepNodes{o: so, name: nn, prog: pn, stdin: stdinNode, deps: depNodes})
		c := &call{fn: "step", at: at(path, it), args: []arg{
			{name: "name", val: name, at: at(so.key("name"), nn)},
			{name: "cmd", val: toAny(st.Args), at: at(ro.key("program"), pn)},
		}}
		if len(deps) > 0 {
			c.args = append(c.args, arg{name: "depends_on", val: toAny(deps), at: at(so.key("depends_on"), dn)})
		}
		if stdinNode != nil {
			c.args = append(c.args, arg{name: "stdin_from", val: stdin, at: at(ro.key("stdin_from"), stdinNode)})
		}
		t, err := b.timeoutArg(so)
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, t...)
		calls = append(calls, c)
	}
	output, on, err := o.str("output_step")
	if err != nil {
		return nil, err
	}
	if err := runtime.ValidateSteps(steps, output); err != nil {
		var se *runtime.StepError
		if !errors.As(err, &se) {
			return nil, err
		}
		switch {
		case se.Field == "output_step":
			return nil, b.r.errAt(on, "workflow.output_step: %s", se.Msg)
		case se.Step < 0:
			where := sn
			if where == nil {
				where = n
			}
			return nil, b.r.errAt(where, "workflow.steps: %s", se.Msg)
		}
		sn := nodes[se.Step]
		node, path := sn.name, sn.o.key("name")
		switch se.Field {
		case "args":
			node, path = sn.prog, sn.o.key("run.program")
		case "depends_on":
			node, path = sn.deps[se.Index], fmt.Sprintf("%s[%d]", sn.o.key("depends_on"), se.Index)
		case "stdin_from":
			node, path = sn.stdin, sn.o.key("run.stdin_from")
		}
		return nil, b.r.errAt(node, "%s: %s", path, se.Msg)
	}
	args := []arg{nameArg, {name: "steps", val: calls, at: at("workflow.steps", sn)}}
	if on != nil {
		args = append(args, arg{name: "output_step", val: output, at: at("workflow.output_step", on)})
	}
	c := &call{fn: "box", at: at("workflow", n), args: append(args, common.args(nil)...)}
	return []statement{{name: "pipeline", val: c}}, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
