package runtime_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

func cmd(name string) *runtime.Stage {
	return &runtime.Stage{Name: name, Cmd: []string{"step", name}, OnFailure: runtime.FailStop}
}

func pipe(n ...runtime.Node) *runtime.Pipe     { return &runtime.Pipe{Nodes: n} }
func fanOut(n ...runtime.Node) *runtime.FanOut { return &runtime.FanOut{Nodes: n} }

// run executes root on p and fails the test on a graph error or a run that hangs.
func run(t *testing.T, e *runtime.Executor, root runtime.Node) *runtime.Result {
	t.Helper()
	return runCtx(t, context.Background(), e, root)
}

func runCtx(t *testing.T, ctx context.Context, e *runtime.Executor, root runtime.Node) *runtime.Result {
	t.Helper()
	type out struct {
		res *runtime.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := e.Run(ctx, root)
		done <- out{res, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatalf("Run: %v", o.err)
		}
		return o.res
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not finish within 20s")
	}
	return nil
}

func status(t *testing.T, res *runtime.Result, want map[string]runtime.StageStatus) {
	t.Helper()
	for name, st := range want {
		sr, ok := res.Stages[name]
		if !ok {
			t.Errorf("stage %s: no result", name)
			continue
		}
		if sr.Status != st {
			t.Errorf("stage %s: status %q (error %q), want %q", name, sr.Status, sr.Error, st)
		}
	}
}

func TestPipeDataFlow(t *testing.T) {
	p := mock.New(nil)
	e := &runtime.Executor{Provider: p}
	res := run(t, e, pipe(cmd("a"), cmd("b"), cmd("c")))
	if !res.OK || res.Error != "" {
		t.Fatalf("OK=%v Error=%q, want a clean run", res.OK, res.Error)
	}
	if want := "a\nb\nc\n"; res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
	if !slices.Equal(res.Order, []string{"a", "b", "c"}) {
		t.Errorf("Order = %v", res.Order)
	}
	calls := p.Calls()
	wantInputs := []string{"", "a\n", "a\nb\n"}
	for i, c := range calls {
		if c.Input != wantInputs[i] {
			t.Errorf("stage %s input %q, want %q", c.Stage, c.Input, wantInputs[i])
		}
		if c.Dir != "/workspace" || !slices.Equal(c.Args, []string{"step", c.Stage}) {
			t.Errorf("stage %s ran %v in %q", c.Stage, c.Args, c.Dir)
		}
		if !c.Closed {
			t.Errorf("stage %s: sandbox not closed", c.Stage)
		}
	}
	if sr := res.Stages["b"]; sr.Stdout != "a\nb\n" || sr.Output != sr.Stdout || sr.Attempts != 1 || sr.ExitCode == nil || *sr.ExitCode != 0 {
		t.Errorf("stage b result %+v", sr)
	}
}

// inputFileProvider checks that /workspace/input holds the stdin before Exec runs.
type inputFileProvider struct{ *mock.Provider }

type inputFileSandbox struct{ runtime.Sandbox }

func (p inputFileProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	sb, err := p.Provider.Open(ctx, spec)
	return inputFileSandbox{sb}, err
}

func (s inputFileSandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	file, err := s.ReadFile(ctx, runtime.InputPath)
	if err != nil {
		return runtime.ExecResult{}, err
	}
	req.Stdout.Write([]byte("file=" + string(file) + ";"))
	return runtime.ExecResult{}, nil
}

func TestInputFileWritten(t *testing.T) {
	e := &runtime.Executor{Provider: inputFileProvider{mock.New(nil)}}
	res := run(t, e, pipe(cmd("a"), cmd("b"), cmd("c")))
	if want := "file=file=file=;;;"; res.Output != want {
		t.Errorf("Output = %q, want %q (each stage echoes /workspace/input)", res.Output, want)
	}
}

