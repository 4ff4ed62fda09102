// Package starlark is voidbox's interpreter host. It owns how a .star program is read and
// run: thread setup (builtins, the args dict, the runner, cancellation), load() resolution
// and caching, turning errors into file:line:col messages, and the interactive REPL.
// Formatting is package starfmt, which reads and checks files with this package's
// ReadSource and PrepareSource. The DSL itself (box, pipe, run, ...) lives in package builtins.
package starlark

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/voidbox/voidbox/builtins"
	"github.com/voidbox/voidbox/runtime"
	sk "go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// MaxFileSize bounds a program or module file. Pipelines are short programs; a bigger file
// is almost certainly a mistake (a data file passed by accident) and would only waste memory.
const MaxFileSize = 4 << 20

// PipelineGlobal is the global a program defines to hand `voidbox exec` a graph to run.
const PipelineGlobal = "pipeline"

// Options configure one program execution.
type Options struct {
	// Args are the --set key=value pairs, visible to the program (and to every module it
	// loads) as the frozen dict `args`.
	Args map[string]string
	// Runner executes graphs passed to run(). Nil makes run() fail with a clear error.
	Runner builtins.Runner
	// Print receives print() output. Nil prints to stdout.
	Print func(thread *sk.Thread, msg string)
	// Context cancels the program: when it is done, the running Starlark code stops at its
	// next step and run() sees the cancellation. Nil means context.Background().
	Context context.Context
	// Predeclared replaces builtins.Predeclared() (embedders and tests); `args` is added.
	Predeclared sk.StringDict
	// MaxSteps, when non-zero, bounds the Starlark computation steps of each thread.
	MaxSteps uint64
}

// Program is the outcome of executing a file.
type Program struct {
	// File is the program's file name as given.
	File string
	// Globals are the main file's globals, frozen.
	Globals sk.StringDict
	// Pipeline is the global `pipeline` converted to a graph, nil when there is none.
	Pipeline runtime.Node
	// RanGraphs counts the program's run() calls (including failed ones).
	RanGraphs int
}

// PipelineIgnored reports a program that defines a global `pipeline` and also called
// run(): `pipeline` runs only when the program made no run() call, so it is ignored.
func (p *Program) PipelineIgnored() bool { return p.Pipeline != nil && p.RanGraphs > 0 }

// Warnings are what the CLI should tell the user about a program that ran without an
// error, one line each, without a "warning:" prefix (the caller adds its own).
func (p *Program) Warnings() []string {
	var ws []string
	if p.PipelineIgnored() {
		ws = append(ws, fmt.Sprintf("%s defines a global `%s` and also calls run(); `%s` runs only when the program makes no run() call, so it is ignored", p.File, PipelineGlobal, PipelineGlobal))
	}
	return ws
}

// FileOptions are the dialect voidbox programs are written in (fmt parses with them too). Programs are scripts, not
// BUILD files: they branch on results at top level, loop while polling, reassign
// variables (`result = run(...)` twice) and may recurse over graphs, so all of those are
// allowed. load() bindings stay file-local, as in standard Starlark.
func FileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{
		Set:             true,
		While:           true,
		TopLevelControl: true,
		GlobalReassign:  true,
		Recursion:       true,
	}
}

// ExecFile reads the program at path and executes it. Module and error positions use path
// as given, so a relative path keeps messages relative to the current directory.
func ExecFile(path string, opts Options) (*Program, error) {
	src, err := ReadSource(path)
	if err != nil {
		return nil, err
	}
	return ExecSource(path, src, opts)
}

// ExecSource executes src as the program named filename; load() resolves relative to
// filename's directory.
func ExecSource(filename string, src []byte, opts Options) (*Program, error) {
	src, err := PrepareSource(filename, src)
	if err != nil {
		return &Program{File: filename}, err
	}
	h := newHost(opts)
	defer h.stop()
	globals, err := h.loader.execMain(filename, src)
	prog := &Program{File: filename, Globals: globals, RanGraphs: h.runner.count()}
	if err != nil {
		return prog, err
	}
	if v, ok := globals[PipelineGlobal]; ok && v != sk.None {
		node, err := builtins.ToNode(v)
		if err != nil {
			return prog, fmt.Errorf("%s: global %s: %w", filename, PipelineGlobal, err)
		}
		prog.Pipeline = node
	}
	return prog, nil
}

