package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/guestimage/ociartifact"
	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/oci"
)

// agentBinaryName is the static guest agent `make build` puts next to voidbox.
const agentBinaryName = "voidbox-agent"

const guestUsage = `Usage: voidbox guest build [--kernel voidbox|debian] [--agent PATH] [--cache DIR]
       voidbox guest info [--kernel K --initramfs I] [--guest-image REF]
       voidbox guest push [--kernel K --initramfs I] [--cache DIR] [--insecure-registry HOST]... REF

build: make the guest kernel + initramfs: by default a microVM kernel compiled from
Debian's linux-source-6.1 (a few minutes once, then cached under ~/.voidbox/kernels),
or Debian's linux-image-cloud-amd64 with --kernel debian; plus busybox-static and the
guest agent (reproducible; cached under ~/.voidbox/guest).
info: print the image a run would use, and where it came from.
push: push the built image (or --kernel/--initramfs) to a registry as an OCI artifact
that --guest-image REF (or $VOIDBOX_GUEST_IMAGE) pulls; print REPOSITORY@DIGEST.`

func runGuest(args []string, env *cliEnv) int {
	sub := map[string]func([]string, *cliEnv) int{"build": runGuestBuild, "info": runGuestInfo, "push": runGuestPush}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(env.stdout, guestUsage)
		return exitOK
	}
	if len(args) == 0 || sub[args[0]] == nil {
		fmt.Fprintln(env.stderr, "voidbox guest: want a subcommand: build, info or push\nRun 'voidbox guest --help' for usage.")
		return exitUsage
	}
	return sub[args[0]](args[1:], env)
}