func TestFanOutOrderAndConcurrency(t *testing.T) {
	p := mock.New(mock.Script{
		"x": {{Stdout: "X", Delay: 150 * time.Millisecond}},
		"y": {{Stdout: "Y", Delay: 40 * time.Millisecond}},
		"z": {{Stdout: "Z", Delay: 75 * time.Millisecond}},
	})
	e := &runtime.Executor{Provider: p, MaxParallel: 8}
	res := run(t, e, pipe(cmd("src"), fanOut(cmd("x"), cmd("y"), cmd("z")), cmd("sink")))
	if !res.OK {
		t.Fatalf("run failed: %s", res.Error)
	}
	want := `["X","Y","Z"]` + "sink\n"
	if res.Output != want {
		t.Errorf("Output = %q, want %q", res.Output, want)
	}
	if got := p.MaxConcurrent(); got != 3 {
		t.Errorf("MaxConcurrent = %d, want 3 (the fan_out branches run together)", got)
	}
	for _, c := range p.Calls() {
		if strings.Contains("xyz", c.Stage) && c.Input != "src\n" {
			t.Errorf("branch %s input %q, want the fan_out's input %q", c.Stage, c.Input, "src\n")
		}
	}
	if !slices.Equal(res.Order, []string{"src", "x", "y", "z", "sink"}) {
		t.Errorf("Order = %v", res.Order)
	}
}

func TestNestedFanOut(t *testing.T) {
	p := mock.New(nil)
	// MaxParallel 1 with nesting must not deadlock: slots are held only by open sandboxes.
	e := &runtime.Executor{Provider: p, MaxParallel: 1}
	root := fanOut(pipe(cmd("a"), fanOut(cmd("b"), cmd("c"))), cmd("d"))
	res := run(t, e, root)
	var outer []string
	if err := json.Unmarshal([]byte(res.Output), &outer); err != nil {
		t.Fatalf("output %q is not a JSON array: %v", res.Output, err)
	}
	var inner []string
	if err := json.Unmarshal([]byte(outer[0]), &inner); err != nil {
		t.Fatalf("first branch %q is not a JSON array: %v", outer[0], err)
	}
	if !slices.Equal(inner, []string{"a\nb\n", "a\nc\n"}) || outer[1] != "d\n" {
		t.Errorf("outputs %q / %q", inner, outer)
	}
	if got := p.MaxConcurrent(); got != 1 {
		t.Errorf("MaxConcurrent = %d with MaxParallel 1", got)
	}
}

func TestMaxParallel(t *testing.T) {
	script := mock.Script{}
	var branches []runtime.Node
	for _, n := range []string{"b1", "b2", "b3", "b4", "b5", "b6"} {
		script[n] = []mock.Reply{{Stdout: n, Delay: 40 * time.Millisecond}}
		branches = append(branches, cmd(n))
	}
	p := mock.New(script)
	res := run(t, &runtime.Executor{Provider: p, MaxParallel: 2}, fanOut(branches...))
	if !res.OK {
		t.Fatalf("run failed: %s", res.Error)
	}
	if got := p.MaxConcurrent(); got != 2 {
		t.Errorf("MaxConcurrent = %d, want 2", got)
	}
}

func TestStopCancelsSiblingsAndSkipsRest(t *testing.T) {
	p := mock.New(mock.Script{
		"bad":  {{Stderr: "first\nboom\n", ExitCode: 3, Delay: 50 * time.Millisecond}},
		"slow": {{Stdout: "never", Delay: 30 * time.Second}},
	})
	var skips []string
	e := &runtime.Executor{Provider: p, MaxParallel: 4, OnEvent: func(ev runtime.Event) {
		if ev.Kind == runtime.EventSkip {
			skips = append(skips, ev.Stage)
		}
	}}
	start := time.Now()
	res := run(t, e, pipe(fanOut(cmd("bad"), cmd("slow")), cmd("after")))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run took %v; the failure should cancel the 30s sibling", d)
	}
	if res.OK {
		t.Fatal("OK = true after a stop failure")
	}
	if want := "stage bad: exit code 3: boom"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	status(t, res, map[string]runtime.StageStatus{"bad": runtime.StatusFailed, "slow": runtime.StatusCanceled, "after": runtime.StatusSkipped})
	if got := res.Stages["bad"]; got.ExitCode == nil || *got.ExitCode != 3 || got.Stderr != "first\nboom\n" || got.Output != "" {
		t.Errorf("bad: %+v", got)
	}
	// Each error says why once: the status beside it already says canceled or skipped.
	if got := res.Stages["slow"].Error; got != "stage bad: exit code 3: boom" {
		t.Errorf("slow (canceled): error %q, want the run's reason alone", got)
	}
	if got := res.Stages["after"].Error; got != "the run stopped before this stage started" {
		t.Errorf("after (skipped): error %q", got)
	}
	if !slices.Equal(p.Canceled(), []string{"slow"}) {
		t.Errorf("canceled calls %v, want [slow] (its context must be cancelled)", p.Canceled())
	}
	if slices.Contains(p.Opened(), "after") {
		t.Error("a skipped stage opened a sandbox")
	}
	if !slices.Equal(skips, []string{"after"}) {
		t.Errorf("skip events %v", skips)
	}
	if p.OpenNow() != 0 {
		t.Errorf("%d sandboxes left open", p.OpenNow())
	}
}

