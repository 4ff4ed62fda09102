package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/voidbox/voidbox/runtime"
	vstar "github.com/voidbox/voidbox/starlark"
)

func runExec(args []string, env *cliEnv) int {
	fs := newFlagSet("exec", "FILE.star", "Evaluate a program and run what it asks for: its run() calls, or its global `pipeline`.", env)
	sets := fs.StringArray("set", nil, "key=value visible to the program in the frozen dict `args` (repeatable)")
	rf := addRunFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.stderr, "voidbox exec: want exactly one FILE.star argument\nRun 'voidbox exec --help' for usage.")
		return exitUsage
	}
	argMap, err := parseSets(*sets)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox exec: %v\n", err)
		return exitUsage
	}
	x, code, done := rf.start("exec", fs.Arg(0), env, *rf.sandbox, *rf.vm)
	if done {
		return code
	}
	defer x.release()
	opts := vstar.Options{Args: argMap, Runner: x.runner, Context: x.ctx, Print: printTo(x.stdout)}
	if x.asJSON {
		// stdout carries the JSON document alone; print() goes to stderr.
		opts.Print = printTo(env.stderr)
	}
	prog, err := vstar.ExecFile(x.file, opts)
	if err != nil && x.ctx.Err() != nil {
		// Cancelled: finish says so once, in voidbox's words rather than Starlark's.
		x.interrupted = true
	} else if !x.afterProgram(prog, err) {
		return exitUsage
	}
	return x.finish()
}

// runFlags are the flags of the commands that run a graph (exec, run): where its
// stages run and how the run is shown.
type runFlags struct {
	sandbox     *string
	maxParallel *int
	timeout     *time.Duration
	asJSON      *bool
	traceFile   *string
	reportFile  *string
	verbose     *bool
	vm          *vmSettings
}

func addRunFlags(fs *pflag.FlagSet) *runFlags {
	return &runFlags{
		sandbox:     fs.String("sandbox", "auto", "where stages run: auto|vm|local|mock"),
		maxParallel: fs.Int("max-parallel", 0, "stages running at once (default: number of CPUs)"),
		timeout:     fs.Duration("timeout", 0, "cancel the whole run after this long (e.g. 10m; 0 = no limit)"),
		asJSON:      fs.Bool("json", false, "print the last run's result as JSON on stdout instead of the live view (text that is not UTF-8 goes in NAME_base64 fields)"),
		traceFile:   fs.String("trace-file", "", "write the run's spans to this file as OTLP JSON (one ExportTraceServiceRequest per line)"),
		reportFile:  fs.String("report", "", "write the last run's report to this file: one self-contained HTML page"),
		verbose:     addVerboseFlag(fs),
		vm:          addVMFlags(fs),
	}
}

// start checks the flags and sets the run up: its context (signals, --timeout), the
// sandbox provider of kind with vs, the live view or --json, and the observers. With
// done set the command is over and code is its exit code (a bad flag, no sandbox, a
// signal during a probe boot), already reported; otherwise the caller runs its graphs
// through x.runner, calls x.finish for the exit code and x.release at the end.
func (f *runFlags) start(name, file string, env *cliEnv, kind string, vs vmSettings) (x *execution, code int, done bool) {
	if *f.maxParallel < 0 {
		fmt.Fprintf(env.stderr, "voidbox %s: --max-parallel must be >= 0, got %d\n", name, *f.maxParallel)
		return nil, exitUsage, true
	}
	if *f.timeout < 0 {
		fmt.Fprintf(env.stderr, "voidbox %s: --timeout must be 0 (no limit) or more, got %s\n", name, *f.timeout)
		return nil, exitUsage, true
	}
	ctx, cancel, stop := runContext(*f.timeout, cancelSignals...)
	x = &execution{
		name:    name,
		ctx:     ctx,
		env:     env,
		stdout:  &stdoutWriter{w: env.stdout, onErr: cancel}, // what the run prints can reach no one: stop it
		asJSON:  *f.asJSON,
		file:    file,
		runner:  &execRunner{exec: &runtime.Executor{MaxParallel: *f.maxParallel}},
		release: stop,
	}
	console := &consoleSink{}
	vs.console = console.line
	provider, closeProvider, err := openProvider(ctx, kind, vs, *f.verbose, env.stderr)
	if err != nil {
		defer stop()
		if ctx.Err() != nil { // a signal during a probe boot
			x.interrupted = true
			return nil, x.finish(), true
		}
		fmt.Fprintf(env.stderr, "voidbox %s: %v\n", name, err)
		return nil, exitCodeFor(err), true
	}
	x.release = func() { closeProvider(); stop() }
	x.runner.exec.Provider = provider
	var live func(runtime.Event)
	if !*f.asJSON {
		live = newLiveView(env.stderr).event
	}
	var verboseLog io.Writer
	if *f.verbose {
		verboseLog = env.stderr
	}
	obs, err := newRunObservers(ctx, *f.traceFile, *f.reportFile, live, verboseLog)
	if err != nil {
		x.release()
		fmt.Fprintf(env.stderr, "voidbox %s: telemetry: %v\n", name, err)
		return nil, exitUsage, true
	}
	console.attach(obs)
	x.observers, x.runner.observe = obs, obs.begin
	return x, 0, false
}

