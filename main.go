// Command voidbox runs AI-agent pipelines written in Starlark, each stage inside its own
// microVM. This file owns the command line: subcommand dispatch, flags (spf13/pflag),
// exit codes, and wiring concrete sandboxes and VMMs into the runtime.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes: the contract scripts rely on.
const (
	exitOK      = 0 // everything ran and succeeded
	exitFailed  = 1 // a stage or the run failed, or the environment cannot run it
	exitUsage   = 2 // bad usage or a bad program
	versionText = "0.1.0"
)

// command is one voidbox subcommand.
type command struct {
	summary string
	run     func(args []string, env *cliEnv) int
}

// cliEnv carries the process's streams so tests can run commands in-process.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

var commands = map[string]command{
	"exec":     {"run a .star program", runExec},
	"run":      {"run a YAML spec (--file SPEC)", runRun},
	"validate": {"check a YAML spec without running it", runValidate},
	"inspect":  {"print a YAML spec's stage graph and capabilities", runInspect},
	"convert":  {"print the .star program equivalent to a YAML spec", runConvert},
	"check":    {"parse and validate a program; print its graph without running it", runCheck},
	"repl":     {"interactive Starlark with the voidbox builtins", runREPL},
	"fmt":      {"format .star files in place (buildifier style)", runFmt},
	"guest":    {"build or inspect the guest image (kernel + initramfs)", runGuest},
	"image":    {"pull, list and remove the OCI images boxes run from", runImage},
	"agent":    {"install and list claude-code, the coding agent agent boxes run", runAgent},
	"doctor":   {"say which VMMs and accelerators work here, and how to fix what is missing", runDoctor},
	"bench":    {"measure microVM boot and exec latency against bare QEMU", runBench},
	"version":  {"print the version", runVersion},
}

func main() {
	os.Exit(runMain(os.Args[1:], &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

func runMain(args []string, env *cliEnv) int {
	if len(args) == 0 {
		usage(env.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(env.stdout)
		return exitOK
	case "--version", "-v":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.stderr, "voidbox: unknown command %q\n\n", name)
		usage(env.stderr)
		return exitUsage
	}
	return cmd.run(args[1:], env)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "voidbox runs pipelines of stages, each inside its own microVM.")
	fmt.Fprintln(w, "\nUsage: voidbox COMMAND [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'voidbox COMMAND --help' for a command's flags.")
}

func runVersion(args []string, env *cliEnv) int {
	fs := newFlagSet("version", "", "Print voidbox's version.", env)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(env.stdout, "voidbox %s\n", versionText)
	return exitOK
}

// usageError is an error caused by how voidbox was called (exit code 2). It prints as
// the error it wraps, with no tag of its own: the message already says what was wrong.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageErrorf formats a usageError.
func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// isUsage says whether err (or an error it wraps) is a usageError.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

// exitCodeFor is the exit code of a command that failed with err before running anything.
func exitCodeFor(err error) int {
	if isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

func parseSets(sets []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--set %q: want key=value", s)
		}
		out[k] = v
	}
	return out, nil
}
