package vm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
)

// recordingProvider hands out the sandboxes it opens so the test can reach their VMs.
type recordingProvider struct {
	*Provider
	opened chan *Sandbox
}

func (p *recordingProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	sb, err := p.Provider.Open(ctx, spec)
	if err == nil {
		p.opened <- sb.(*Sandbox)
	}
	return sb, err
}

// A guest kernel panic in the middle of a stage becomes that stage's error, quoting the
// guest console, and leaves no VM process or state dir behind.
func TestKernelPanicFailsStageWithConsole(t *testing.T) {
	img := vmtest.Image(t)
	base, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs, KernelArgs: []string{"sysctl.kernel.panic_on_unrecovered_nmi=1"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProvider{Provider: base, opened: make(chan *Sandbox, 1)}
	st := &runtime.Stage{Name: "doomed", Cmd: []string{"sh", "-c", "echo started; sleep 120"}, MemoryMB: 256, VCPUs: 1, Timeout: 3 * time.Minute, OnFailure: runtime.FailStop}
	done := make(chan *runtime.Result, 1)
	go func() {
		res, err := (&runtime.Executor{Provider: p}).Run(context.Background(), st)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var sb *Sandbox
	select {
	case sb = <-p.opened:
	case <-time.After(3 * time.Minute):
		t.Fatal("sandbox never opened")
	}
	time.Sleep(time.Second) // let the exec start
	m := sb.Machine().(*qemu.Machine)
	vmDir := m.StateDir()
	if err := m.InjectNMI(context.Background()); err != nil {
		t.Fatal(err)
	}
	var res *runtime.Result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("stage did not end after the guest kernel panicked; console:\n%s", m.ConsoleTail(1500))
	}
	got := res.Stages["doomed"]
	if res.OK || got.Status != runtime.StatusFailed {
		t.Fatalf("result %+v", got)
	}
	for _, want := range []string{"guest kernel panic", "Kernel panic - not syncing", "console tail:", "Kernel Offset:"} {
		if !strings.Contains(got.Error, want) {
			t.Errorf("stage error lacks %q:\n%s", want, got.Error)
		}
	}
	t.Logf("stage error:\n%s", got.Error)
	vmtest.WaitNoVMs(t, vmDir, 10*time.Second)
	for _, dir := range []string{sb.stateDir, vmDir} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir %s left after the crash (stat: %v)", dir, err)
		}
	}
}
