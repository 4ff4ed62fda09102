package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"
	"github.com/voidbox/voidbox/agent/claudecode"
	"github.com/voidbox/voidbox/chv"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/local"
	"github.com/voidbox/voidbox/sandbox/mock"
	"github.com/voidbox/voidbox/sandbox/vm"
)

// envMockScript names a JSON file of scripted replies for --sandbox mock.
const envMockScript = "VOIDBOX_MOCK_SCRIPT"

// vmSettings are the flags that choose and configure the microVM sandbox.
type vmSettings struct {
	guestSource  // --kernel, --initramfs, --guest-image, --insecure-registry
	vmm          string
	accel        string
	networkLog   string
	agentVersion string
	warm         string // --warm: auto or off (cmd_snapshot.go)
	// console receives every VM's console lines (see consoleSink); nil drops them.
	console func(stage, line string)
}

func addVMFlags(fs *pflag.FlagSet) *vmSettings {
	s := &vmSettings{}
	fs.StringVar(&s.vmm, "vmm", "auto", "VMM for --sandbox vm: auto|cloud-hypervisor|qemu (auto prefers Cloud Hypervisor where KVM works)")
	fs.StringVar(&s.accel, "accel", "", "QEMU accelerator: auto|kvm|tcg (default $VOIDBOX_ACCEL, then auto: KVM only if a probe boot succeeds)")
	fs.StringVar(&s.kernel, "kernel", "", "guest kernel (default $VOIDBOX_KERNEL, then the image built by 'voidbox guest build')")
	fs.StringVar(&s.initramfs, "initramfs", "", "guest initramfs (default $VOIDBOX_INITRAMFS, then the built image)")
	addGuestImageFlags(fs, &s.guestSource)
	fs.StringVar(&s.agentVersion, "agent-version", "", "claude-code version agent boxes run (default: the pinned one; installed on first use, see 'voidbox agent install')")
	fs.StringVar(&s.warm, "warm", "auto", "start stages from a snapshot of a booted guest when their VM allows it: auto|off (see 'voidbox snapshot')")
	fs.StringVar(&s.networkLog, "network-log", "", "append every egress decision of networked boxes to this file as JSON lines (- for stderr)")
	return s
}

// validate checks the VM flags (and $VOIDBOX_ACCEL) whatever the sandbox, so a typo is a
// usage error at once rather than a failure, or nothing, later.
func (vs vmSettings) validate() error {
	switch vs.vmm {
	case "auto", "cloud-hypervisor", "qemu":
	default:
		return usageErrorf("--vmm must be auto, cloud-hypervisor or qemu, got %q", vs.vmm)
	}
	if vs.warm != "auto" && vs.warm != "off" {
		return usageErrorf("--warm must be auto or off, got %q", vs.warm)
	}
	accel, from := vs.accelChoice()
	switch accel {
	case "auto", "kvm", "tcg":
	default:
		return usageErrorf("%s must be auto, kvm or tcg, got %q", from, accel)
	}
	_, _, err := vs.guestRef()
	return err
}

// accelChoice is the QEMU accelerator asked for and where: --accel, else
// $VOIDBOX_ACCEL, else "auto" (from "").
func (vs vmSettings) accelChoice() (accel, from string) {
	if vs.accel != "" {
		return vs.accel, "--accel"
	}
	if a := os.Getenv(qemu.EnvAccel); a != "" {
		return a, "$" + qemu.EnvAccel
	}
	return "auto", ""
}

