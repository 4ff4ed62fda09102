package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/voidbox/voidbox/guestimage"
)

// agentBinaryName is the static guest agent `make build` puts next to voidbox.
const agentBinaryName = "voidbox-agent"

func runGuest(args []string, env *cliEnv) int {
	if len(args) == 0 || (args[0] != "build" && args[0] != "info") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(env.stdout, "Usage: voidbox guest build [--kernel voidbox|debian] [--agent PATH] [--cache DIR]\n       voidbox guest info [--kernel K --initramfs I]\n\nbuild: make the guest kernel + initramfs: by default a microVM kernel compiled from\nDebian's linux-source-6.1 (a few minutes once, then cached under ~/.voidbox/kernels),\nor Debian's linux-image-cloud-amd64 with --kernel debian; plus busybox-static and the\nguest agent (reproducible; cached under ~/.voidbox/guest).\ninfo: print the image a run would use.")
			return exitOK
		}
		fmt.Fprintln(env.stderr, "voidbox guest: want a subcommand: build or info\nRun 'voidbox guest --help' for usage.")
		return exitUsage
	}
	if args[0] == "info" {
		return runGuestInfo(args[1:], env)
	}
	fs := newFlagSet("guest build", "", "Build the guest kernel + initramfs (reproducible; cached under ~/.voidbox/guest).", env)
	agent := fs.String("agent", "", "guest agent binary (default: "+agentBinaryName+" next to the voidbox executable)")
	cache := fs.String("cache", "", "image cache directory (default ~/.voidbox/guest)")
	kernel := fs.String("kernel", guestimage.KernelVoidbox, "kernel: voidbox (compiled from "+guestimage.KernelSourcePackage+" for microVMs) or debian (linux-image-cloud-amd64 and its modules)")
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	if *kernel != guestimage.KernelVoidbox && *kernel != guestimage.KernelDebian {
		fmt.Fprintf(env.stderr, "voidbox guest build: --kernel %q: want %s or %s\n", *kernel, guestimage.KernelVoidbox, guestimage.KernelDebian)
		return exitUsage
	}
	if *agent == "" {
		self, err := os.Executable()
		if err == nil {
			*agent = filepath.Join(filepath.Dir(self), agentBinaryName)
		}
	}
	if _, err := os.Stat(*agent); err != nil {
		fmt.Fprintf(env.stderr, "voidbox guest build: guest agent binary %s not found: build it with 'make build' (or CGO_ENABLED=0 go build -o %s ./guest-agent), or pass --agent PATH\n", *agent, agentBinaryName)
		return exitUsage
	}
	// Like exec: every way out goes through the context, so the kernel compile
	// (guest build) or the VMs (bench) are stopped and cleaned up.
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	img, err := guestimage.Build(ctx, guestimage.BuildOptions{AgentPath: *agent, CacheDir: *cache, Log: env.stderr, Kernel: *kernel})
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox guest build: %v\n", err)
		return exitFailed
	}
	printImage(env, img)
	return exitOK
}

func runGuestInfo(args []string, env *cliEnv) int {
	fs := newFlagSet("guest info", "", "Print the guest image a run would use.", env)
	kernel := fs.String("kernel", "", "guest kernel override")
	initramfs := fs.String("initramfs", "", "guest initramfs override")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	img, err := guestimage.Resolve(*kernel, *initramfs)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox guest info: %v\n", err)
		return exitFailed
	}
	printImage(env, img)
	return exitOK
}

func printImage(env *cliEnv, img guestimage.Image) {
	fmt.Fprintf(env.stdout, "kernel:    %s\ninitramfs: %s\nrelease:   %s\nsha256:    %s\n", img.Kernel, img.Initramfs, img.Release, img.SHA256)
	if img.KernelOrigin != "" {
		fmt.Fprintf(env.stdout, "origin:    %s\n", img.KernelOrigin)
	}
	if img.ConfigSHA256 != "" {
		fmt.Fprintf(env.stdout, "config:    sha256 %s (guestimage/kconfig/microvm.config)\n", img.ConfigSHA256)
	}
}
