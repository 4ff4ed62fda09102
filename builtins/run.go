package builtins

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// runBuiltin implements run(graph): convert, validate, hand to the thread's Runner,
// and return the result as a struct. Stage failures are data (result.ok is False);
// only a failure of the runner itself, or cancellation, is a Starlark error. Under a
// planning Runner (voidbox check) the result is a notRunResult instead.
func runBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(kwargs) > 0 {
		// UnpackPositionalArgs would say "unexpected keyword arguments" without naming one.
		return nil, fmt.Errorf("%s: unexpected keyword argument %s; pass the graph as the only positional argument, run(graph)", fn.Name(), kwargs[0][0])
	}
	var graph starlark.Value
	if err := starlark.UnpackPositionalArgs(fn.Name(), args, nil, 1, &graph); err != nil {
		return nil, err
	}
	runner, _ := thread.Local(runnerKey).(Runner)
	if runner == nil {
		return nil, fmt.Errorf("%s: no runner is set on this thread (the host must call builtins.SetRunner)", fn.Name())
	}
	ctx, _ := thread.Local(contextKey).(context.Context)
	if ctx == nil {
		ctx = context.Background()
	}
	if !isGraph(graph) {
		return nil, fmt.Errorf("%s: graph must be a box, pipe or fan_out, got %s", fn.Name(), graph.Type())
	}
	root, err := ToNode(graph)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: cancelled", fn.Name())
	}
	res, err := runner.Run(ctx, root)
	if ctx.Err() != nil && (err != nil || errors.Is(ctx.Err(), context.Canceled)) {
		return nil, fmt.Errorf("%s: cancelled", fn.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if p, ok := runner.(Planning); ok && p.Planning() {
		return &notRunResult{pos: userPos(thread)}, nil
	}
	if res == nil {
		return nil, fmt.Errorf("%s: the runner returned no result", fn.Name())
	}
	return NewResult(res), nil
}

// NewResult is run()'s return value: a frozen struct with ok, output, error (None
// when empty), duration_ms and stages, a dict by stage name in declaration order of
// structs with exit_code (None unless the process exited), signal (None unless one
// killed it), stdout, stderr, output, duration_ms, attempts, error, status, and agent
// (None for a command stage; see agentValue).
func NewResult(r *runtime.Result) starlark.Value {
	stages := starlark.NewDict(len(r.Stages))
	for _, name := range stageOrder(r) {
		sr := r.Stages[name]
		_ = stages.SetKey(starlark.String(name), starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
			"exit_code":   exitCodeValue(sr.ExitCode),
			"signal":      noneOr(sr.Signal),
			"stdout":      starlark.String(sr.Stdout),
			"stderr":      starlark.String(sr.Stderr),
			"output":      starlark.String(sr.Output),
			"duration_ms": starlark.MakeInt64(sr.DurationMS),
			"attempts":    starlark.MakeInt(sr.Attempts),
			"error":       noneOr(sr.Error),
			"status":      starlark.String(string(sr.Status)),
			"agent":       agentValue(sr.Agent),
		}))
	}
	v := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"ok":          starlark.Bool(r.OK),
		"output":      starlark.String(r.Output),
		"error":       noneOr(r.Error),
		"duration_ms": starlark.MakeInt64(r.DurationMS),
		"stages":      stages,
	})
	v.Freeze()
	return v
}

// exitCodeValue is a stage's exit_code: an int when its process exited, None when it
// never ran or a signal killed it.
func exitCodeValue(code *int) starlark.Value {
	if code == nil {
		return starlark.None
	}
	return starlark.MakeInt(*code)
}

// stageOrder is r.Order, then any stage the order misses, sorted, so no stage is lost
// from the dict when a runner forgets Order.
func stageOrder(r *runtime.Result) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range r.Order {
		if _, ok := r.Stages[n]; ok && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	var rest []string
	for n, sr := range r.Stages {
		if !seen[n] && sr != nil {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// StatusNotRun is the status the Planner gives every stage: planned, never started.
const StatusNotRun runtime.StageStatus = "not_run"

// Planner is the Runner of `voidbox check`: it records each graph run() is given and
// runs nothing. It is Planning, so run() answers with a result whose fields cannot be
// read (see notRunResult) rather than with invented outputs.
type Planner struct {
	Graphs []runtime.Node
	mu     sync.Mutex
}

// Run records root and returns OK with every stage "not_run", for callers that use a
// Planner as a plain Runner; run() itself does not read this result.
func (p *Planner) Run(_ context.Context, root runtime.Node) (*runtime.Result, error) {
	p.mu.Lock()
	p.Graphs = append(p.Graphs, root)
	p.mu.Unlock()
	res := &runtime.Result{OK: true, Stages: map[string]*runtime.StageResult{}}
	for _, s := range root.Stages() {
		res.Stages[s.Name] = &runtime.StageResult{Name: s.Name, Status: StatusNotRun}
		res.Order = append(res.Order, s.Name)
	}
	return res, nil
}

// Planning reports true: the Planner never runs a stage.
func (p *Planner) Planning() bool { return true }
