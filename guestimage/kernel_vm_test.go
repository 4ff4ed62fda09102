package guestimage_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/vm"
)

// TestRunningKernelHoldsTheFragment boots the built image and reads the
// running kernel's own config (/proc/config.gz) from a stage process: the
// choices the fragment makes, hardening above all, hold in the guest, and
// nothing module-shaped is reachable.
func TestRunningKernelHoldsTheFragment(t *testing.T) {
	img := vmtest.Image(t)
	if img.KernelKind != guestimage.KernelVoidbox {
		t.Skipf("the suite boots the %s kernel ($%s); these are the voidbox kernel's choices", img.KernelKind, vmtest.EnvKernel)
	}
	p, err := vm.New(vm.Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sb, err := p.Open(ctx, runtime.SandboxSpec{Name: "kconfig", MemoryMB: 256, VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	var out, errOut bytes.Buffer
	res, err := sb.Exec(ctx, runtime.ExecRequest{
		Args:   []string{"sh", "-c", "zcat /proc/config.gz; echo '#' modules: $(cat /proc/modules 2>&1 | head -c 80); echo '#' libmodules: $(ls /lib/modules 2>&1)"},
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("read the guest's config: exit %d, %v: %s", res.ExitCode, err, errOut.String())
	}
	running := guestimage.ParseKernelConfig(out.Bytes())
	if len(running) < 100 {
		t.Fatalf("the guest's /proc/config.gz has %d symbols; is CONFIG_IKCONFIG_PROC on?\n%s", len(running), out.String())
	}
	if err := guestimage.CheckKernelConfig(guestimage.KernelFragment(), out.Bytes()); err != nil {
		t.Errorf("running kernel differs from the fragment: %v", err)
	}
	for _, sym := range guestimage.HardeningOff {
		if v := running[sym]; v != "" {
			t.Errorf("running guest kernel has %s=%s; the fragment leaves it out", sym, v)
		}
	}
	for _, want := range []string{"# modules: cat: can't open '/proc/modules': No such file or directory", "# libmodules: ls: /lib/modules: No such file or directory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("guest output lacks %q (no module support, no modules shipped)", want)
		}
	}
}
