package vm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
)

// runRecorded runs one stage on a provider built with kernelArgs and returns its result
// and the state dir of the VM it booted ("" if none opened).
func runRecorded(t *testing.T, st *runtime.Stage, kernelArgs ...string) (*runtime.StageResult, *Sandbox) {
	t.Helper()
	img := vmtest.Image(t)
	base, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs, KernelArgs: kernelArgs})
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProvider{Provider: base, opened: make(chan *Sandbox, 1)}
	res, err := (&runtime.Executor{Provider: p}).Run(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var sb *Sandbox
	select {
	case sb = <-p.opened:
		vmtest.WaitNoVMs(t, sb.Machine().(*qemu.Machine).StateDir(), 10*time.Second)
	default:
	}
	return res.Stages[st.Name], sb
}

func phase(sr *runtime.StageResult, name string) *runtime.Phase {
	for i := range sr.Phases {
		if sr.Phases[i].Name == name {
			return &sr.Phases[i]
		}
	}
	return nil
}

// A stage's start-up is split where the guest agent first speaks: vm.boot before,
// agent.connect after, then the executor's own phases.
func TestStartPhases(t *testing.T) {
	sr, _ := runRecorded(t, &runtime.Stage{Name: "phases", Cmd: []string{"true"}, MemoryMB: 256, VCPUs: 1})
	if sr.Status != runtime.StatusOK {
		t.Fatalf("stage %s: %s", sr.Status, sr.Error)
	}
	var names []string
	for _, p := range sr.Phases {
		names = append(names, p.Name)
		if p.Error != "" || p.Attempt != 1 {
			t.Errorf("phase %+v: want attempt 1 and no error", p)
		}
	}
	want := []string{runtime.PhasePrepare, runtime.PhaseBoot, runtime.PhaseConnect, runtime.PhaseWriteFile, runtime.PhaseExec, runtime.PhaseClose}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("phases %v, want %v", names, want)
	}
	boot, connect := phase(sr, runtime.PhaseBoot), phase(sr, runtime.PhaseConnect)
	// A kernel boot under emulation takes hundreds of milliseconds; the handshake that
	// follows the agent's first word is a few round trips.
	if boot.Duration < 100*time.Millisecond || !strings.HasPrefix(boot.Detail, "qemu") {
		t.Errorf("vm.boot %s (detail %q): want the guest's boot, over 100ms, by qemu", boot.Duration, boot.Detail)
	}
	if connect.Duration >= boot.Duration {
		t.Errorf("agent.connect %s is not shorter than vm.boot %s: the split is not at the agent's first word", connect.Duration, boot.Duration)
	}
	if gap := connect.Start.Sub(boot.Start.Add(boot.Duration)); gap < 0 || gap > time.Millisecond {
		t.Errorf("agent.connect starts %s after vm.boot ends, want it to start where vm.boot ends", gap)
	}
	t.Logf("vm.boot %s, agent.connect %s, exec %dms, close %dms", boot.Duration, connect.Duration, phase(sr, runtime.PhaseExec).DurationMS, phase(sr, runtime.PhaseClose).DurationMS)
}

// A guest that never reaches its agent ends the start-up in a failed vm.boot, without an
// agent.connect phase.
func TestBootPhaseFailure(t *testing.T) {
	st := &runtime.Stage{Name: "noinit", Cmd: []string{"true"}, MemoryMB: 256, VCPUs: 1}
	sr, sb := runRecorded(t, st, "rdinit=/no/such/init")
	vmtest.WaitNoVMs(t, "voidbox-noinit", 10*time.Second) // QEMU's -name
	if sb != nil || sr.Status != runtime.StatusFailed {
		t.Fatalf("stage %s (sandbox opened: %v): want a failed boot", sr.Status, sb != nil)
	}
	boot := phase(sr, runtime.PhaseBoot)
	if boot == nil || boot.Error == "" {
		t.Fatalf("phases %+v: want a failed vm.boot", sr.Phases)
	}
	if phase(sr, runtime.PhaseConnect) != nil || phase(sr, runtime.PhaseExec) != nil {
		t.Errorf("phases %+v: nothing should follow a failed boot", sr.Phases)
	}
	t.Logf("vm.boot error: %s", boot.Error)
}
