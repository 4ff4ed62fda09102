package main

import (
	"fmt"

	"github.com/voidbox/voidbox/starfmt"
	vstar "github.com/voidbox/voidbox/starlark"
)

func runFmt(args []string, env *cliEnv) int {
	fs := newFlagSet("fmt", "FILE.star...", "Format Starlark files in place with the buildifier formatter.\nfmt accepts every program exec accepts (while, set, top-level if/for, ...) and changes only layout.", env)
	check := fs.Bool("check", false, "change nothing; list files that are not formatted and exit 1 if any")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.stderr, "voidbox fmt: want one or more FILE.star arguments")
		return exitUsage
	}
	changed, errs := starfmt.FormatFiles(fs.Args(), starfmt.Options{Check: *check, List: env.stdout})
	for _, err := range errs {
		// FormatError prints syntax errors exactly as `voidbox check` and `exec` do.
		fmt.Fprintf(env.stderr, "voidbox fmt: %s\n", vstar.FormatError(err))
	}
	if len(errs) > 0 {
		return exitUsage
	}
	if *check && len(changed) > 0 {
		return exitFailed
	}
	return exitOK
}
