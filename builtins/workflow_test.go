package builtins

import (
	"reflect"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

func TestWorkflowBoxErrors(t *testing.T) {
	a, b := `step("a", ["echo", "hi"])`, `step("b", ["cat"], depends_on = ["a"], stdin_from = "a")`
	runErrCases(t, "w.star", []errCase{
		{"ok", `box("w", steps = [` + a + `, ` + b + `], output_step = "a")`, ""},
		{"ok tuple", `box("w", steps = (` + a + `,), memory_mb = 64, env = {"X": "1"}, allow = ["echo"])`, ""},
		{"step name", `step("A", ["x"])`, `step: name "A" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)`},
		{"step cmd type", `step("a", "echo")`, `step: cmd must be a list of strings, got string`},
		{"step cmd empty", `step("a", [])`, `step: cmd must start with the program to run, e.g. ["tr", "a-z", "A-Z"]`},
		{"step depends type", `step("a", ["x"], depends_on = "b")`, `step: depends_on must be a list of strings, got string`},
		{"step stdin type", `step("a", ["x"], stdin_from = 1)`, `step: stdin_from must be a string, got int`},
		{"step timeout", `step("a", ["x"], timeout = "5x")`, `step: timeout "5x" is not a duration (use Go syntax like "10m", "90s", "1h30m")`},
		{"steps type", `box("w", steps = [1])`, `box: steps[0] must be a step (from step()), got int`},
		{"steps empty", `box("w", steps = [])`, `box: steps must not be empty; give at least one step(...)`},
		{"steps and cmd", `box("w", cmd = ["x"], steps = [` + a + `])`, `box: give one of cmd (a command box), prompt (an agent box) or steps (a workflow box), not several`},
		{"steps and llm", `box("w", steps = [` + a + `], llm = llm.claude())`, `box: llm is for an agent box (prompt=); a workflow box runs no model: remove llm`},
		{"output_step without steps", `box("w", cmd = ["x"], output_step = "a")`, `box: output_step names a step of steps=; this box has no steps`},
		{"output_step unknown", `box("w", steps = [` + a + `], output_step = "z")`, `box: output_step "z" is not a step (steps: a)`},
		{"cycle", `box("w", steps = [step("a", ["x"], depends_on = ["b"]), step("b", ["x"], depends_on = ["a"])])`, `box: steps form a cycle through depends_on: a -> b -> a`},
		{"stdin not a dependency", `box("w", steps = [` + a + `, step("b", ["cat"], stdin_from = "a")])`, `box: step "b" reads stdin from "a", which it does not depend on; add "a" to its depends_on`},
		{"output_file on command", `box("w", cmd = ["x"], output_file = "/workspace/o")`, `box: output_file is for an agent box (prompt=): the file the agent writes its result to`},
		{"output_file path", `box("w", prompt = "p", ` + agent + `, output_file = "out.md")`, `box: output_file "out.md" must be a clean absolute path under /workspace/, e.g. "/workspace/report.md"`},
		{"output_file ok", `box("w", prompt = "p", ` + agent + `, output_file = "/workspace/out.md")`, ""},
	})
}

func TestWorkflowBoxValue(t *testing.T) {
	g := mustExec(t, "w.star", `
s = step("b", ["cat"], depends_on = ["a"], stdin_from = "a", timeout = "5s")
w = box("w", steps = [step("a", ["echo", "hi"]), s], output_step = "a")
attrs = [s.name, s.cmd, s.depends_on, s.stdin_from, s.timeout, w.output_step, w.steps[0].timeout, w.cmd, w.output_file]
`, nil)
	if got, want := g["attrs"].String(), `["b", ["cat"], ["a"], "a", "5s", "a", None, None, None]`; got != want {
		t.Errorf("attrs = %s, want %s", got, want)
	}
	n, err := ToNode(g["w"])
	if err != nil {
		t.Fatal(err)
	}
	st := n.(*runtime.Stage)
	want := []runtime.Step{
		{Name: "a", Args: []string{"echo", "hi"}},
		{Name: "b", Args: []string{"cat"}, DependsOn: []string{"a"}, StdinFrom: "a", Timeout: 5 * time.Second},
	}
	if !reflect.DeepEqual(st.Steps, want) || st.OutputStep != "a" {
		t.Errorf("stage steps %+v output %q, want %+v output a", st.Steps, st.OutputStep, want)
	}
}
