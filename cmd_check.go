package main

import (
	"context"
	"fmt"

	"github.com/voidbox/voidbox/builtins"
	"github.com/voidbox/voidbox/runtime"
	vstar "github.com/voidbox/voidbox/starlark"
)

// runCheck implements `voidbox check`: execute the program with a Planner as the runner,
// so every run() graph is validated and recorded but nothing runs, then print the graphs.
// A program that goes on to use a run() result stops there (only exec knows it); that is
// the end of what check can see, not an error, so check reports the graphs it reached,
// says where it stopped, and exits 0.
func runCheck(args []string, env *cliEnv) int {
	fs := newFlagSet("check", "FILE.star", "Parse the program, build and validate its graphs, and print them; nothing runs.\nrun() calls are validated and recorded instead of executed; code that uses a run() result is where check stops, since only exec knows it.", env)
	sets := fs.StringArray("set", nil, "key=value visible to the program in the frozen dict `args` (repeatable)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.stderr, "voidbox check: want exactly one FILE.star argument")
		return exitUsage
	}
	argMap, err := parseSets(*sets)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox check: %v\n", err)
		return exitUsage
	}
	planner := &builtins.Planner{}
	file := fs.Arg(0)
	prog, err := vstar.ExecFile(file, vstar.Options{Args: argMap, Runner: planner, Context: context.Background(), Print: printTo(env.stderr)})
	_, stopped := builtins.AsNotRun(err)
	if err != nil && !stopped {
		fmt.Fprintln(env.stderr, vstar.FormatError(err))
		return exitUsage
	}
	graphs := planner.Graphs
	labels := make([]string, 0, len(graphs)+1)
	for i := range graphs {
		labels = append(labels, fmt.Sprintf("run() call %d", i+1))
	}
	if !stopped {
		for _, w := range prog.Warnings() {
			fmt.Fprintf(env.stderr, "voidbox: warning: %s\n", w)
		}
		if prog.Pipeline != nil && len(graphs) == 0 {
			graphs = append(graphs, prog.Pipeline)
			labels = append(labels, "pipeline")
		}
	}
	if len(graphs) == 0 {
		fmt.Fprintf(env.stderr, "voidbox check: %s calls no run() and defines no global `pipeline`; add `pipeline = pipe(...)` or call run(...)\n", file)
		return exitUsage
	}
	for i, g := range graphs {
		if err := runtime.Validate(g); err != nil {
			fmt.Fprintf(env.stderr, "voidbox check: %s: %s: %v\n", file, labels[i], err)
			return exitUsage
		}
		fmt.Fprintf(env.stdout, "# %s: %s\n%s", labels[i], stageCount(len(g.Stages())), runtime.Describe(g))
	}
	if stopped {
		fmt.Fprintln(env.stdout, vstar.FormatError(err))
		fmt.Fprintf(env.stdout, "%s: ok as far as check can see (every graph above is valid)\n", file)
		return exitOK
	}
	fmt.Fprintf(env.stdout, "%s: ok\n", file)
	return exitOK
}

// stageCount is "1 stage", "3 stages".
func stageCount(n int) string {
	if n == 1 {
		return "1 stage"
	}
	return fmt.Sprintf("%d stages", n)
}