// execution is one `voidbox exec` (or `voidbox run`) once its flags are parsed.
type execution struct {
	name   string // the command, for messages: "exec", "run"
	ctx    context.Context
	env    *cliEnv
	stdout *stdoutWriter
	asJSON bool
	file   string
	runner *execRunner
	// interrupted is set when the cancellation stopped the program itself, not only a run.
	interrupted bool
	observers   *runObservers
	// release closes the provider and stops watching for signals.
	release func()
}

// afterProgram handles how the program ended: it reports a bad program, or runs its
// `pipeline` and prints its output. It returns false for a bad program (exit code 2),
// already reported.
func (x *execution) afterProgram(prog *vstar.Program, err error) bool {
	switch {
	case err != nil:
		fmt.Fprintln(x.env.stderr, vstar.FormatError(err))
		return false
	case prog.RanGraphs > 0:
		if prog.Pipeline != nil {
			fmt.Fprintf(x.env.stderr, "voidbox exec: %s defines pipeline but also calls run(); pipeline is not run (it runs only when the program makes no run() call)\n", x.file)
		}
		return true
	case prog.Pipeline == nil:
		fmt.Fprintf(x.env.stderr, "voidbox exec: %s calls no run() and defines no global `pipeline`; add `pipeline = pipe(...)` or call run(...)\n", x.file)
		return false
	}
	res, err := x.runner.Run(x.ctx, prog.Pipeline)
	if err != nil {
		fmt.Fprintf(x.env.stderr, "voidbox exec: %s: global pipeline: %v\n", x.file, err)
		return false
	}
	x.printOutput(res)
	return true
}

// printOutput prints a graph's output on stdout, ending in a newline, unless --json
// prints the whole result instead.
func (x *execution) printOutput(res *runtime.Result) {
	if !x.asJSON && res.Output != "" {
		fmt.Fprint(x.stdout, res.Output)
		if !strings.HasSuffix(res.Output, "\n") {
			fmt.Fprintln(x.stdout)
		}
	}
}

// finish prints the JSON document (with --json) and one message on how the run was
// cancelled or why its output was lost, and returns the exit code.
func (x *execution) finish() int {
	// A cancellation is reported unless it was a failed write to stdout (reported as
	// such) or came when everything had already succeeded.
	cancelled := ""
	var werr writeError
	if x.ctx.Err() != nil && !errors.As(context.Cause(x.ctx), &werr) && (x.interrupted || !x.runner.allOK()) {
		cancelled = reasonOf(x.ctx)
	}
	if x.asJSON {
		// A failed write is kept by x.stdout and reported below.
		_ = writeJSON(x.stdout, execJSON(x.runner.last(), cancelled))
	}
	code := exitOK
	if cancelled != "" {
		fmt.Fprintf(x.env.stderr, "voidbox %s: run cancelled: %s\n", x.name, cancelled)
		code = exitFailed
	}
	if err := x.stdout.Err(); err != nil {
		fmt.Fprintf(x.env.stderr, "voidbox %s: %v\n", x.name, err)
		code = exitFailed
	}
	if !x.runner.allOK() {
		code = exitFailed
	}
	if x.observers != nil {
		for _, err := range x.observers.finish(x.runner.last()) {
			fmt.Fprintf(x.env.stderr, "voidbox %s: %v\n", x.name, err)
			code = exitFailed
		}
	}
	return code
}

// execRunner runs graphs with the executor and remembers the results for the exit code
// and --json; it also knows whether a run is under way (the REPL waits for it to clean up).
type execRunner struct {
	exec *runtime.Executor
	// observe, when set, watches each run (its event callback replaces exec.OnEvent).
	observe func(context.Context, runtime.Node) runObservation
	mu      sync.Mutex
	idle    *sync.Cond // signalled when running drops to 0
	running int
	results []*runtime.Result
}

func (r *execRunner) Run(ctx context.Context, root runtime.Node) (*runtime.Result, error) {
	r.mu.Lock()
	r.running++
	r.mu.Unlock()
	exec := r.exec
	end := func(*runtime.Result) {}
	if r.observe != nil {
		o := r.observe(ctx, root)
		ctx, end = o.ctx, o.end
		e := *r.exec
		e.OnEvent, e.Traceparent = o.onEvent, o.traceparent
		exec = &e
	}
	res, err := exec.Run(ctx, root)
	end(res)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if r.running == 0 && r.idle != nil {
		r.idle.Broadcast()
	}
	if err != nil {
		return nil, err
	}
	r.results = append(r.results, res)
	return res, nil
}

// waitIdle returns once no run is under way: the executor has stopped every stage and
// closed every sandbox of the runs that were.
func (r *execRunner) waitIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idle == nil {
		r.idle = sync.NewCond(&r.mu)
	}
	for r.running > 0 {
		r.idle.Wait()
	}
}

func (r *execRunner) last() *runtime.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return nil
	}
	return r.results[len(r.results)-1]
}

func (r *execRunner) allOK() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, res := range r.results {
		if !res.OK {
			return false
		}
	}
	return true
}
