package chv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"golang.org/x/sys/unix"
)

// Version starts cloud-hypervisor briefly, reads its version from vmm.ping and
// shuts it down again. binary may be empty (cloud-hypervisor on PATH). It does
// not need KVM: the VMM answers its API before any VM exists.
func Version(ctx context.Context, binary string) (string, error) {
	if binary == "" {
		binary = DefaultBinary
	}
	bin, err := lookBinary(binary)
	if err != nil {
		return "", err
	}
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "chv-version-")
	if err != nil {
		return "", fmt.Errorf("chv: version: %w", err)
	}
	defer os.RemoveAll(dir)
	p := vmPaths{API: filepath.Join(dir, "api.sock"), Log: filepath.Join(dir, "vmm.log")}
	proc, err := startProc("cloud-hypervisor", bin, []string{"--api-socket", "path=" + p.API, "--seccomp", "true"}, p.Log)
	if err != nil {
		return "", fmt.Errorf("chv: version: %w", err)
	}
	defer func() {
		proc.kill()
		<-proc.done
	}()
	c := newClient(p.API)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	info, err := c.waitPing(pctx, proc.done)
	cancel()
	if err != nil {
		return "", fmt.Errorf("chv: version of %s: %w%s", bin, err, quoteTail("vmm.log", p.Log, 1024))
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c.put(sctx, "vmm.shutdown", nil) == nil {
		select {
		case <-proc.done:
		case <-sctx.Done():
		}
	}
	return info.Version, nil
}

// kvmAPIVersion is the only KVM API version Linux has ever reported.
const kvmAPIVersion = 12

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// KVMUsable opens /dev/kvm and asks for its API version. nil means the device
// answers, which is necessary but not sufficient: a nested or paravirtual KVM
// can answer and still fail a real guest. Only a probe boot (Driver.ProbeBoot)
// proves that guests run.
func KVMUsable() error {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("chv: open /dev/kvm: %w (is KVM enabled and are you in the kvm group?)", err)
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("chv: KVM_GET_API_VERSION on /dev/kvm: %w", err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("chv: /dev/kvm reports API version %d, want %d", v, kvmAPIVersion)
	}
	return nil
}

// ProbeBoot boots kernel+initramfs (the voidbox guest image) under this
// driver and reports whether the guest came up: its agent answered on the
// vsock port, or it powered off cleanly by itself. detail says what happened
// either way, for voidbox doctor and for --sandbox auto's choice.
func (d *Driver) ProbeBoot(ctx context.Context, kernel, initramfs string) (ok bool, detail string) {
	dir, err := os.MkdirTemp("", "chv-probe-")
	if err != nil {
		return false, fmt.Sprintf("probe state dir: %v", err)
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	m, err := d.boot(ctx, runtime.VMConfig{
		Name: "kvm-probe", Kernel: kernel, Initramfs: initramfs,
		MemoryMB: 256, VCPUs: 1, StateDir: dir,
	})
	if err != nil {
		return false, err.Error()
	}
	defer m.Kill()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := m.DialAgent(dctx)
	if err == nil {
		c.Close()
		return true, fmt.Sprintf("guest agent answered on vsock port %d %s after boot", AgentPort, time.Since(start).Round(time.Millisecond))
	}
	select {
	case <-m.Done():
		if m.Err() == nil {
			return true, "guest booted and powered off by itself"
		}
		return false, m.Err().Error()
	default:
		return false, err.Error()
	}
}