func TestContinueFailure(t *testing.T) {
	p := mock.New(mock.Script{"a": {{Stdout: "partial", ExitCode: 2}}})
	a := cmd("a")
	a.OnFailure = runtime.FailContinue
	res := run(t, &runtime.Executor{Provider: p}, pipe(a, cmd("b")))
	if !res.OK || res.Error != "" {
		t.Errorf("OK=%v Error=%q: a continue failure must not fail the run", res.OK, res.Error)
	}
	status(t, res, map[string]runtime.StageStatus{"a": runtime.StatusFailed, "b": runtime.StatusOK})
	if sr := res.Stages["a"]; sr.Output != "" || sr.Stdout != "partial" || sr.Error != "exit code 2" {
		t.Errorf("a: %+v", sr)
	}
	if res.Output != "b\n" {
		t.Errorf("Output = %q, want b's echo of an empty input", res.Output)
	}
}

func TestRetries(t *testing.T) {
	p := mock.New(mock.Script{
		"flaky": {{ExitCode: 1}, {Err: "vm died"}, {Stdout: "ok"}},
		"dead":  {{ExitCode: 9}},
	})
	var backoffs []int
	var retries []runtime.Event
	var mu sync.Mutex
	e := &runtime.Executor{
		Provider: p,
		Backoff: func(n int) time.Duration {
			mu.Lock()
			backoffs = append(backoffs, n)
			mu.Unlock()
			return time.Millisecond
		},
		OnEvent: func(ev runtime.Event) {
			if ev.Kind == runtime.EventRetry {
				retries = append(retries, ev)
			}
		},
	}
	flaky := cmd("flaky")
	flaky.Retries = 5
	res := run(t, e, flaky)
	if !res.OK || res.Output != "ok" {
		t.Fatalf("OK=%v Output=%q Error=%q", res.OK, res.Output, res.Error)
	}
	if got := res.Stages["flaky"].Attempts; got != 3 {
		t.Errorf("Attempts = %d, want 3", got)
	}
	if !slices.Equal(backoffs, []int{1, 2}) {
		t.Errorf("Backoff called with %v, want [1 2]", backoffs)
	}
	if len(retries) != 2 || retries[0].Attempt != 2 || retries[1].Attempt != 3 || !strings.Contains(retries[1].Err.Error(), "vm died") {
		t.Errorf("retry events %+v", retries)
	}

	dead := cmd("dead")
	dead.Retries = 1
	res = run(t, e, dead)
	if res.OK || res.Stages["dead"].Attempts != 2 || res.Stages["dead"].Status != runtime.StatusFailed {
		t.Errorf("dead: OK=%v %+v", res.OK, res.Stages["dead"])
	}
	if n := strings.Count(strings.Join(p.Opened(), ","), "dead"); n != 2 {
		t.Errorf("dead opened %d sandboxes, want 2 (a fresh one per attempt)", n)
	}
}