// openProvider builds the sandbox provider a run asked for. The returned func releases
// what the provider holds. Notices about the sandbox (the local sandbox's warning, the
// TCG fallback) go to warn now, before any stage runs; verbose adds their details.
func openProvider(ctx context.Context, kind string, vs vmSettings, verbose bool, warn io.Writer) (runtime.Provider, func(), error) {
	noop := func() {}
	if err := vs.validate(); err != nil {
		return nil, noop, err
	}
	switch kind {
	case "mock":
		script := mock.Script{}
		if path := os.Getenv(envMockScript); path != "" {
			var err error
			if script, err = mock.LoadScript(path); err != nil {
				return nil, noop, usageErrorf("$%s: %w", envMockScript, err)
			}
		}
		return mock.New(script), noop, nil
	case "local":
		// Say it before the live view starts, not in the middle of it.
		fmt.Fprintln(warn, local.Warning)
		return local.New(io.Discard), noop, nil
	case "auto", "vm":
		log, closeLog, err := openNetworkLog(vs.networkLog, warn)
		if err != nil {
			return nil, noop, err
		}
		p, err := openVM(ctx, vs, log, verbose, warn)
		if err != nil {
			closeLog()
			return nil, noop, err
		}
		return p, closeLog, nil
	}
	return nil, noop, usageErrorf("--sandbox must be auto, vm, local or mock, got %q", kind)
}

// openVM resolves the guest image and picks the VMM: Cloud Hypervisor when its binary
// is here and a probe boot under KVM succeeds, else QEMU (KVM if its probe boots, else TCG).
func openVM(ctx context.Context, vs vmSettings, netLog *slog.Logger, verbose bool, warn io.Writer) (*vm.Provider, error) {
	if _, err := vmstate.Sweep(); err != nil {
		fmt.Fprintf(warn, "voidbox: warning: cleaning up after earlier runs: %v\n", err)
	}
	img, _, err := resolveGuest(ctx, vs.guestSource, warn)
	if err != nil {
		return nil, fmt.Errorf("no microVM sandbox: %w\n(or run stages as host processes, without isolation: --sandbox local)", err)
	}
	vmm, err := chooseVMM(ctx, vs, img, verbose, warn)
	if err != nil {
		return nil, err
	}
	store, err := oci.Open(oci.Options{Insecure: vs.insecure})
	if err != nil {
		if errors.Is(err, oci.ErrBadReference) {
			return nil, usageErrorf("--insecure-registry: %w", err)
		}
		return nil, err
	}
	if vs.agentVersion != "" {
		if err := claudecode.CheckVersion(vs.agentVersion); err != nil {
			return nil, usageErrorf("--agent-version: %w", err)
		}
	}
	warm, err := warmOptions(vs, warn)
	if err != nil {
		return nil, err
	}
	return vm.New(vm.Options{VMM: vmm, Kernel: img.Kernel, Initramfs: img.Initramfs, Network: network.Config{Log: netLog}, Images: store,
		AgentVersion: vs.agentVersion, Console: vs.console, Warm: warm})
}

// openNetworkLog opens --network-log: nil (no log) for "", stderr for "-", else the
// file, appended to and private to the user (decisions name what a stage reached).
func openNetworkLog(path string, stderr io.Writer) (*slog.Logger, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, usageErrorf("--network-log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }, nil
}

func chooseVMM(ctx context.Context, vs vmSettings, img guestimage.Image, verbose bool, warn io.Writer) (runtime.VMM, error) {
	switch vs.vmm {
	case "cloud-hypervisor":
		if _, err := chv.Available(); err != nil {
			return nil, fmt.Errorf("--vmm cloud-hypervisor: %w", err)
		}
		if err := chv.KVMUsable(); err != nil {
			return nil, fmt.Errorf("--vmm cloud-hypervisor: %w", err)
		}
		return chv.New(chv.Options{}), nil
	case "qemu":
		return newQEMU(ctx, vs, img, verbose, warn)
	case "auto":
		if _, err := chv.Available(); err == nil && chv.KVMUsable() == nil {
			d := chv.New(chv.Options{})
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ok, detail := d.ProbeBoot(pctx, img.Kernel, img.Initramfs)
			cancel()
			if ok {
				return d, nil
			}
			if verbose {
				fmt.Fprintf(warn, "voidbox: Cloud Hypervisor is installed but its probe boot failed (%s); using QEMU\n", detail)
			} else {
				fmt.Fprintln(warn, "voidbox: Cloud Hypervisor is installed but its probe boot failed; using QEMU. Run 'voidbox doctor' for details.")
			}
		}
		return newQEMU(ctx, vs, img, verbose, warn)
	}
	return nil, usageErrorf("--vmm must be auto, cloud-hypervisor or qemu, got %q", vs.vmm)
}

func newQEMU(ctx context.Context, vs vmSettings, img guestimage.Image, verbose bool, warn io.Writer) (runtime.VMM, error) {
	var notice bytes.Buffer
	opts := qemu.Options{Accel: vs.accel, Notice: &notice}
	v, err := qemu.New(opts)
	if err != nil {
		return nil, fmt.Errorf("no microVM sandbox: %w\n(run 'voidbox doctor' for what is missing and how to install it)", err)
	}
	kvmFrom := ""
	if accel, from := vs.accelChoice(); accel == "kvm" {
		kvmFrom = from
	}
	if err := settleAccel(ctx, qemuAccel{v, opts}, img, &notice, verbose, warn, kvmFrom); err != nil {
		return nil, err
	}
	return v, nil
}

// accelSettler is the part of *qemu.VMM that settles the accelerator, with the KVM
// probe boot; tests fake it.
type accelSettler interface {
	Accel(ctx context.Context, kernel, initramfs string) (string, error)
	ProbeKVM(ctx context.Context, kernel, initramfs string) (qemu.ProbeResult, error)
}

// qemuAccel is a QEMU driver with the probe boot its options call for.
type qemuAccel struct {
	*qemu.VMM
	opts qemu.Options
}

// ProbeKVM reports whether a guest boots under KVM here; without /dev/kvm it does not
// try.
func (q qemuAccel) ProbeKVM(ctx context.Context, kernel, initramfs string) (qemu.ProbeResult, error) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return qemu.ProbeResult{Detail: "/dev/kvm does not exist"}, nil
	}
	return qemu.ProbeKVM(ctx, q.opts, kernel, initramfs)
}

