package chv

import (
	"context"
	"os"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

// TestEndToEndSnapshot saves the real guest under a real Cloud Hypervisor once its
// agent answers, and restores it twice at once: each restored guest's agent must
// answer on its own vsock socket, and both must go without a trace. (The warm agent's
// re-key is sandbox/vm's business; this is the VMM's part.)
func TestEndToEndSnapshot(t *testing.T) {
	d, img := realDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	if _, err := d.SnapshotID(ctx, img.Kernel, img.Initramfs); err != nil {
		t.Fatal(err)
	}
	shortDir := func() string {
		dir, err := os.MkdirTemp("", "chv-snap-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	snap := shortDir()
	cfg := runtime.VMConfig{Name: "snap", Kernel: img.Kernel, Initramfs: img.Initramfs, MemoryMB: 256, VCPUs: 1, StateDir: shortDir()}
	rm, err := d.SnapshotBoot(ctx, cfg, snap)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rm.DialAgent(ctx)
	if err != nil {
		rm.Kill()
		t.Fatalf("agent: %v\nconsole:\n%s", err, rm.ConsoleTail(4096))
	}
	c.Close()
	if err := d.SaveSnapshot(ctx, rm, snap); err != nil {
		t.Fatal(err)
	}
	checkGone(t, rm.(*machine))
	ms := make([]runtime.Machine, 2)
	errs := make(chan error, 2)
	for i := range ms {
		rcfg := cfg
		rcfg.Name, rcfg.StateDir = "restored", shortDir()
		go func() {
			m, err := d.Restore(ctx, rcfg, snap)
			ms[i] = m
			errs <- err
		}()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, m := range ms {
		if m == nil {
			continue
		}
		c, err := m.DialAgent(ctx)
		if err != nil {
			t.Errorf("restored agent: %v\nconsole:\n%s", err, m.ConsoleTail(4096))
		} else {
			c.Close()
		}
		if err := m.Kill(); err != nil {
			t.Error(err)
		}
		checkGone(t, m.(*machine))
	}
}