func runGuestBuild(args []string, env *cliEnv) int {
	fs := newFlagSet("guest build", "", "Build the guest kernel + initramfs (reproducible; cached under ~/.voidbox/guest).", env)
	agent := fs.String("agent", "", "guest agent binary (default: "+agentBinaryName+" next to the voidbox executable)")
	cache := fs.String("cache", "", "image cache directory (default ~/.voidbox/guest)")
	kernel := fs.String("kernel", guestimage.KernelVoidbox, "kernel: voidbox (compiled from "+guestimage.KernelSourcePackage+" for microVMs) or debian (linux-image-cloud-amd64 and its modules)")
	if code, done := parseFlags(fs, args); done {
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
	printImage(env, img, nil)
	return exitOK
}

func runGuestInfo(args []string, env *cliEnv) int {
	fs := newFlagSet("guest info", "", "Print the guest image a run would use, and where it came from (pulling a --guest-image that is not cached).", env)
	var src guestSource
	fs.StringVar(&src.kernel, "kernel", "", "guest kernel override")
	fs.StringVar(&src.initramfs, "initramfs", "", "guest initramfs override")
	addGuestImageFlags(fs, &src)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	img, art, err := resolveGuest(ctx, src, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox guest info: %v\n", err)
		return exitCodeFor(err)
	}
	printImage(env, img, art)
	return exitOK
}

func runGuestPush(args []string, env *cliEnv) int {
	fs := newFlagSet("guest push", "REF", "Push the guest image (kernel + initramfs) to a registry as an OCI artifact and print REPOSITORY@DIGEST.\nREF is a tag; credentials come from the Docker config and its helpers.", env)
	kernel := fs.String("kernel", "", "kernel to push (default $VOIDBOX_KERNEL, then the built image's)")
	initramfs := fs.String("initramfs", "", "initramfs to push (default $VOIDBOX_INITRAMFS, then the built image's)")
	cache := fs.String("cache", "", "image cache directory to push from (default ~/.voidbox/guest)")
	insecure := fs.StringArray("insecure-registry", nil, "a registry (host[:port]) that may be reached over plain HTTP (repeatable; loopback registries always may)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "voidbox guest push: %s\n", termsafe.Clean(err.Error()))
		if errors.Is(err, oci.ErrBadReference) {
			return exitUsage
		}
		return exitCodeFor(err)
	}
	if fs.NArg() != 1 {
		return fail(usageErrorf("want one reference to push to, got %d arguments (voidbox guest push REF)", fs.NArg()))
	}
	ref := fs.Arg(0)
	if err := oci.CheckReference(ref); err != nil {
		return fail(err)
	}
	if *cache == "" {
		dir, err := guestimage.DefaultCacheDir()
		if err != nil {
			return fail(err)
		}
		*cache = dir
	}
	img, err := guestimage.ResolveIn(*cache, *kernel, *initramfs)
	if err != nil {
		return fail(err)
	}
	store, err := openImageStore(*insecure)
	if err != nil {
		return fail(err)
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	digest, err := ociartifact.Push(ctx, store, ref, img)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(env.stderr, "%s: pushed the guest image (kernel %s, initramfs %s)\n", ref, img.Kernel, img.Initramfs)
	fmt.Fprintln(env.stdout, pinned(&oci.Image{Ref: ref, Digest: digest}))
	return exitOK
}

// guestSource is what chooses the guest image: files, a guest image
// reference, and the registries that may be reached over plain HTTP for it.
type guestSource struct {
	kernel, initramfs string
	ref               string // --guest-image; $VOIDBOX_GUEST_IMAGE when empty
	insecure          []string
}

// addGuestImageFlags adds --guest-image and --insecure-registry to fs.
func addGuestImageFlags(fs *pflag.FlagSet, src *guestSource) {
	fs.StringVar(&src.ref, "guest-image", "", "guest image (kernel + initramfs) to pull from a registry, as 'voidbox guest push' made it (default $"+guestimage.EnvGuestImage+"); --kernel/--initramfs and $VOIDBOX_KERNEL/$VOIDBOX_INITRAMFS win over it, it wins over the built image")
	fs.StringArrayVar(&src.insecure, "insecure-registry", nil, "a registry (host[:port]) that images (box, skill and guest) may be pulled from over plain HTTP (repeatable; loopback registries always may)")
}

// guestRef is the guest image reference asked for and where: --guest-image,
// else $VOIDBOX_GUEST_IMAGE; "" for none. A reference that does not parse
// is a usage error.
func (src guestSource) guestRef() (ref, from string, err error) {
	ref, from = src.ref, "--guest-image"
	if ref == "" {
		ref, from = os.Getenv(guestimage.EnvGuestImage), "$"+guestimage.EnvGuestImage
	}
	if ref == "" {
		return "", "", nil
	}
	if err := oci.CheckReference(ref); err != nil {
		return "", "", usageErrorf("%s: %w", from, err)
	}
	return ref, from, nil
}

// resolveGuest finds the guest image to boot. Each file comes from, in
// order: --kernel/--initramfs, $VOIDBOX_KERNEL/$VOIDBOX_INITRAMFS, the guest
// image reference (pulled into the OCI cache and installed under
// ~/.voidbox/guest-images, or taken from there), the local build. art is the
// artifact when the reference was used. Download progress goes to warn.
func resolveGuest(ctx context.Context, src guestSource, warn io.Writer) (img guestimage.Image, art *oci.Image, err error) {
	ref, from, err := src.guestRef()
	if err != nil {
		return guestimage.Image{}, nil, err
	}
	cache, err := guestimage.DefaultCacheDir()
	if err != nil {
		return guestimage.Image{}, nil, err
	}
	var pull func() (guestimage.Image, error)
	if ref != "" {
		pull = func() (guestimage.Image, error) {
			img, a, err := pullGuest(ctx, ref, src.insecure, warn)
			if err != nil {
				if isUsage(err) {
					return guestimage.Image{}, err
				}
				return guestimage.Image{}, fmt.Errorf("%s: %s", from, termsafe.Clean(err.Error()))
			}
			art = a
			return img, nil
		}
	}
	img, err = guestimage.ResolveWith(cache, src.kernel, src.initramfs, pull)
	return img, art, err
}

// pullGuest pulls the guest image ref, showing the layers it downloads (a
// cached image says nothing).
func pullGuest(ctx context.Context, ref string, insecure []string, warn io.Writer) (guestimage.Image, *oci.Image, error) {
	store, err := openImageStore(insecure)
	if err != nil {
		if errors.Is(err, oci.ErrBadReference) {
			return guestimage.Image{}, nil, usageErrorf("--insecure-registry: %w", err)
		}
		return guestimage.Image{}, nil, err
	}
	dir, err := ociartifact.DefaultDir()
	if err != nil {
		return guestimage.Image{}, nil, err
	}
	// Progress bars on a terminal; nothing elsewhere (logs, pipes, --json runs).
	var progress func(oci.Progress)
	view := newPullView(warn)
	if isTerminal(warn) {
		progress = func(p oci.Progress) {
			if p.Status != oci.StatusCached {
				view.update(p)
			}
		}
	}
	img, art, err := ociartifact.Pull(ctx, store, ref, dir, progress)
	view.finish()
	if err != nil {
		return guestimage.Image{}, nil, err
	}
	if art.Warning != "" {
		fmt.Fprintf(warn, "voidbox: warning: guest image: %s\n", termsafe.Clean(art.Warning))
	}
	return img, art, nil
}

// printImage prints img and, when it came from a guest image reference, art.
func printImage(env *cliEnv, img guestimage.Image, art *oci.Image) {
	fmt.Fprintf(env.stdout, "kernel:    %s\ninitramfs: %s\nrelease:   %s\nsha256:    %s\n", img.Kernel, img.Initramfs, img.Release, img.SHA256)
	if img.KernelOrigin != "" {
		fmt.Fprintf(env.stdout, "origin:    %s\n", img.KernelOrigin)
	}
	if img.ConfigSHA256 != "" {
		fmt.Fprintf(env.stdout, "config:    sha256 %s (guestimage/kconfig/microvm.config)\n", img.ConfigSHA256)
	}
	if art != nil {
		fmt.Fprintf(env.stdout, "from:      %s\n", pinned(art))
	}
}
