package builtins

import (
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

func TestAgentInRunResult(t *testing.T) {
	res := &runtime.Result{Order: []string{"a", "c"}, Stages: map[string]*runtime.StageResult{
		"a": {Name: "a", Status: runtime.StatusOK, Agent: &runtime.AgentReport{
			Result: "done", Turns: 3, CostUSD: 0.25, InputTokens: 10, OutputTokens: 20, Model: "m", SessionID: "s",
			ToolCalls: []runtime.ToolCall{{Name: "Bash", Input: `{"command":"ls -l","timeout":5}`}, {Name: "Odd", Input: "not json"}}}},
		"c": {Name: "c", Status: runtime.StatusOK},
	}}
	thread := &starlark.Thread{}
	got, err := starlark.EvalOptions(&syntax.FileOptions{}, thread, "<t>", `(r.stages["a"].agent.result, r.stages["a"].agent.turns, r.stages["a"].agent.cost_usd,
 r.stages["a"].agent.tool_calls[0].name, r.stages["a"].agent.tool_calls[0].input["command"], r.stages["a"].agent.tool_calls[0].input["timeout"],
 r.stages["a"].agent.tool_calls[1].input, r.stages["a"].agent.is_error, r.stages["c"].agent)`,
		starlark.StringDict{"r": NewResult(res)})
	if err != nil {
		t.Fatal(err)
	}
	want := `("done", 3, 0.25, "Bash", "ls -l", 5, "not json", False, None)`
	if got.String() != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
