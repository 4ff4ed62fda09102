// Package builtins implements voidbox's Starlark DSL: box, skill, llm.*, mount, pipe,
// fan_out and run, and their value types. It turns Starlark values into runtime graph
// types and nothing else; executing a graph is the Runner's job.
package builtins

import (
	"context"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// Runner executes a graph for run(). The CLI passes the real executor; `voidbox check`
// passes a planner that records graphs without running them.
type Runner interface {
	Run(ctx context.Context, root runtime.Node) (*runtime.Result, error)
}

const (
	runnerKey  = "voidbox.runner"
	contextKey = "voidbox.context"
)

// SetRunner makes r the executor that run() uses on this thread.
func SetRunner(t *starlark.Thread, r Runner) { t.SetLocal(runnerKey, r) }

// SetContext sets the context that run() passes to the Runner (cancellation, Ctrl-C).
func SetContext(t *starlark.Thread, ctx context.Context) { t.SetLocal(contextKey, ctx) }
