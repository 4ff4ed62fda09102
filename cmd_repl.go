package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/voidbox/voidbox/runtime"
	vstar "github.com/voidbox/voidbox/starlark"
)

func runREPL(args []string, env *cliEnv) int {
	fs := newFlagSet("repl", "", "Interactive Starlark with the voidbox builtins. run() executes in the chosen sandbox.\nCtrl-C cancels the running statement, Ctrl-D exits.", env)
	sandbox := fs.String("sandbox", "auto", "where run() executes stages: auto|vm|local|mock")
	maxParallel := fs.Int("max-parallel", 0, "stages running at once (default: number of CPUs)")
	vmFlags := addVMFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	provider, closeProvider, err := openProvider(*sandbox, *vmFlags, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox repl: %v\n", err)
		if errors.Is(err, errUsage) {
			return exitUsage
		}
		return exitFailed
	}
	defer closeProvider()
	runner := &execRunner{exec: &runtime.Executor{Provider: provider, MaxParallel: *maxParallel}}
	view := newLiveView(env.stderr)
	runner.exec.OnEvent = view.event
	opts := vstar.Options{Runner: runner, Context: context.Background(), Print: printTo(env.stdout)}
	if err := vstar.REPL(opts, env.stdin, env.stdout, env.stderr); err != nil {
		fmt.Fprintf(env.stderr, "voidbox repl: %v\n", err)
		return exitFailed
	}
	return exitOK
}
