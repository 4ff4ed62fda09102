package runtime

import (
	"errors"
	"fmt"
)

// MaxDepth is how many levels of pipe()/fan_out() a graph may nest. Each level can
// multiply the size of the data passed on (a fan_out re-encodes its branches' outputs as
// JSON), and the executor walks the graph recursively, so depth is bounded up front;
// 64 is far beyond any pipeline written by hand.
const MaxDepth = 64

// Validate checks graph-wide rules: the graph is not empty and holds no nil or unknown
// node, stage names are unique, a stage (or a pipe/fan_out) appears once, and pipes and
// fan_outs nest at most MaxDepth levels. It walks the graph without recursion and visits
// each node once, so a graph of any depth or sharing is refused in time linear in its
// distinct nodes, without growing the stack.
func Validate(root Node) error {
	if root == nil {
		return errors.New("empty graph")
	}
	type item struct {
		n      Node
		depth  int    // pipe/fan_out levels above n
		parent string // "pipe" or "fan_out"; "" for the root
	}
	stack := []item{{n: root}}
	seen := map[Node]bool{}
	names := map[string]*Stage{}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.n == nil {
			return fmt.Errorf("%s() contains a nil node", it.parent)
		}
		switch n := it.n.(type) {
		case *Stage:
			if n == nil {
				return errors.New("graph contains a nil stage")
			}
			if seen[n] {
				return duplicate(n)
			}
			seen[n] = true
			if prev, ok := names[n.Name]; ok {
				return fmt.Errorf("stage name %q is used by two boxes (declared at %s and %s); stage names must be unique within a graph", n.Name, prev.Pos, n.Pos)
			}
			names[n.Name] = n
		case *Pipe, *FanOut:
			kind, kids, ok := composite(n)
			if !ok {
				return fmt.Errorf("graph contains a nil %s", kind)
			}
			if seen[n] {
				// Its stages would run twice; name the first one, as for a repeated box.
				if s := firstStage(n); s != nil {
					return duplicate(s)
				}
				continue
			}
			seen[n] = true
			if it.depth+1 > MaxDepth {
				depth, s := deepest(n, it.depth+1)
				at := ""
				if s != nil {
					at = fmt.Sprintf(" (at stage %q", s.Name)
					if s.Pos != "" {
						at += " declared at " + s.Pos
					}
					at += ")"
				}
				return fmt.Errorf("graph nests pipe/fan_out %d levels deep%s; at most %d are allowed", depth, at, MaxDepth)
			}
			// Pushed in reverse so they pop in declaration order, which decides which
			// error is reported first, as Stages() order did.
			for i := len(kids) - 1; i >= 0; i-- {
				stack = append(stack, item{n: kids[i], depth: it.depth + 1, parent: kind})
			}
		default:
			return fmt.Errorf("graph contains an unknown node type %T", n)
		}
	}
	return nil
}

func duplicate(s *Stage) error {
	return fmt.Errorf("box %q (declared at %s) appears more than once in the graph; declare a second box() with its own name to run it twice", s.Name, s.Pos)
}

// composite returns a pipe's or fan_out's kind and children; ok is false for a nil
// pointer (and for a stage, which has no children).
func composite(n Node) (kind string, kids []Node, ok bool) {
	switch n := n.(type) {
	case *Pipe:
		if n == nil {
			return "pipe", nil, false
		}
		return "pipe", n.Nodes, true
	case *FanOut:
		if n == nil {
			return "fan_out", nil, false
		}
		return "fan_out", n.Nodes, true
	}
	return "", nil, false
}

// firstStage is the first stage under n in declaration order, or nil when there is
// none. It walks iteratively and visits each node once (a malformed graph built in Go
// may share nodes or even loop).
func firstStage(n Node) *Stage {
	seen := map[Node]bool{}
	stack := []Node{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s, ok := n.(*Stage); ok && s != nil {
			return s
		}
		_, kids, ok := composite(n)
		if !ok || seen[n] {
			continue
		}
		seen[n] = true
		for i := len(kids) - 1; i >= 0; i-- {
			stack = append(stack, kids[i])
		}
	}
	return nil
}

// Depth is how many levels of pipe/fan_out n nests: 0 for a stage, 1 for a pipe of
// stages. It walks iteratively and visits each node once.
func Depth(n Node) int {
	if _, _, ok := composite(n); !ok {
		return 0
	}
	d, _ := deepest(n, 1)
	return d
}

// deepest walks n, a pipe/fan_out at level depth, and returns its deepest level and the
// first stage (in declaration order) directly inside a pipe/fan_out of that level, nil
// when there is none.
func deepest(n Node, depth int) (int, *Stage) {
	type item struct {
		n     Node
		depth int
	}
	maxDepth, at := 0, (*Stage)(nil)
	seen := map[Node]bool{}
	stack := []item{{n, depth}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		_, kids, ok := composite(it.n)
		if !ok || seen[it.n] {
			continue
		}
		seen[it.n] = true
		if it.depth > maxDepth {
			maxDepth, at = it.depth, nil
		}
		if it.depth == maxDepth && at == nil {
			for _, k := range kids {
				if s, ok := k.(*Stage); ok && s != nil {
					at = s
					break
				}
			}
		}
		for i := len(kids) - 1; i >= 0; i-- {
			stack = append(stack, item{kids[i], it.depth + 1})
		}
	}
	return maxDepth, at
}

// validateForRun adds to Validate the structural rules the executor relies on. Validate
// bounds the depth first, so the recursion here is shallow.
func validateForRun(root Node) error {
	if err := Validate(root); err != nil {
		return err
	}
	var check func(n Node) error
	check = func(n Node) error {
		switch n := n.(type) {
		case *Stage:
			kinds := 0
			for _, set := range []bool{len(n.Cmd) > 0, n.Prompt != "", len(n.Steps) > 0} {
				if set {
					kinds++
				}
			}
			if kinds != 1 {
				return fmt.Errorf("box %q (declared at %s): set exactly one of cmd=, prompt= or steps=", n.Name, n.Pos)
			}
			if len(n.Steps) > 0 {
				if err := ValidateSteps(n.Steps, n.OutputStep); err != nil {
					return fmt.Errorf("box %q (declared at %s): %w", n.Name, n.Pos, err)
				}
			}
			return nil
		default:
			kind, kids, _ := composite(n)
			if len(kids) == 0 {
				return fmt.Errorf("%s() needs at least one stage", kind)
			}
			for _, c := range kids {
				if err := check(c); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return check(root)
}
