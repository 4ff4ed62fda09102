package chv

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/runtime"
)

// TestKVMUsable checks the device probe against what the machine has: no
// device must be an error naming /dev/kvm; a device that opens must answer
// with API version 12 (any other answer is an error saying so).
func TestKVMUsable(t *testing.T) {
	err := KVMUsable()
	if _, serr := os.Stat("/dev/kvm"); serr != nil {
		if err == nil || !strings.Contains(err.Error(), "/dev/kvm") {
			t.Fatalf("no /dev/kvm, KVMUsable() = %v", err)
		}
		return
	}
	if err != nil && !strings.Contains(err.Error(), "/dev/kvm") {
		t.Fatalf("KVMUsable() = %v; errors must name /dev/kvm", err)
	}
	t.Logf("KVMUsable() = %v (a probe boot is still needed to trust it)", err)
}

// TestEndToEnd boots the real guest image under a real Cloud Hypervisor:
// the guest agent must answer on its vsock port, and shutdown must leave no
// process or socket behind.
func TestEndToEnd(t *testing.T) {
	d, img := realDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "chv-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	m, err := d.boot(ctx, runtime.VMConfig{Name: "e2e", Kernel: img.Kernel, Initramfs: img.Initramfs,
		MemoryMB: 512, VCPUs: 1, StateDir: dir, Shares: []runtime.Share{{Tag: "work", HostPath: t.TempDir()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	start := time.Now()
	c, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("agent: %v\nconsole:\n%s", err, m.ConsoleTail(4096))
	}
	c.Close()
	t.Logf("agent answered %v after boot", time.Since(start))
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	if err := m.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(m.p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("cloud-hypervisor still exists after Shutdown")
	}
}

// realDriver is the driver for a real Cloud Hypervisor and the guest image, or skips
// the test saying what the machine lacks (a -short run, the binary, a working KVM).
func realDriver(t *testing.T) (*Driver, guestimage.Image) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real VM boot; run without -short")
	}
	bin, err := Available()
	if err != nil {
		t.Skipf("cloud-hypervisor binary not on PATH: %v", err)
	}
	if err := KVMUsable(); err != nil {
		t.Skipf("KVM not usable here: %v", err)
	}
	img, err := guestimage.Resolve("", "")
	if err != nil {
		t.Fatalf("cloud-hypervisor and KVM are here but the guest image is not: %v", err)
	}
	d := New(Options{Binary: bin})
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	if ok, detail := d.ProbeBoot(ctx, img.Kernel, img.Initramfs); !ok {
		t.Skipf("KVM not usable here: probe boot under %s failed: %s", bin, detail)
	}
	return d, img
}
