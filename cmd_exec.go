package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/voidbox/voidbox/runtime"
	vstar "github.com/voidbox/voidbox/starlark"
)

func runExec(args []string, env *cliEnv) int {
	fs := newFlagSet("exec", "FILE.star", "Evaluate a program and run what it asks for: its run() calls, or its global `pipeline`.", env)
	sets := fs.StringArray("set", nil, "key=value visible to the program in the frozen dict `args` (repeatable)")
	sandbox := fs.String("sandbox", "auto", "where stages run: auto|vm|local|mock")
	maxParallel := fs.Int("max-parallel", 0, "stages running at once (default: number of CPUs)")
	timeout := fs.Duration("timeout", 0, "cancel the whole run after this long (e.g. 10m; 0 = no limit)")
	asJSON := fs.Bool("json", false, "print the run result as JSON on stdout instead of the live view")
	vmFlags := addVMFlags(fs)
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
	if *maxParallel < 0 {
		fmt.Fprintf(env.stderr, "voidbox exec: --max-parallel must be >= 0, got %d\n", *maxParallel)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	provider, closeProvider, err := openProvider(*sandbox, *vmFlags, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox exec: %v\n", err)
		if errors.Is(err, errUsage) {
			return exitUsage
		}
		return exitFailed
	}
	defer closeProvider()

	runner := &execRunner{exec: &runtime.Executor{Provider: provider, MaxParallel: *maxParallel}}
	if !*asJSON {
		view := newLiveView(env.stderr)
		runner.exec.OnEvent = view.event
	}
	opts := vstar.Options{Args: argMap, Runner: runner, Context: ctx}
	if *asJSON {
		// stdout carries the JSON document alone; print() goes to stderr.
		opts.Print = printTo(env.stderr)
	} else {
		opts.Print = printTo(env.stdout)
	}
	file := fs.Arg(0)
	prog, err := vstar.ExecFile(file, opts)
	if err != nil {
		fmt.Fprintln(env.stderr, vstar.FormatError(err))
		if ctx.Err() != nil {
			fmt.Fprintf(env.stderr, "voidbox exec: run stopped: %v\n", context.Cause(ctx))
			return exitFailed
		}
		return exitUsage
	}
	if prog.RanGraphs == 0 {
		if prog.Pipeline == nil {
			fmt.Fprintf(env.stderr, "voidbox exec: %s calls no run() and defines no global `pipeline`; add `pipeline = pipe(...)` or call run(...)\n", file)
			return exitUsage
		}
		res, err := runner.Run(ctx, prog.Pipeline)
		if err != nil {
			fmt.Fprintf(env.stderr, "voidbox exec: %s: %v\n", file, err)
			return exitUsage
		}
		if !*asJSON && res.Output != "" {
			fmt.Fprint(env.stdout, res.Output)
			if !strings.HasSuffix(res.Output, "\n") {
				fmt.Fprintln(env.stdout)
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(runner.last()); err != nil {
			fmt.Fprintf(env.stderr, "voidbox exec: encode result: %v\n", err)
			return exitFailed
		}
	}
	if !runner.allOK() {
		return exitFailed
	}
	return exitOK
}

// execRunner runs graphs with the executor and remembers the results for the exit code
// and --json.
type execRunner struct {
	exec    *runtime.Executor
	mu      sync.Mutex
	results []*runtime.Result
}

func (r *execRunner) Run(ctx context.Context, root runtime.Node) (*runtime.Result, error) {
	res, err := r.exec.Run(ctx, root)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	return res, nil
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

// liveView prints one line per stage event to stderr.
type liveView struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func newLiveView(w io.Writer) *liveView {
	return &liveView{w: w, start: time.Now()}
}

func (v *liveView) event(e runtime.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	at := time.Since(v.start).Truncate(time.Millisecond)
	switch e.Kind {
	case runtime.EventStart:
		if e.Attempt > 1 {
			fmt.Fprintf(v.w, "[%8s] %-20s start (attempt %d)\n", at, e.Stage, e.Attempt)
		} else {
			fmt.Fprintf(v.w, "[%8s] %-20s start\n", at, e.Stage)
		}
	case runtime.EventRetry:
		fmt.Fprintf(v.w, "[%8s] %-20s retry after: %v\n", at, e.Stage, e.Err)
	case runtime.EventSkip:
		fmt.Fprintf(v.w, "[%8s] %-20s skipped\n", at, e.Stage)
	case runtime.EventEnd:
		status, detail := "ok", ""
		if e.Result != nil && e.Result.Status != runtime.StatusOK {
			status = string(e.Result.Status)
			if e.Result.Error != "" {
				detail = ": " + e.Result.Error
			}
		}
		fmt.Fprintf(v.w, "[%8s] %-20s %s in %s%s\n", at, e.Stage, status, e.Duration.Truncate(time.Millisecond), detail)
	}
}
