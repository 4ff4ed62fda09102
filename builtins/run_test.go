package builtins

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

func withRunner(r Runner, ctx context.Context) func(*starlark.Thread) {
	return func(th *starlark.Thread) {
		SetRunner(th, r)
		if ctx != nil {
			SetContext(th, ctx)
		}
	}
}

func TestRunResultShape(t *testing.T) {
	fr := &fakeRunner{result: &runtime.Result{
		OK: false, Output: "OUT", Error: "stage shout failed", DurationMS: 42,
		Order: []string{"fetch", "shout", "killed", "refused"},
		Stages: map[string]*runtime.StageResult{
			"shout":   {Name: "shout", Status: runtime.StatusFailed, ExitCode: intPtr(2), Stderr: "bad", Attempts: 3, Error: "exit status 2", DurationMS: 7},
			"fetch":   {Name: "fetch", Status: runtime.StatusOK, ExitCode: intPtr(0), Stdout: "data", Output: "data", Attempts: 1, DurationMS: 5},
			"killed":  {Name: "killed", Status: runtime.StatusFailed, Signal: "SIGKILL", Attempts: 1, Error: "killed by SIGKILL"},
			"refused": {Name: "refused", Status: runtime.StatusFailed, Attempts: 1, Error: "exec sh: not allowed"},
		},
	}}
	g := mustExec(t, "p.star", `
fetch = box("fetch", cmd = ["a"])
shout = box("shout", cmd = ["b"])
r = run(pipe(fetch, shout))
ok, output, err, ms = r.ok, r.output, r.error, r.duration_ms
names = list(r.stages.keys())
s = r.stages["shout"]
shout = [s.exit_code, s.signal, s.stdout, s.stderr, s.output, s.duration_ms, s.attempts, s.error, s.status]
f = r.stages["fetch"]
fetch = [f.exit_code, f.signal, f.stdout, f.output, f.error, f.status]
killed = [r.stages["killed"].exit_code, r.stages["killed"].signal]
refused = [r.stages["refused"].exit_code, r.stages["refused"].signal]
branch = "retry" if not r.ok else "done"
`, withRunner(fr, nil))
	want := map[string]string{
		"ok": "False", "output": `"OUT"`, "err": `"stage shout failed"`, "ms": "42",
		"names":   `["fetch", "shout", "killed", "refused"]`,
		"shout":   `[2, None, "", "bad", "", 7, 3, "exit status 2", "failed"]`,
		"fetch":   `[0, None, "data", "data", None, "ok"]`,
		"killed":  `[None, "SIGKILL"]`,
		"refused": `[None, None]`,
		"branch":  `"retry"`,
	}
	for k, w := range want {
		if got := g[k].String(); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	if describe(fr.got) != "pipe(fetch, shout)" {
		t.Errorf("runner got %s", describe(fr.got))
	}
	if fr.ctx != context.Background() {
		t.Errorf("without SetContext run() must pass context.Background, got %v", fr.ctx)
	}
	// The result is frozen: a script cannot rewrite history.
	if _, err := exec(t, "p.star", `r = run(box("a", cmd = ["x"]))
r.stages["x"] = 1`, withRunner(&fakeRunner{result: &runtime.Result{OK: true}}, nil)); err == nil {
		t.Errorf("mutating result.stages succeeded")
	}
}

func intPtr(n int) *int { return &n }

func TestRunErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ok := &fakeRunner{result: &runtime.Result{OK: true}}
	cases := []struct {
		name  string
		src   string
		setup func(*starlark.Thread)
		want  string
	}{
		{"no runner", `run(box("a", cmd = ["x"]))`, nil, `run: no runner is set on this thread (the host must call builtins.SetRunner)`},
		{"not a graph", `run("a")`, withRunner(ok, nil), `run: graph must be a box, pipe or fan_out, got string`},
		{"no args", `run()`, withRunner(ok, nil), `run: got 0 arguments, want 1`},
		{"kwargs", `run(graph = 1)`, withRunner(ok, nil), `run: unexpected keyword argument "graph"; pass the graph as the only positional argument, run(graph)`},
		{"extra kwarg", `run(box("a", cmd = ["x"]), foo = 1, bar = 2)`, withRunner(ok, nil), `run: unexpected keyword argument "foo"; pass the graph as the only positional argument, run(graph)`},
		{"twice", `a = box("a", cmd = ["x"])
run(pipe(a, a))`, withRunner(ok, nil), `run: box "a" (declared at p.star:1:8) appears more than once in the graph; declare a second box() with its own name to run it twice`},
		{"runner error", `run(box("a", cmd = ["x"]))`, withRunner(&fakeRunner{err: errors.New("no VMM: qemu-system-x86_64 not found")}, nil), `run: no VMM: qemu-system-x86_64 not found`},
		{"nil result", `run(box("a", cmd = ["x"]))`, withRunner(&fakeRunner{}, nil), `run: the runner returned no result`},
		{"cancelled before", `run(box("a", cmd = ["x"]))`, withRunner(ok, cancelled), `run: cancelled`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := exec(t, "p.star", c.src, c.setup)
			if err == nil || err.Error() != c.want {
				t.Fatalf("err\n got: %v\nwant: %s", err, c.want)
			}
		})
	}
}

// cancellingRunner simulates Ctrl-C arriving while the graph runs.
type cancellingRunner struct{ cancel context.CancelFunc }