func TestBackoffRespectsCancel(t *testing.T) {
	p := mock.New(mock.Script{"s": {{ExitCode: 1}}})
	s := cmd("s")
	s.Retries = 3
	ctx, cancel := context.WithCancel(context.Background())
	e := &runtime.Executor{Provider: p, Backoff: func(int) time.Duration { cancel(); return time.Hour }}
	res := runCtx(t, ctx, e, s)
	if res.Error != runtime.Cancelled || res.Stages["s"].Status != runtime.StatusCanceled || res.Stages["s"].Error != "the run was cancelled" {
		t.Errorf("Error=%q stage=%+v", res.Error, res.Stages["s"])
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}
	for i, w := range want {
		if got := runtime.DefaultBackoff(i + 1); got != w {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := runtime.DefaultBackoff(50); got != 10*time.Second {
		t.Errorf("DefaultBackoff(50) = %v, want the 10s cap", got)
	}
}

func TestTimeout(t *testing.T) {
	p := mock.New(mock.Script{"slow": {{Delay: 30 * time.Second}}})
	s := cmd("slow")
	s.Timeout = 100 * time.Millisecond
	res := run(t, &runtime.Executor{Provider: p}, s)
	if want := "stage slow: timed out after 100ms"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	status(t, res, map[string]runtime.StageStatus{"slow": runtime.StatusFailed})
	if !slices.Equal(p.Canceled(), []string{"slow"}) {
		t.Errorf("canceled = %v: the slow call must be cut short", p.Canceled())
	}
}

func TestCtrlC(t *testing.T) {
	p := mock.New(mock.Script{
		"x": {{Delay: 30 * time.Second}},
		"y": {{Delay: 30 * time.Second}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 2)
	e := &runtime.Executor{Provider: p, MaxParallel: 4, OnEvent: func(ev runtime.Event) {
		if ev.Kind == runtime.EventStart {
			started <- struct{}{}
		}
	}}
	go func() { <-started; <-started; cancel() }()
	res := runCtx(t, ctx, e, pipe(cmd("first"), fanOut(cmd("x"), cmd("y")), cmd("last")))
	// "first" also sends a start event, so the cancel may land before both branches run.
	if res.OK || res.Error != "cancelled" {
		t.Errorf("OK=%v Error=%q, want cancelled", res.OK, res.Error)
	}
	if res.Stages["last"].Status != runtime.StatusSkipped {
		t.Errorf("last: %+v", res.Stages["last"])
	}
	for _, n := range []string{"x", "y"} {
		if st := res.Stages[n].Status; st != runtime.StatusCanceled && st != runtime.StatusSkipped {
			t.Errorf("%s status %q, want canceled or skipped", n, st)
		}
	}
	if p.OpenNow() != 0 {
		t.Errorf("%d sandboxes left open after cancel", p.OpenNow())
	}
}

// plainProvider hides mock's AgentRunner, like a sandbox kind that cannot run agents.
type plainProvider struct{ p *mock.Provider }

func (p plainProvider) Name() string { return "local" }
func (p plainProvider) Open(ctx context.Context, s runtime.SandboxSpec) (runtime.Sandbox, error) {
	return p.p.Open(ctx, s)
}

func TestAgentStages(t *testing.T) {
	agent := &runtime.Stage{Name: "review", Prompt: "review it", Retries: 3}
	res := run(t, &runtime.Executor{Provider: plainProvider{mock.New(nil)}}, pipe(cmd("a"), agent))
	if want := "stage review: agent stages (prompt=) are not supported by the local sandbox yet"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	if a := res.Stages["review"].Attempts; a != 1 {
		t.Errorf("Attempts = %d: an unsupported agent stage must not be retried", a)
	}

	p := mock.New(mock.Script{"review": {{Stdout: "LGTM"}}})
	agent = &runtime.Stage{Name: "review", Prompt: "review it"}
	res = run(t, &runtime.Executor{Provider: p}, pipe(cmd("a"), agent))
	if !res.OK || res.Output != "LGTM" {
		t.Errorf("OK=%v Output=%q Error=%q", res.OK, res.Output, res.Error)
	}
	if c := p.Calls()[1]; !c.Agent || c.Input != "a\n" {
		t.Errorf("agent call %+v", c)
	}
}

func TestOutputLimit(t *testing.T) {
	p := mock.New(mock.Script{"big": {{Stdout: strings.Repeat("x", 100)}}})
	e := &runtime.Executor{Provider: p}
	runtime.SetOutputLimit(e, 10)
	res := run(t, e, cmd("big"))
	if want := "stage big: output exceeds 10 bytes (stdout and stderr are each capped)"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	if got := res.Stages["big"].Stdout; got != strings.Repeat("x", 10) {
		t.Errorf("Stdout kept %q, want the first 10 bytes", got)
	}
}

func TestSandboxError(t *testing.T) {
	p := mock.New(mock.Script{"s": {{Err: "guest agent went away"}}})
	res := run(t, &runtime.Executor{Provider: p}, cmd("s"))
	if !strings.Contains(res.Error, "stage s: exec step: mock sandbox s: guest agent went away") {
		t.Errorf("Error = %q", res.Error)
	}
}

type panicProvider struct{ *mock.Provider }
type panicSandbox struct{ runtime.Sandbox }

func (p panicProvider) Open(ctx context.Context, s runtime.SandboxSpec) (runtime.Sandbox, error) {
	sb, err := p.Provider.Open(ctx, s)
	return panicSandbox{sb}, err
}
func (panicSandbox) Exec(context.Context, runtime.ExecRequest) (runtime.ExecResult, error) {
	panic("driver bug")
}

func TestPanicClosesSandbox(t *testing.T) {
	p := mock.New(nil)
	res := run(t, &runtime.Executor{Provider: panicProvider{p}}, cmd("s"))
	if !strings.Contains(res.Error, "panicked: driver bug") {
		t.Errorf("Error = %q", res.Error)
	}
	if p.OpenNow() != 0 {
		t.Error("sandbox left open after a panic")
	}
}

func TestBadGraph(t *testing.T) {
	e := &runtime.Executor{Provider: mock.New(nil)}
	both := cmd("both")
	both.Prompt = "x"
	cases := map[string]runtime.Node{
		"used by two boxes":      pipe(cmd("a"), cmd("a")),
		"needs at least one":     pipe(cmd("a"), fanOut()),
		"exactly one of cmd=":    both,
		"neither":                &runtime.Stage{Name: "neither"},
		"appears more than once": func() runtime.Node { s := cmd("s"); return fanOut(s, s) }(),
	}
	for want, g := range cases {
		_, err := e.Run(context.Background(), g)
		if err == nil {
			t.Errorf("%s: no error", want)
			continue
		}
		if want != "neither" && !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := (&runtime.Executor{}).Run(context.Background(), cmd("a")); err == nil {
		t.Error("no error without a provider")
	}
}

func TestEventsSerialized(t *testing.T) {
	var inside, overlaps, starts, ends atomic.Int32
	var branches []runtime.Node
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		branches = append(branches, cmd(n))
	}
	e := &runtime.Executor{Provider: mock.New(nil), MaxParallel: 8, OnEvent: func(ev runtime.Event) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		time.Sleep(time.Millisecond)
		switch ev.Kind {
		case runtime.EventStart:
			starts.Add(1)
		case runtime.EventEnd:
			ends.Add(1)
			if ev.Result == nil || ev.Result.Status != runtime.StatusOK {
				t.Errorf("end event %+v", ev)
			}
		}
		inside.Add(-1)
	}}
	run(t, e, fanOut(branches...))
	if overlaps.Load() != 0 {
		t.Errorf("OnEvent ran concurrently %d times", overlaps.Load())
	}
	if starts.Load() != 8 || ends.Load() != 8 {
		t.Errorf("%d starts, %d ends, want 8 each", starts.Load(), ends.Load())
	}
}

func TestContinueInsideFanOutAndEnv(t *testing.T) {
	p := mock.New(mock.Script{"b": {{Err: "vm lost"}}})
	b := cmd("b")
	b.OnFailure = runtime.FailContinue
	b.Retries = 1
	a := cmd("a")
	a.Env = map[string]string{"K": "v"}
	res := run(t, &runtime.Executor{Provider: p, Backoff: func(int) time.Duration { return 0 }}, pipe(fanOut(a, b), cmd("c")))
	if !res.OK {
		t.Fatalf("run failed: %s", res.Error)
	}
	if want := `["a\n",""]c` + "\n"; res.Output != want {
		t.Errorf("Output = %q, want %q (a continue failure contributes \"\")", res.Output, want)
	}
	if sr := res.Stages["b"]; sr.Status != runtime.StatusFailed || sr.Attempts != 2 || !strings.Contains(sr.Error, "vm lost") {
		t.Errorf("b: %+v", sr)
	}
	for _, c := range p.Calls() {
		if c.Stage == "a" && c.Env["K"] != "v" {
			t.Errorf("stage env not passed: %v", c.Env)
		}
	}
}
