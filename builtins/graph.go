package builtins

import (
	"fmt"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// pipeBuiltin implements pipe(a, b, ...).
func pipeBuiltin(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	elems, err := graphElems(fn.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	return &Pipe{elems: elems}, nil
}

// fanOutBuiltin implements fan_out(a, b, ...).
func fanOutBuiltin(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	elems, err := graphElems(fn.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	return &FanOut{elems: elems}, nil
}

// graphElems checks pipe()/fan_out() arguments: one or more graph values.
func graphElems(name string, args starlark.Tuple, kwargs []starlark.Tuple) ([]starlark.Value, error) {
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: unexpected keyword argument %s; pass boxes, pipes and fan_outs as positional arguments", name, kwargs[0][0])
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: needs at least one box, pipe or fan_out", name)
	}
	for i, a := range args {
		if !isGraph(a) {
			return nil, fmt.Errorf("%s: argument %d must be a box, pipe or fan_out, got %s", name, i+1, a.Type())
		}
	}
	return append([]starlark.Value(nil), args...), nil
}

func isGraph(v starlark.Value) bool {
	switch v.(type) {
	case *Box, *Pipe, *FanOut:
		return true
	}
	return false
}

// ToNode converts a box, pipe or fan_out value into a runtime graph and checks the
// graph-wide rules with runtime.Validate (unique stage names, a box used once).
func ToNode(v starlark.Value) (runtime.Node, error) {
	if !isGraph(v) {
		return nil, fmt.Errorf("want a box, pipe or fan_out, got %s", v.Type())
	}
	n := newConverter().node(v)
	if err := runtime.Validate(n); err != nil {
		return nil, err
	}
	return n, nil
}

// converter is the one place Starlark graph values become runtime types. It makes
// one *runtime.Stage per Box so that a box used twice is the same stage twice,
// which runtime.Validate reports as such (rather than as a name clash).
type converter struct{ stages map[*Box]*runtime.Stage }

func newConverter() *converter { return &converter{stages: map[*Box]*runtime.Stage{}} }

func (c *converter) node(v starlark.Value) runtime.Node {
	switch v := v.(type) {
	case *Box:
		if s, ok := c.stages[v]; ok {
			return s
		}
		s := v.toStage()
		c.stages[v] = s
		return s
	case *Pipe:
		return &runtime.Pipe{Nodes: c.nodes(v.elems)}
	case *FanOut:
		return &runtime.FanOut{Nodes: c.nodes(v.elems)}
	}
	panic(fmt.Sprintf("builtins: converter got %s; graph values are checked when built", v.Type()))
}

func (c *converter) nodes(elems []starlark.Value) []runtime.Node {
	out := make([]runtime.Node, len(elems))
	for i, e := range elems {
		out[i] = c.node(e)
	}
	return out
}
