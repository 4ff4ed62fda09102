package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/local"
	"github.com/voidbox/voidbox/sandbox/mock"
)

func workflow(name string, steps ...runtime.Step) *runtime.Stage {
	return &runtime.Stage{Name: name, Steps: steps, OnFailure: runtime.FailStop, Timeout: 20 * time.Second}
}

func sh(name, script string, deps ...string) runtime.Step {
	return runtime.Step{Name: name, Args: []string{"sh", "-c", script}, DependsOn: deps}
}

// countingProvider wraps a provider and counts the sandboxes it opened.
type countingProvider struct {
	runtime.Provider
	opened int
}

func (p *countingProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	p.opened++
	return p.Provider.Open(ctx, spec)
}

// The diamond: b and c depend on a, d on both. b and c each wait for a file the other
// creates, so both succeed only if they run at the same time; d reads a file a wrote
// in the sandbox, so all four shared one sandbox; c's stdin is a's stdout.
func TestWorkflowDiamondConcurrentInOneSandbox(t *testing.T) {
	wait := func(f string) string {
		return "i=0; while [ ! -e " + f + " ]; do i=$((i+1)); [ $i -gt 100 ] && { echo timed out waiting for " + f + " >&2; exit 7; }; sleep 0.05; done"
	}
	a := sh("a", "echo from-a > $VOIDBOX_WORKSPACE/shared; echo alpha")
	b := sh("b", "touch $VOIDBOX_WORKSPACE/b-started; "+wait("$VOIDBOX_WORKSPACE/c-started")+"; echo b-done", "a")
	c := sh("c", "touch $VOIDBOX_WORKSPACE/c-started; "+wait("$VOIDBOX_WORKSPACE/b-started")+"; tr a-z A-Z", "a")
	c.StdinFrom = "a"
	d := sh("d", "cat; cat $VOIDBOX_WORKSPACE/shared", "b", "c")
	d.StdinFrom = "c"
	p := &countingProvider{Provider: local.New(io.Discard)}
	res := run(t, &runtime.Executor{Provider: p}, workflow("diamond", a, b, c, d))
	if !res.OK {
		t.Fatalf("run failed: %s; stages: %+v", res.Error, res.Stages["diamond"])
	}
	if got, want := res.Output, "ALPHA\nfrom-a\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if p.opened != 1 {
		t.Errorf("opened %d sandboxes, want 1", p.opened)
	}
	sr := res.Stages["diamond"]
	var names []string
	for _, st := range sr.Steps {
		names = append(names, st.Name+":"+string(st.Status))
		if st.ExitCode == nil || *st.ExitCode != 0 {
			t.Errorf("step %s exit code %v, want 0", st.Name, st.ExitCode)
		}
	}
	if got := strings.Join(names, " "); got != "a:ok b:ok c:ok d:ok" {
		t.Errorf("steps %s", got)
	}
	doc, err := json.Marshal(sr)
	if err != nil || !strings.Contains(string(doc), `"steps":[{"name":"a","status":"ok","exit_code":0,`) {
		t.Errorf("stage JSON %s (%v) lacks the steps", doc, err)
	}
	// Each step is an exec phase of the one attempt, b and c overlapping in time.
	execs := map[string]runtime.Phase{}
	for _, ph := range sr.Phases {
		if ph.Name == runtime.PhaseExec {
			execs[ph.Detail] = ph
		}
	}
	pb, pc := execs["step b"], execs["step c"]
	if len(execs) != 4 || pb.Attempt != 1 || pc.Attempt != 1 {
		t.Fatalf("exec phases %+v, want one per step of attempt 1", execs)
	}
	if pb.Start.After(pc.Start.Add(pc.Duration)) || pc.Start.After(pb.Start.Add(pb.Duration)) {
		t.Errorf("phases of steps b (%s+%s) and c (%s+%s) do not overlap", pb.Start, pb.Duration, pc.Start, pc.Duration)
	}
}

func TestWorkflowOutputStepAndFailure(t *testing.T) {
	p := local.New(io.Discard)
	st := workflow("w", sh("one", "echo one"), sh("two", "echo two", "one"))
	st.OutputStep = "one"
	res := run(t, &runtime.Executor{Provider: p}, st)
	if !res.OK || res.Output != "one\n" {
		t.Fatalf("output_step one: ok=%v output %q error %q", res.OK, res.Output, res.Error)
	}

	// A failing step fails the stage naming it; the step running beside it is
	// cancelled and the one after it skipped.
	slow := sh("slow", "sleep 30")
	res = run(t, &runtime.Executor{Provider: p}, workflow("w",
		sh("bad", "echo boom >&2; exit 3"), slow, sh("after", "echo never", "bad")))
	if res.OK {
		t.Fatal("run ok, want the failure of step bad")
	}
	if want := "stage w: step bad: exit code 3: boom"; res.Error != want {
		t.Errorf("error %q, want %q", res.Error, want)
	}
	got := map[string]runtime.StageStatus{}
	for _, s := range res.Stages["w"].Steps {
		got[s.Name] = s.Status
	}
	want := map[string]runtime.StageStatus{"bad": runtime.StatusFailed, "slow": runtime.StatusCanceled, "after": runtime.StatusSkipped}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("step %s: %s, want %s", k, got[k], v)
		}
	}
	if ec := res.Stages["w"].ExitCode; ec == nil || *ec != 3 {
		t.Errorf("stage exit code %v, want the failed step's 3", ec)
	}
}