// host is the state shared by every thread of one program: predeclared names, the
// counting runner, the loader and the set of live threads to cancel.
type host struct {
	opts        Options
	ctx         context.Context
	predeclared sk.StringDict
	runner      *countingRunner
	loader      *loader

	mu      sync.Mutex
	threads map[*sk.Thread]bool
	done    chan struct{}
}

func newHost(opts Options) *host {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	h := &host{
		opts:    opts,
		ctx:     ctx,
		runner:  &countingRunner{inner: opts.Runner},
		threads: map[*sk.Thread]bool{},
		done:    make(chan struct{}),
	}
	base := opts.Predeclared
	if base == nil {
		base = builtins.Predeclared()
	}
	h.predeclared = make(sk.StringDict, len(base)+1)
	for k, v := range base {
		h.predeclared[k] = v
	}
	h.predeclared["args"] = argsDict(opts.Args)
	h.loader = newLoader(h)
	go h.watch()
	return h
}

// watch cancels every live thread when the context ends; a busy `while True: pass` only
// stops because of this (the interpreter checks the cancel flag between steps).
func (h *host) watch() {
	select {
	case <-h.ctx.Done():
		reason := context.Cause(h.ctx).Error()
		h.mu.Lock()
		for t := range h.threads {
			t.Cancel(reason)
		}
		h.mu.Unlock()
	case <-h.done:
	}
}

func (h *host) stop() { close(h.done) }

// newThread makes a thread with the program's print, loader, runner and context.
func (h *host) newThread(name string) *sk.Thread {
	t := &sk.Thread{Name: name, Load: h.loader.load}
	t.Print = h.opts.Print
	if t.Print == nil {
		t.Print = func(_ *sk.Thread, msg string) { fmt.Fprintln(os.Stdout, msg) }
	}
	if h.opts.MaxSteps > 0 {
		t.SetMaxExecutionSteps(h.opts.MaxSteps)
	}
	builtins.SetRunner(t, h.runner)
	builtins.SetContext(t, h.ctx)
	h.mu.Lock()
	h.threads[t] = true
	h.mu.Unlock()
	// The watcher may not have seen an already-done context yet.
	if h.ctx.Err() != nil {
		t.Cancel(context.Cause(h.ctx).Error())
	}
	return t
}

// release forgets a thread whose execution ended.
func (h *host) release(t *sk.Thread) {
	h.mu.Lock()
	delete(h.threads, t)
	h.mu.Unlock()
}

// argsDict builds the frozen `args` dict from --set pairs.
func argsDict(args map[string]string) *sk.Dict {
	d := sk.NewDict(len(args))
	for k, v := range args {
		// SetKey on a fresh dict with string keys cannot fail.
		_ = d.SetKey(sk.String(k), sk.String(v))
	}
	d.Freeze()
	return d
}

// countingRunner counts run() calls for Program.RanGraphs and reports a missing runner.
type countingRunner struct {
	inner builtins.Runner
	mu    sync.Mutex
	n     int
}

func (r *countingRunner) Run(ctx context.Context, root runtime.Node) (*runtime.Result, error) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	if r.inner == nil {
		return nil, fmt.Errorf("no runner is configured here, so run() cannot execute graphs; define a global `pipeline` instead")
	}
	return r.inner.Run(ctx, root)
}

// Planning forwards the inner runner's answer, so run() under `voidbox check` knows that
// nothing runs (see builtins.Planning).
func (r *countingRunner) Planning() bool {
	p, ok := r.inner.(builtins.Planning)
	return ok && p.Planning()
}

func (r *countingRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
