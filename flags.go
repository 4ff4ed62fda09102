package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"
)

// newFlagSet makes a subcommand's flag set whose --help prints usage to stdout.
func newFlagSet(name, argsUsage, description string, env *cliEnv) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "Usage: voidbox %s [flags] %s\n\n%s\n\nFlags:\n%s", name, argsUsage, description, fs.FlagUsages())
	}
	return fs
}

// parseFlags parses args; done is true when the command should exit with code now
// (--help, or a bad flag).
func parseFlags(fs *pflag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, true
		}
		fmt.Fprintf(fs.Output(), "voidbox %s: %v\nRun 'voidbox %s --help' for usage.\n", fs.Name(), err, fs.Name())
		return exitUsage, true
	}
	return 0, false
}

// addVerboseFlag adds --verbose: the details behind voidbox's one-line notices, such as
// QEMU's own text for why KVM failed its probe boot.
func addVerboseFlag(fs *pflag.FlagSet) *bool {
	return fs.Bool("verbose", false, "print the details behind notices (e.g. why the KVM probe boot failed, as QEMU said it)")
}