func (c *cancellingRunner) Run(ctx context.Context, _ runtime.Node) (*runtime.Result, error) {
	c.cancel()
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRunCancelledDuringRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := exec(t, "p.star", `run(box("a", cmd = ["x"]))`, withRunner(&cancellingRunner{cancel}, ctx))
	if err == nil || err.Error() != "run: cancelled" {
		t.Fatalf("err = %v, want run: cancelled", err)
	}
}

func TestPlanner(t *testing.T) {
	p := &Planner{}
	g := mustExec(t, "p.star", threeBoxes+`
r1 = run(pipe(fetch, fan_out(shout, review)))
r2 = run(box("solo", cmd = ["x"]))
shown = [str(r1), type(r1), dir(r1), hasattr(r1, "ok"), hasattr(r1, "nope"), bool(r1)]
`, withRunner(p, nil))
	if len(p.Graphs) != 2 || describe(p.Graphs[0]) != "pipe(fetch, fan_out(shout, review))" || describe(p.Graphs[1]) != "solo" {
		t.Fatalf("planner graphs = %d %v", len(p.Graphs), p.Graphs)
	}
	// Nothing about the result is invented: it says it did not run.
	want := `["<result of run() at p.star:6:9: not run>", "result", ["duration_ms", "error", "ok", "output", "stages"], True, False, True]`
	if got := g["shown"].String(); got != want {
		t.Errorf("shown = %s\nwant    %s", got, want)
	}
	// Used as a plain Runner, the Planner answers with every stage not_run.
	res, err := p.Run(context.Background(), p.Graphs[0])
	if err != nil || !res.OK || len(res.Order) != 3 || res.Stages["review"].Status != StatusNotRun {
		t.Errorf("Planner.Run = %+v, %v", res, err)
	}
}

// TestNotRunResultStops checks every way a program can use a result under check: each
// stops the program with a NotRunError naming the run() call, instead of going on with
// values exec would not produce.
func TestNotRunResultStops(t *testing.T) {
	pre := "b = box(\"b\", cmd = [\"echo\", \"3\"])\nr = run(b)\n"
	for _, use := range []string{
		`n = int(r.output.strip())`,
		`x = r.ok`,
		`x = r.error`,
		`x = r.duration_ms`,
		`x = r.stages["b"].status`,
		`x = getattr(r, "ok", False)`,
		`x = getattr(r, "stages")`,
		`x = r == r`,
		`x = r in [1, r]`,
		`x = {r: 1}`,
		`x = json.encode(r)`,
		`x = [f for f in [r] if f.ok]`,
	} {
		t.Run(use, func(t *testing.T) {
			_, err := exec(t, "c.star", pre+use, withRunner(&Planner{}, nil))
			nr, ok := AsNotRun(err)
			if !ok {
				t.Fatalf("err = %v, want a NotRunError", err)
			}
			if nr.RunPos != "c.star:2:8" {
				t.Errorf("RunPos = %q, want c.star:2:8", nr.RunPos)
			}
			want := "check stops here: this line uses the result of the run() at c.star:2:8, which only exec knows (no stage runs under check)"
			if nr.Error() != want {
				t.Errorf("message = %q\nwant      %q", nr.Error(), want)
			}
		})
	}
	// A field no result has is an ordinary error, as under exec.
	_, err := exec(t, "c.star", pre+`r.nope`, withRunner(&Planner{}, nil))
	if _, ok := AsNotRun(err); ok || err == nil || err.Error() != "result has no .nope field or method" {
		t.Errorf("r.nope: err = %v", err)
	}
	// getattr on anything else is Starlark's own.
	g := mustExec(t, "c.star", `x = getattr(struct(a = 1), "b", 7)`, nil)
	if g["x"].String() != "7" {
		t.Errorf("getattr default = %s", g["x"])
	}
	if _, err := exec(t, "c.star", `getattr(struct(a = 1), "b")`, nil); err == nil || err.Error() != "getattr: struct has no .b attribute" {
		t.Errorf("getattr missing: %v", err)
	}
	if _, ok := AsNotRun(errors.New("unrelated")); ok {
		t.Error("AsNotRun matched an unrelated error")
	}
}

// TestResultFields keeps notRunResult's field list in step with NewResult.
func TestResultFields(t *testing.T) {
	got := NewResult(&runtime.Result{OK: true}).(starlark.HasAttrs).AttrNames()
	if strings.Join(got, ",") != strings.Join(resultFields, ",") {
		t.Errorf("NewResult fields %v, notRunResult fields %v", got, resultFields)
	}
}

// TestParallelPrograms runs programs on several threads at once: builtins keep no
// package state, so results must not bleed between threads (run with -race).
func TestParallelPrograms(t *testing.T) {
	var wg sync.WaitGroup
	planners := make([]*Planner, 8)
	for i := range planners {
		planners[i] = &Planner{}
		wg.Add(1)
		go func(p *Planner) {
			defer wg.Done()
			th := &starlark.Thread{}
			SetRunner(th, p)
			if _, err := starlark.ExecFileOptions(&syntax.FileOptions{}, th, "p.star", threeBoxes+`run(pipe(fetch, shout, review))`, Predeclared()); err != nil {
				t.Error(err)
			}
		}(planners[i])
	}
	wg.Wait()
	for i, p := range planners {
		if len(p.Graphs) != 1 || len(p.Graphs[0].Stages()) != 3 {
			t.Errorf("planner %d recorded %v", i, p.Graphs)
		}
	}
}
