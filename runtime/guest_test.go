package runtime_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// samplingProvider's sandboxes report two guest samples from each Exec.
type samplingProvider struct{ *mock.Provider }

type samplingSandbox struct{ runtime.Sandbox }

func (p samplingProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	sb, err := p.Provider.Open(ctx, spec)
	return samplingSandbox{sb}, err
}

func (s samplingSandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	half, full := 0.5, 1.0
	runtime.ReportGuestSample(ctx, runtime.GuestSample{CPU: &half, MemBytes: 10 << 20, MemTotalBytes: 100 << 20, Procs: 3})
	runtime.ReportGuestSample(ctx, runtime.GuestSample{CPU: &full, MemBytes: 30 << 20, MemTotalBytes: 100 << 20, NetRxBytes: 5, Procs: 4})
	return s.Sandbox.Exec(ctx, req)
}

func TestGuestSamplesInResultAndEvents(t *testing.T) {
	var samples []string
	e := &runtime.Executor{Provider: samplingProvider{mock.New(nil)}, OnEvent: func(ev runtime.Event) {
		if ev.Kind == runtime.EventSample {
			samples = append(samples, ev.Stage)
			if ev.Sample == nil || ev.Sample.MemTotalBytes != 100<<20 {
				t.Errorf("sample event without its sample: %+v", ev)
			}
		}
	}}
	res := run(t, e, pipe(cmd("a"), cmd("b")))
	if strings.Join(samples, " ") != "a a b b" {
		t.Errorf("sample events for stages %q, want two for a then two for b", samples)
	}
	g := res.Stages["b"].Guest
	if g == nil || g.SampleCount != 2 || len(g.Samples) != 2 || *g.CPUPeak != 1 || g.MemPeakBytes != 30<<20 || g.MemStartBytes != 10<<20 || g.ProcsPeak != 4 || g.NetRxBytes != 5 {
		t.Fatalf("stage b's guest = %+v, want the two samples summarised", g)
	}
	b, err := json.Marshal(res.Stages["b"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"guest":{"sample_count":2,"samples":[{"t_ms":`, `"cpu":0.5,"mem_bytes":10485760,"net_rx_bytes":0,"net_tx_bytes":0,"procs":3}`, `"mem_peak_bytes":31457280,"mem_total_bytes":104857600`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("stage JSON %s lacks %s", b, want)
		}
	}
}

// The mock sandbox measures nothing: no guest object, no sample events.
func TestNoGuestSamplesWithoutAVM(t *testing.T) {
	e := &runtime.Executor{Provider: mock.New(nil), OnEvent: func(ev runtime.Event) {
		if ev.Kind == runtime.EventSample {
			t.Errorf("the mock sandbox produced a sample event: %+v", ev)
		}
	}}
	res := run(t, e, cmd("a"))
	if g := res.Stages["a"].Guest; g != nil {
		t.Errorf("a mock stage has guest stats %+v, want none (nothing was measured)", g)
	}
	if b, _ := json.Marshal(res.Stages["a"]); strings.Contains(string(b), "guest") {
		t.Errorf("a mock stage's JSON mentions guest: %s", b)
	}
}