// settleAccel makes QEMU's accelerator choice now, so that a fallback to TCG is announced
// once, before the first stage line, rather than by whichever stage boots first. notice
// is the buffer the driver writes its fallback notice to: its detail (QEMU's failure
// text) is for --verbose and 'voidbox doctor'; everyone else gets one short sentence.
//
// kvmFrom is set ("--accel", "$VOIDBOX_ACCEL") when KVM was asked for by name. Then
// nothing falls back: unless a probe boot under KVM succeeds the run does not start.
// The driver would not fall back either, but every stage would fail its boot on its
// own (or hang in a broken KVM until the boot timeout); one error up front says why.
func settleAccel(ctx context.Context, v accelSettler, img guestimage.Image, notice *bytes.Buffer, verbose bool, warn io.Writer, kvmFrom string) error {
	if kvmFrom != "" {
		res, err := v.ProbeKVM(ctx, img.Kernel, img.Initramfs)
		if err != nil {
			return fmt.Errorf("no microVM sandbox: %s kvm: %w", kvmFrom, err)
		}
		if !res.OK {
			why := kvmWhy()
			if verbose {
				why = res.Detail
			}
			return fmt.Errorf("no microVM sandbox: %s kvm, but KVM does not work here (%s), and voidbox does not fall back to TCG when KVM is asked for. "+
				"Use --accel auto or tcg to run under TCG software emulation (which QEMU does not treat as a security boundary), or see 'voidbox doctor'", kvmFrom, why)
		}
	}
	accel, err := v.Accel(ctx, img.Kernel, img.Initramfs)
	if err != nil {
		return fmt.Errorf("no microVM sandbox: choose QEMU's accelerator: %w", err)
	}
	if accel != "tcg" || notice.Len() == 0 {
		return nil // KVM works, or TCG was asked for: nothing to announce
	}
	// A notice that cannot be written (stderr gone) is no reason to stop the run.
	if verbose {
		_, _ = warn.Write(notice.Bytes())
		return nil
	}
	fmt.Fprintf(warn, "voidbox: KVM does not work here (%s); using QEMU with TCG software emulation (slower, and not a security boundary by QEMU's own policy). Run 'voidbox doctor' for details.\n", kvmWhy())
	return nil
}

// kvmWhy is the short reason KVM does not work, for one-line messages; QEMU's own text
// is for --verbose and 'voidbox doctor'.
func kvmWhy() string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "no /dev/kvm"
	}
	return "probe boot failed"
}
