package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/voidbox/voidbox/spec"
)

// runRun implements `voidbox run --file SPEC`: a YAML spec of the project voidbox grew
// out of, run through the same executor, sandboxes, live view and --json as exec.
func runRun(args []string, env *cliEnv) int {
	fs := newFlagSet("run", "--file SPEC.yaml", "Run a YAML spec (api_version v1: kind agent, pipeline, workflow or sandbox) and print its output.\nThe spec's sandbox.mode chooses the sandbox unless --sandbox is given; its kernel, initramfs and guest_image apply unless the flags are given.", env)
	file := fs.String("file", "", "the spec to run")
	input := fs.String("input", "", "the first stage's input on stdin: TEXT, or @FILE for a file's content")
	rf := addRunFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprintln(env.stderr, "voidbox run: want --file SPEC and no other arguments\nRun 'voidbox run --help' for usage.")
		return exitUsage
	}
	s, err := spec.Load(*file)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox run: %v\n", err)
		return exitUsage
	}
	in, err := readInput(*input)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox run: %v\n", err)
		return exitUsage
	}
	kind, vs, err := specSandbox(s, fs, *rf.sandbox, *rf.vm)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox run: %v\n", err)
		return exitUsage
	}
	x, code, done := rf.start("run", *file, env, kind, vs)
	if done {
		return code
	}
	defer x.release()
	x.runner.exec.Input = in
	res, err := x.runner.Run(x.ctx, s.Graph)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox run: %s: %v\n", *file, err)
		return exitUsage
	}
	x.printOutput(res)
	return x.finish()
}

// readInput is --input: the text itself, or with a leading @ the named file's content.
func readInput(v string) (string, error) {
	name, isFile := strings.CutPrefix(v, "@")
	if !isFile {
		return v, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("--input: %w", err)
	}
	return string(b), nil
}

// specSandbox is where a spec's stages run: --sandbox when given, else the spec's
// sandbox.mode; and the VM settings with the spec's kernel, initramfs and guest_image
// where no flag says otherwise. A spec setting the chosen sandbox cannot honour is an
// error, never ignored.
func specSandbox(s *spec.Spec, fs *pflag.FlagSet, flagKind string, vs vmSettings) (string, vmSettings, error) {
	kind := flagKind
	if !fs.Changed("sandbox") {
		kind = map[string]string{spec.ModeAuto: "auto", spec.ModeLocal: "local", spec.ModeMock: "mock"}[s.Mode]
	}
	for _, o := range []struct {
		key, flag, val string
		dst            *string
	}{
		{"kernel", "kernel", s.Kernel, &vs.kernel},
		{"initramfs", "initramfs", s.Initramfs, &vs.initramfs},
		{"guest_image", "guest-image", s.GuestImage, &vs.ref},
	} {
		if o.val == "" {
			continue
		}
		if kind == "local" || kind == "mock" {
			return "", vs, errors.New(s.Pos("sandbox."+o.key) + ": sandbox." + o.key + ": the " + kind + " sandbox boots no VM, so it cannot use it; remove it, or run in a microVM (mode: auto)")
		}
		if !fs.Changed(o.flag) {
			*o.dst = o.val
		}
	}
	return kind, vs, nil
}
