package main

import (
	"fmt"

	"github.com/voidbox/voidbox/spec"
)

// runValidate implements `voidbox validate SPEC`: load and check a YAML spec, run nothing.
func runValidate(args []string, env *cliEnv) int {
	s, code, ok := loadSpecArg("validate", "Check a YAML spec (every key, value and reference) without running it.", args, env)
	if !ok {
		return code
	}
	fmt.Fprintf(env.stdout, "%s: ok (kind %s, %s)\n", s.File, s.Kind, stageCount(len(s.Graph.Stages())))
	return exitOK
}

// runInspect implements `voidbox inspect SPEC`: the stage graph and each stage's
// sandbox and capabilities.
func runInspect(args []string, env *cliEnv) int {
	s, code, ok := loadSpecArg("inspect", "Print a YAML spec's stage graph and each stage's capabilities (sandbox, network, mounts, skills, model), and a workflow's steps.", args, env)
	if !ok {
		return code
	}
	fmt.Fprint(env.stdout, spec.Inspect(s))
	return exitOK
}

// runConvert implements `voidbox convert SPEC`: the equivalent .star program.
func runConvert(args []string, env *cliEnv) int {
	s, code, ok := loadSpecArg("convert", "Print the .star program equivalent to a YAML spec (voidbox fmt accepts it; exec runs it to the same result).", args, env)
	if !ok {
		return code
	}
	fmt.Fprint(env.stdout, s.Program)
	return exitOK
}

// loadSpecArg parses a spec command's arguments (one SPEC) and loads it; with ok false
// the command is over with code, already reported.
func loadSpecArg(name, description string, args []string, env *cliEnv) (*spec.Spec, int, bool) {
	fs := newFlagSet(name, "SPEC.yaml", description, env)
	if code, done := parseFlags(fs, args); done {
		return nil, code, false
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "voidbox %s: want exactly one SPEC argument\n", name)
		return nil, exitUsage, false
	}
	s, err := spec.Load(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox %s: %v\n", name, err)
		return nil, exitUsage, false
	}
	return s, exitOK, true
}
