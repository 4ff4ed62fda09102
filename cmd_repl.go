package main

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/chzyer/readline"
	"github.com/voidbox/voidbox/runtime"
	vstar "github.com/voidbox/voidbox/starlark"
)

func runREPL(args []string, env *cliEnv) int {
	fs := newFlagSet("repl", "", "Interactive Starlark with the voidbox builtins. run() executes in the chosen sandbox.\nCtrl-C cancels the running statement, Ctrl-D exits.", env)
	sandbox := fs.String("sandbox", "auto", "where run() executes stages: auto|vm|local|mock")
	maxParallel := fs.Int("max-parallel", 0, "stages running at once (default: number of CPUs)")
	verbose := addVerboseFlag(fs)
	vmFlags := addVMFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *maxParallel < 0 {
		fmt.Fprintf(env.stderr, "voidbox repl: --max-parallel must be >= 0, got %d\n", *maxParallel)
		return exitUsage
	}
	// SIGTERM and SIGHUP (a closed terminal) end the REPL; Ctrl-C (SIGINT) is the
	// REPL's own: it cancels the running statement only.
	ctx, _, stop := runContext(0, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	provider, closeProvider, err := openProvider(ctx, *sandbox, *vmFlags, *verbose, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox repl: %v\n", err)
		return exitCodeFor(err)
	}
	defer closeProvider()
	runner := &execRunner{exec: &runtime.Executor{Provider: provider, MaxParallel: *maxParallel}}
	runner.exec.OnEvent = newLiveView(env.stderr).event
	opts := vstar.Options{Runner: runner, Context: ctx, Print: printTo(env.stdout)}

	restoreTerminal := saveTerminal(env.stdin)
	done := make(chan error, 1)
	go func() { done <- vstar.REPL(opts, env.stdin, env.stdout, env.stderr) }()
	select {
	case err := <-done:
		if ctx.Err() == nil {
			if err != nil {
				fmt.Fprintf(env.stderr, "voidbox repl: %v\n", err)
				return exitFailed
			}
			return exitOK
		}
	case <-ctx.Done():
		// The statement being evaluated sees the cancellation; its run() stops its
		// stages and closes their sandboxes before it returns. The REPL itself may be
		// blocked reading a line that will never come, so it gets only a moment to
		// end by itself (and put the terminal back) before voidbox exits without it.
		runner.waitIdle()
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
			restoreTerminal()
		}
	}
	fmt.Fprintf(env.stderr, "voidbox repl: cancelled: %s\n", reasonOf(ctx))
	return exitFailed
}

// saveTerminal records the state of stdin when it is a terminal and returns a func that
// restores it, so a REPL ended by a signal while the line editor had the terminal in raw
// mode does not leave the shell behind it in raw mode.
func saveTerminal(stdin any) func() {
	f, ok := stdin.(*os.File)
	if !ok || !readline.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	state, err := readline.GetState(int(f.Fd()))
	if err != nil {
		return func() {}
	}
	return func() { _ = readline.Restore(int(f.Fd()), state) }
}
