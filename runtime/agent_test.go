package runtime_test

import (
	"context"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// reportingAgent answers every agent stage with a fixed report.
type reportingAgent struct {
	*mock.Provider
	report *runtime.AgentReport
	specs  []runtime.SandboxSpec
}

func (a *reportingAgent) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	a.specs = append(a.specs, spec)
	return a.Provider.Open(ctx, spec)
}

func (a *reportingAgent) RunAgent(ctx context.Context, sb runtime.Sandbox, st *runtime.Stage, input string) (runtime.AgentResult, error) {
	for _, c := range a.report.ToolCalls {
		runtime.ReportToolCall(ctx, c)
	}
	return runtime.AgentResult{Stdout: a.report.Result, Agent: a.report}, nil
}

func agentStage(name string) *runtime.Stage {
	return &runtime.Stage{Name: name, Prompt: "do it", OnFailure: runtime.FailStop,
		LLM: &runtime.LLM{Provider: "claude"}, Skills: []runtime.Skill{{Kind: runtime.SkillAgent, Name: "claude-code"}}}
}

func TestAgentReportInResult(t *testing.T) {
	rep := &runtime.AgentReport{Result: "all done\n", Turns: 2, Model: "claude-x", ToolCalls: []runtime.ToolCall{{Name: "Bash", Input: `{"command":"ls"}`}}}
	a := &reportingAgent{Provider: mock.New(nil), report: rep}
	var tools []string
	res := run(t, &runtime.Executor{Provider: a, OnEvent: func(e runtime.Event) {
		if e.Kind == runtime.EventTool && e.Stage == "think" {
			tools = append(tools, e.Tool.Name+" "+e.Tool.Input)
		}
	}}, agentStage("think"))
	if len(tools) != 1 || tools[0] != `Bash {"command":"ls"}` {
		t.Errorf("tool events %q, want the agent's Bash call as it happened", tools)
	}
	sr := res.Stages["think"]
	if sr.Status != runtime.StatusOK || sr.Output != "all done\n" || sr.Agent != rep {
		t.Fatalf("stage %+v, want succeeded with the agent's result and report", sr)
	}
	if len(a.specs) != 1 || !a.specs[0].Agent || a.specs[0].LLM == nil || a.specs[0].LLM.Provider != "claude" {
		t.Errorf("the sandbox was not told it opens for an agent and its provider: %+v", a.specs)
	}
}

func TestAgentIsErrorFailsTheStage(t *testing.T) {
	rep := &runtime.AgentReport{Result: "API Error: 401 invalid x-api-key", IsError: true}
	a := &reportingAgent{Provider: mock.New(nil), report: rep}
	res := run(t, &runtime.Executor{Provider: a}, agentStage("think"))
	sr := res.Stages["think"]
	if sr.Status != runtime.StatusFailed || !strings.Contains(sr.Error, "API Error: 401 invalid x-api-key") || sr.Agent != rep {
		t.Fatalf("stage %+v, want failed with the agent's error text", sr)
	}
}
