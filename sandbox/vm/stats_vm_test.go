package vm

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// samples runs args in s with a sample receiver and returns what the guest sent.
func samples(t testing.TB, s *Sandbox, args ...string) []runtime.GuestSample {
	t.Helper()
	var mu sync.Mutex
	var got []runtime.GuestSample
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctx = runtime.WithGuestSampler(ctx, func(g runtime.GuestSample) {
		mu.Lock()
		got = append(got, g)
		mu.Unlock()
	})
	res, err := s.Exec(ctx, runtime.ExecRequest{Args: args, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec %q: exit %d, %v", args, res.ExitCode, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// checkSane fails on a sample no 512 MiB, one-vCPU guest can give.
func checkSane(t *testing.T, what string, got []runtime.GuestSample) {
	t.Helper()
	for i, g := range got {
		if g.CPU != nil && (*g.CPU < 0 || *g.CPU > 1) {
			t.Errorf("%s sample %d: CPU %v out of 0..1", what, i, *g.CPU)
		}
		if g.MemTotalBytes == 0 || g.MemTotalBytes > 512<<20 || g.MemBytes == 0 || g.MemBytes > g.MemTotalBytes {
			t.Errorf("%s sample %d: memory %d of %d bytes, want 0 < used <= total <= 512 MiB", what, i, g.MemBytes, g.MemTotalBytes)
		}
		if g.Procs < 2 || g.Procs > 1000 {
			t.Errorf("%s sample %d: %d processes, want the agent, the stage and kernel threads (2..1000)", what, i, g.Procs)
		}
		if g.NetRxBytes != 0 || g.NetTxBytes != 0 {
			t.Errorf("%s sample %d: %d/%d network bytes in a box without network", what, i, g.NetRxBytes, g.NetTxBytes)
		}
		if i > 0 && g.At.Before(got[i-1].At) {
			t.Errorf("%s sample %d at %v is before sample %d", what, i, g.At, i-1)
		}
	}
}

// A stage that burns CPU, then fills 40 MiB of tmpfs, is seen doing both; a `true`
// gives at most its end's sample, with nothing made up.
func TestGuestSamplesInRealVM(t *testing.T) {
	s := open(t, runtime.SandboxSpec{Name: "stats", MemoryMB: 512, VCPUs: 1})
	got := samples(t, s, "sh", "-c",
		`i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/tmp/x bs=1M count=40 2>/dev/null; sleep 1`)
	checkSane(t, "busy", got)
	if len(got) < 3 {
		t.Fatalf("a stage of several seconds sent %d samples, want one per %v", len(got), sampleInterval)
	}
	var peakCPU float64
	peakMem := got[0].MemBytes
	for _, g := range got {
		if g.CPU != nil {
			peakCPU = max(peakCPU, *g.CPU)
		}
		peakMem = max(peakMem, g.MemBytes)
	}
	if peakCPU <= 0.5 {
		t.Errorf("a shell loop on one vCPU peaked at CPU %.2f, want > 0.5", peakCPU)
	}
	if rise := int64(peakMem) - int64(got[0].MemBytes); rise < 30<<20 {
		t.Errorf("40 MiB written to tmpfs raised memory in use by %d MiB, want >= 30", rise>>20)
	}
	t.Logf("%d samples; CPU peak %.2f; memory %d -> %d MiB of %d; %d processes at the end",
		len(got), peakCPU, got[0].MemBytes>>20, peakMem>>20, got[0].MemTotalBytes>>20, got[len(got)-1].Procs)

	short := samples(t, s, "true")
	if len(short) > 2 {
		t.Errorf("`true` sent %d samples, want its end's (and at most one tick's)", len(short))
	}
	checkSane(t, "true", short)
}
