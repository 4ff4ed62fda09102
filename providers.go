package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"github.com/voidbox/voidbox/chv"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmstate"
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
	vmm       string
	accel     string
	kernel    string
	initramfs string
}

func addVMFlags(fs *pflag.FlagSet) *vmSettings {
	s := &vmSettings{}
	fs.StringVar(&s.vmm, "vmm", "auto", "VMM for --sandbox vm: auto|cloud-hypervisor|qemu (auto prefers Cloud Hypervisor where KVM works)")
	fs.StringVar(&s.accel, "accel", "", "QEMU accelerator: auto|kvm|tcg (default $VOIDBOX_ACCEL, then auto: KVM only if a probe boot succeeds)")
	fs.StringVar(&s.kernel, "kernel", "", "guest kernel (default $VOIDBOX_KERNEL, then the image built by 'voidbox guest build')")
	fs.StringVar(&s.initramfs, "initramfs", "", "guest initramfs (default $VOIDBOX_INITRAMFS, then the built image)")
	return s
}

// openProvider builds the sandbox provider a run asked for. The returned func releases
// what the provider holds.
func openProvider(kind string, vs vmSettings, warn io.Writer) (runtime.Provider, func(), error) {
	noop := func() {}
	switch kind {
	case "mock":
		script := mock.Script{}
		if path := os.Getenv(envMockScript); path != "" {
			var err error
			if script, err = mock.LoadScript(path); err != nil {
				return nil, noop, fmt.Errorf("%w: $%s: %v", errUsage, envMockScript, err)
			}
		}
		return mock.New(script), noop, nil
	case "local":
		// Say it before the live view starts, not in the middle of it.
		fmt.Fprintln(warn, local.Warning)
		return local.New(io.Discard), noop, nil
	case "auto", "vm":
		p, err := openVM(vs, warn)
		if err != nil {
			return nil, noop, err
		}
		return p, noop, nil
	}
	return nil, noop, fmt.Errorf("%w: --sandbox must be auto, vm, local or mock, got %q", errUsage, kind)
}

// openVM resolves the guest image and picks the VMM: Cloud Hypervisor when its binary
// is here and a probe boot under KVM succeeds, else QEMU (KVM if its probe boots, else TCG).
func openVM(vs vmSettings, warn io.Writer) (*vm.Provider, error) {
	if _, err := vmstate.Sweep(); err != nil {
		fmt.Fprintf(warn, "voidbox: warning: cleaning up after earlier runs: %v\n", err)
	}
	img, err := guestimage.Resolve(vs.kernel, vs.initramfs)
	if err != nil {
		return nil, fmt.Errorf("no microVM sandbox: %w\n(or run stages as host processes, without isolation: --sandbox local)", err)
	}
	vmm, err := chooseVMM(vs, img, warn)
	if err != nil {
		return nil, err
	}
	return vm.New(vm.Options{VMM: vmm, Kernel: img.Kernel, Initramfs: img.Initramfs})
}

func chooseVMM(vs vmSettings, img guestimage.Image, warn io.Writer) (runtime.VMM, error) {
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
		return newQEMU(vs, warn)
	case "auto":
		if _, err := chv.Available(); err == nil && chv.KVMUsable() == nil {
			d := chv.New(chv.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ok, detail := d.ProbeBoot(ctx, img.Kernel, img.Initramfs)
			cancel()
			if ok {
				return d, nil
			}
			fmt.Fprintf(warn, "voidbox: Cloud Hypervisor is installed but its probe boot failed (%s); using QEMU\n", detail)
		}
		return newQEMU(vs, warn)
	}
	return nil, fmt.Errorf("%w: --vmm must be auto, cloud-hypervisor or qemu, got %q", errUsage, vs.vmm)
}

func newQEMU(vs vmSettings, warn io.Writer) (runtime.VMM, error) {
	v, err := qemu.New(qemu.Options{Accel: vs.accel, Notice: warn})
	if err != nil {
		return nil, fmt.Errorf("no microVM sandbox: %w\n(run 'voidbox doctor' for what is missing and how to install it)", err)
	}
	return v, nil
}