func TestWorkflowTimeouts(t *testing.T) {
	p := local.New(io.Discard)
	step := sh("slow", "sleep 30")
	step.Timeout = 200 * time.Millisecond
	res := run(t, &runtime.Executor{Provider: p}, workflow("w", step))
	if want := "stage w: step slow: timed out after 200ms"; res.Error != want {
		t.Errorf("step timeout: error %q, want %q", res.Error, want)
	}
	st := workflow("w", sh("slow", "sleep 30"))
	st.Timeout = 300 * time.Millisecond
	res = run(t, &runtime.Executor{Provider: p}, st)
	if want := "stage w: timed out after 300ms"; res.Error != want {
		t.Errorf("stage timeout: error %q, want %q", res.Error, want)
	}
}

func TestWorkflowRefusedByValidate(t *testing.T) {
	bad := workflow("w", sh("a", "true", "b"), sh("b", "true", "a"))
	_, err := (&runtime.Executor{Provider: mock.New(nil)}).Run(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "steps form a cycle through depends_on: a -> b -> a") {
		t.Errorf("Run error %v, want the cycle", err)
	}
}

func TestValidateSteps(t *testing.T) {
	step := func(name string, deps ...string) runtime.Step {
		return runtime.Step{Name: name, Args: []string{"true"}, DependsOn: deps}
	}
	withStdin := func(s runtime.Step, from string) runtime.Step { s.StdinFrom = from; return s }
	cases := []struct {
		name   string
		steps  []runtime.Step
		output string
		want   runtime.StepError
	}{
		{"none", nil, "", runtime.StepError{Step: -1, Field: "steps", Index: -1, Msg: "a workflow needs at least one step"}},
		{"unnamed", []runtime.Step{step("")}, "", runtime.StepError{Step: 0, Field: "name", Index: -1, Msg: "step 1 has no name"}},
		{"no program", []runtime.Step{{Name: "a"}}, "", runtime.StepError{Step: 0, Field: "args", Index: -1, Msg: `step "a" has no program to run`}},
		{"duplicate", []runtime.Step{step("a"), step("a")}, "", runtime.StepError{Step: 1, Field: "name", Index: -1, Msg: `step name "a" is used by steps 1 and 2; step names must be unique`}},
		{"unknown dep", []runtime.Step{step("a"), step("b", "a", "zz")}, "", runtime.StepError{Step: 1, Field: "depends_on", Index: 1, Msg: `step "b" depends on "zz", which is not a step (steps: a, b)`}},
		{"self", []runtime.Step{step("a", "a")}, "", runtime.StepError{Step: 0, Field: "depends_on", Index: 0, Msg: `step "a" depends on itself`}},
		{"twice", []runtime.Step{step("a"), step("b", "a", "a")}, "", runtime.StepError{Step: 1, Field: "depends_on", Index: 1, Msg: `step "b" lists "a" twice in depends_on`}},
		{"cycle", []runtime.Step{step("a", "c"), step("b", "a"), step("c", "b")}, "", runtime.StepError{Step: 1, Field: "depends_on", Index: 0, Msg: "steps form a cycle through depends_on: a -> c -> b -> a"}},
		{"stdin unknown", []runtime.Step{withStdin(step("a"), "x")}, "", runtime.StepError{Step: 0, Field: "stdin_from", Index: -1, Msg: `step "a" reads stdin from "x", which is not a step (steps: a)`}},
		{"stdin not a dependency", []runtime.Step{step("a"), withStdin(step("b"), "a")}, "", runtime.StepError{Step: 1, Field: "stdin_from", Index: -1, Msg: `step "b" reads stdin from "a", which it does not depend on; add "a" to its depends_on`}},
		{"output", []runtime.Step{step("a")}, "b", runtime.StepError{Step: -1, Field: "output_step", Index: -1, Msg: `output_step "b" is not a step (steps: a)`}},
	}
	for _, c := range cases {
		err := runtime.ValidateSteps(c.steps, c.output)
		var se *runtime.StepError
		if !errors.As(err, &se) || *se != c.want {
			t.Errorf("%s: got %#v, want %#v", c.name, err, c.want)
		}
	}
	// stdin_from a transitive dependency is fine.
	ok := []runtime.Step{step("a"), step("b", "a"), withStdin(step("c", "b"), "a")}
	if err := runtime.ValidateSteps(ok, "c"); err != nil {
		t.Errorf("transitive stdin_from: %v", err)
	}
}

func TestAgentOutputFile(t *testing.T) {
	st := &runtime.Stage{Name: "agent", Prompt: "p", OutputFile: "/workspace/out.md", OnFailure: runtime.FailStop}
	res := run(t, &runtime.Executor{Provider: mock.New(nil)}, st)
	want := "stage agent: output_file /workspace/out.md: the agent did not leave it readable: mock sandbox agent: read /workspace/out.md: file does not exist"
	if res.OK || res.Error != want {
		t.Errorf("ok=%v error %q, want %q", res.OK, res.Error, want)
	}
}

// writingAgent is the mock provider whose agent writes its answer to a file.
type writingAgent struct{ *mock.Provider }

func (w writingAgent) RunAgent(ctx context.Context, sb runtime.Sandbox, st *runtime.Stage, input string) (runtime.AgentResult, error) {
	if err := sb.WriteFile(ctx, "/workspace/out.md", []byte("the report\n"), 0o644); err != nil {
		return runtime.AgentResult{}, err
	}
	return runtime.AgentResult{Stdout: "I wrote out.md"}, nil
}

func TestAgentOutputFileIsTheOutput(t *testing.T) {
	st := &runtime.Stage{Name: "agent", Prompt: "p", OutputFile: "/workspace/out.md", OnFailure: runtime.FailStop}
	res := run(t, &runtime.Executor{Provider: writingAgent{mock.New(nil)}}, st)
	if !res.OK || res.Output != "the report\n" {
		t.Errorf("ok=%v output %q error %q, want the file's content", res.OK, res.Output, res.Error)
	}
}
