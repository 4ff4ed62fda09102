package builtins

import (
	"fmt"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// pipeBuiltin implements pipe(a, b, ...).
func pipeBuiltin(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	elems, shape, err := graphElems(fn.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	return &Pipe{elems: elems, shape: shape}, nil
}

// fanOutBuiltin implements fan_out(a, b, ...).
func fanOutBuiltin(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	elems, shape, err := graphElems(fn.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	return &FanOut{elems: elems, shape: shape}, nil
}

// MaxElements bounds the boxes, pipes and fan_outs in one graph value, counting an
// element each time it is used. Depth alone does not bound a graph: p = pipe(p, p) ten
// times over shares values and would unfold into 2^10 elements on every walk.
const MaxElements = 100000

// graphShape is what pipe() and fan_out() record about the graph under them, so that
// the next level checks its bounds in constant time instead of walking the graph.
type graphShape struct {
	depth    int // levels of pipe/fan_out nesting, 1 for a pipe of boxes
	elements int // boxes, pipes and fan_outs, each counted once per use
}

func shapeOf(v starlark.Value) graphShape {
	switch v := v.(type) {
	case *Pipe:
		return v.shape
	case *FanOut:
		return v.shape
	}
	return graphShape{depth: 0, elements: 1}
}

// graphElems checks pipe()/fan_out() arguments: one or more graph values, nesting at
// most runtime.MaxDepth levels and holding at most MaxElements. Refusing a deep graph
// when it is built, not only in runtime.Validate, keeps every walk over a graph value
// (str(), .stages, the conversion to runtime types) shallow however it was built.
func graphElems(name string, args starlark.Tuple, kwargs []starlark.Tuple) ([]starlark.Value, graphShape, error) {
	shape := graphShape{elements: 1}
	if len(kwargs) > 0 {
		return nil, shape, fmt.Errorf("%s: unexpected keyword argument %s; pass boxes, pipes and fan_outs as positional arguments", name, kwargs[0][0])
	}
	if len(args) == 0 {
		return nil, shape, fmt.Errorf("%s: needs at least one box, pipe or fan_out", name)
	}
	for i, a := range args {
		if !isGraph(a) {
			return nil, shape, fmt.Errorf("%s: argument %d must be a box, pipe or fan_out, got %s", name, i+1, a.Type())
		}
		s := shapeOf(a)
		shape.depth = max(shape.depth, s.depth+1)
		shape.elements += s.elements // each term is at most MaxElements: no overflow
		if shape.elements > MaxElements {
			return nil, shape, fmt.Errorf("%s: the graph would have more than %d elements (boxes, pipes and fan_outs, counting a value each time it is used); build smaller graphs and run them one after another", name, MaxElements)
		}
	}
	if shape.depth > runtime.MaxDepth {
		return nil, shape, fmt.Errorf("%s: the graph would nest pipe/fan_out %d levels deep; at most %d levels are allowed", name, shape.depth, runtime.MaxDepth)
	}
	return append([]starlark.Value(nil), args...), shape, nil
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
