package main

import (
	"fmt"

	vstar "github.com/voidbox/voidbox/starlark"
)

func runFmt(args []string, env *cliEnv) int {
	fs := newFlagSet("fmt", "FILE.star...", "Format Starlark files in place with the buildifier formatter.", env)
	check := fs.Bool("check", false, "change nothing; list files that are not formatted and exit 1 if any")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.stderr, "voidbox fmt: want one or more FILE.star arguments")
		return exitUsage
	}
	changed, err := vstar.FormatFiles(fs.Args(), *check, env.stdout)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox fmt: %v\n", err)
		return exitUsage
	}
	if *check && len(changed) > 0 {
		return exitFailed
	}
	return exitOK
}
