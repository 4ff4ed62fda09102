package builtins

import (
	"fmt"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

const threeBoxes = `
fetch = box("fetch", cmd = ["a"])
shout = box("shout", cmd = ["b"])
review = box("review", prompt = "p", skills = [skill("agent:claude-code")])
`

func TestGraphArgumentErrors(t *testing.T) {
	runErrCases(t, "p.star", []errCase{
		{"pipe empty", `pipe()`, `pipe: needs at least one box, pipe or fan_out`},
		{"fan_out empty", `fan_out()`, `fan_out: needs at least one box, pipe or fan_out`},
		{"pipe bad arg", threeBoxes + `pipe(fetch, "shout")`, `pipe: argument 2 must be a box, pipe or fan_out, got string`},
		{"fan_out bad arg", threeBoxes + `fan_out(fetch, shout, [review])`, `fan_out: argument 3 must be a box, pipe or fan_out, got list`},
		{"pipe kwarg", threeBoxes + `pipe(fetch, first = shout)`, `pipe: unexpected keyword argument "first"; pass boxes, pipes and fan_outs as positional arguments`},
		{"pipe of skill", `pipe(skill("cli:jq"))`, `pipe: argument 1 must be a box, pipe or fan_out, got skill`},
		{"single", threeBoxes + `pipe(fetch)`, ""},
	})
}

// TestGraphBounds checks that no graph value can be built deeper than runtime.MaxDepth or
// bigger than MaxElements, so str(), .stages and the conversion to runtime types (all
// recursive) stay cheap and shallow whatever the program does.
func TestGraphBounds(t *testing.T) {
	nest := func(fn string, levels int) string {
		return fmt.Sprintf("g = box(\"a\", cmd = [\"x\"])\nfor i in range(%d):\n    g = %s(g)\n", levels, fn)
	}
	runErrCases(t, "p.star", []errCase{
		{"pipe at the limit", nest("pipe", runtime.MaxDepth), ""},
		{"fan_out at the limit", nest("fan_out", runtime.MaxDepth), ""},
		{"pipe too deep", nest("pipe", runtime.MaxDepth+1), `pipe: the graph would nest pipe/fan_out 65 levels deep; at most 64 levels are allowed`},
		{"fan_out too deep", nest("fan_out", 1000), `fan_out: the graph would nest pipe/fan_out 65 levels deep; at most 64 levels are allowed`},
		{"deep branch counts", nest("pipe", runtime.MaxDepth) + "x = fan_out(box(\"b\", cmd = [\"y\"]), g)", `fan_out: the graph would nest pipe/fan_out 65 levels deep; at most 64 levels are allowed`},
		{"shared doubling", "g = box(\"a\", cmd = [\"x\"])\nfor i in range(40):\n    g = pipe(g, g)\n",
			`pipe: the graph would have more than 100000 elements (boxes, pipes and fan_outs, counting a value each time it is used); build smaller graphs and run them one after another`},
		{"wide", "bs = [box(\"b%d\" % i, cmd = [\"x\"]) for i in range(100000)]\nfan_out(*bs)",
			`fan_out: the graph would have more than 100000 elements (boxes, pipes and fan_outs, counting a value each time it is used); build smaller graphs and run them one after another`},
	})
	// At the limit, every walk works: str, .stages, .nodes and conversion.
	g := mustExec(t, "p.star", nest("pipe", runtime.MaxDepth)+"s = str(g)\nn = len(g.stages)\n", nil)
	if want := strings.Repeat("pipe(", runtime.MaxDepth) + "a" + strings.Repeat(")", runtime.MaxDepth); g["s"].String() != `"`+want+`"` {
		t.Errorf("str = %.80s...", g["s"])
	}
	if g["n"].String() != "1" {
		t.Errorf("len(stages) = %s", g["n"])
	}
	n, err := ToNode(g["g"])
	if err != nil || len(n.Stages()) != 1 {
		t.Fatalf("ToNode at the limit: %v", err)
	}
}

func TestGraphConversion(t *testing.T) {
	g := mustExec(t, "p.star", threeBoxes+`
inner = fan_out(shout, pipe(review))
graph = pipe(fetch, inner)
s = str(graph)
t = [type(graph), type(inner)]
names = [b.name for b in graph.stages]
nodes = len(graph.nodes)
`, nil)
	if got := g["s"].String(); got != `"pipe(fetch, fan_out(shout, pipe(review)))"` {
		t.Errorf("str = %s", got)
	}
	if got := g["t"].String(); got != `["pipe", "fan_out"]` {
		t.Errorf("types = %s", got)
	}
	if got := g["names"].String(); got != `["fetch", "shout", "review"]` {
		t.Errorf("stages = %s", got)
	}
	if g["nodes"].String() != "2" {
		t.Errorf("nodes = %s", g["nodes"])
	}
	n, err := ToNode(g["graph"])
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(n); got != "pipe(fetch, fan_out(shout, pipe(review)))" {
		t.Errorf("runtime graph = %s", got)
	}
	p := n.(*runtime.Pipe)
	fan := p.Nodes[1].(*runtime.FanOut)
	if fan.Nodes[1].(*runtime.Pipe).Nodes[0].(*runtime.Stage).Prompt != "p" {
		t.Errorf("nested stage lost its prompt")
	}
	// Each conversion builds fresh stages: the executor may not alias values.
	n2, _ := ToNode(g["graph"])
	if n2.Stages()[0] == n.Stages()[0] {
		t.Errorf("two conversions share a *runtime.Stage")
	}
	// A single box converts to a bare stage.
	single, err := ToNode(g["fetch"])
	if err != nil || describe(single) != "fetch" {
		t.Errorf("ToNode(box) = %v, %v", single, err)
	}
}

func TestToNodeErrors(t *testing.T) {
	if _, err := ToNode(starlark.MakeInt(3)); err == nil || err.Error() != "want a box, pipe or fan_out, got int" {
		t.Errorf("ToNode(int): %v", err)
	}
	g := mustExec(t, "p.star", `
a = box("a", cmd = ["x"])
a2 = box("a", cmd = ["y"])
b = box("b", cmd = ["x"])
twice = pipe(a, fan_out(b, a))
clash = fan_out(a, pipe(b, a2))
`, nil)
	_, err := ToNode(g["twice"])
	if want := `box "a" (declared at p.star:2:8) appears more than once in the graph; declare a second box() with its own name to run it twice`; err == nil || err.Error() != want {
		t.Errorf("box used twice:\n got %v\nwant %s", err, want)
	}
	_, err = ToNode(g["clash"])
	if want := `stage name "a" is used by two boxes (declared at p.star:2:8 and p.star:3:9); stage names must be unique within a graph`; err == nil || err.Error() != want {
		t.Errorf("duplicate names:\n got %v\nwant %s", err, want)
	}
}

func TestGraphValuesUnhashable(t *testing.T) {
	for _, src := range []string{
		threeBoxes + `{pipe(fetch): 1}`,
		threeBoxes + `{fan_out(fetch): 1}`,
		`{skill("cli:jq"): 1}`,
		`{llm.claude(): 1}`,
		`{mount("/", "/d"): 1}`,
	} {
		_, err := exec(t, "p.star", src, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "unhashable type: ") {
			t.Errorf("%s: err = %v, want unhashable", src, err)
		}
	}
}
