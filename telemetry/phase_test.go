package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// bootingMock reports a VM sandbox's start-up phases from Open, as sandbox/vm does.
type bootingMock struct{ *mock.Provider }

func (p bootingMock) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	_ = runtime.Timed(ctx, runtime.PhaseBoot, "qemu/tcg", func() error {
		time.Sleep(3 * time.Millisecond)
		return nil
	})
	_ = runtime.Timed(ctx, runtime.PhaseConnect, "", func() error { return nil })
	return p.Provider.Open(ctx, spec)
}

// Each attempt's span has its phases as children, dated inside it; boot time and exec
// count arrive as metrics.
func TestPhaseSpansAndMetrics(t *testing.T) {
	rcv := &receiver{}
	ctx := context.Background()
	srv := startHTTP(t, rcv)
	tel, err := Setup(ctx, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{"VOIDBOX_OTLP_ENDPOINT": srv})})
	if err != nil {
		t.Fatal(err)
	}
	flaky := &runtime.Stage{Name: "flaky", Cmd: []string{"make"}, Retries: 1}
	runCtx, rt := tel.Run(ctx, "phases.star")
	rt.Describe(flaky)
	e := &runtime.Executor{
		Provider: bootingMock{mock.New(mock.Script{"flaky": {{ExitCode: 2}, {Stdout: "ok"}}})},
		OnEvent:  rt.OnEvent,
		Backoff:  func(int) time.Duration { return time.Millisecond },
	}
	res, err := e.Run(runCtx, flaky)
	if err != nil {
		t.Fatal(err)
	}
	rt.End(res)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	spans := allSpans(rcv.requests())
	attempts := map[string]*tracepb.Span{} // span id → attempt span
	for _, s := range spans {
		if s.Name == "stage flaky" {
			attempts[string(s.SpanId)] = s
		}
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2", len(attempts))
	}
	children := map[string][]string{} // attempt number → phase span names
	for _, s := range spans {
		parent := attempts[string(s.ParentSpanId)]
		if parent == nil || attr(s.Attributes, "voidbox.phase.name") == nil {
			continue
		}
		n := attrText(parent, "voidbox.stage.attempt")
		children[n] = append(children[n], s.Name)
		if s.StartTimeUnixNano < parent.StartTimeUnixNano || s.EndTimeUnixNano > parent.EndTimeUnixNano || s.EndTimeUnixNano < s.StartTimeUnixNano {
			t.Errorf("phase span %s (attempt %s) is not dated inside its attempt", s.Name, n)
		}
		// A process that ran and exited 2 is the attempt's failure, not its exec's:
		// the exec phase fails only when the process could not run.
		if s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("phase span %s of attempt %s has Error status, want Unset", s.Name, n)
		}
		if s.Name == "vm.boot" && (str(s.Attributes, "voidbox.phase.detail") != "qemu/tcg" || s.EndTimeUnixNano-s.StartTimeUnixNano < uint64(3*time.Millisecond)) {
			t.Errorf("vm.boot span: detail %q, %dns long; want qemu/tcg and the 3ms the provider slept", str(s.Attributes, "voidbox.phase.detail"), s.EndTimeUnixNano-s.StartTimeUnixNano)
		}
	}
	want := "vm.boot agent.connect file.write exec make sandbox.close"
	for _, n := range []string{"1", "2"} {
		if got := joinNames(children[n]); got != want {
			t.Errorf("attempt %s phase spans %q, want %q", n, got, want)
		}
	}
	checkPhaseMetrics(t, rcv.metrics.requests())
}

func joinNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += " "
		}
		out += n
	}
	return out
}

func checkPhaseMetrics(t *testing.T, reqs []*colmetricpb.ExportMetricsServiceRequest) {
	t.Helper()
	var boot, execs bool
	for _, req := range reqs {
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					switch m.Name {
					case "voidbox.vm.boot.duration":
						boot = true
						var count uint64
						for _, dp := range m.GetHistogram().GetDataPoints() {
							count += dp.Count
						}
						if m.Unit != "s" || count != 2 {
							t.Errorf("voidbox.vm.boot.duration: unit %q, %d boots; want s and 2", m.Unit, count)
						}
					case "voidbox.execs":
						execs = true
						if m.Unit != "{exec}" || sumPoints(m, map[string]string{"voidbox.phase.outcome": "ok"}) != 2 || sumPoints(m, map[string]string{"voidbox.phase.outcome": "error"}) != 0 {
							t.Errorf("voidbox.execs: unit %q, ok %v, error %v; want {exec}, 2 and 0 (a non-zero exit is not an exec error)", m.Unit,
								sumPoints(m, map[string]string{"voidbox.phase.outcome": "ok"}), sumPoints(m, map[string]string{"voidbox.phase.outcome": "error"}))
						}
					}
				}
			}
		}
	}
	if !boot || !execs {
		t.Errorf("metrics received: boot duration %v, execs %v; want both", boot, execs)
	}
}

// traceStage runs st on p with spans going to an in-process receiver and returns them.
func traceStage(t *testing.T, p runtime.Provider, st *runtime.Stage) []*tracepb.Span {
	t.Helper()
	rcv := &receiver{}
	ctx := context.Background()
	srv := startHTTP(t, rcv)
	tel, err := Setup(ctx, Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv + "/v1/traces"})})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, rt := tel.Run(ctx, st.Name+".star")
	res, err := (&runtime.Executor{Provider: p, OnEvent: rt.OnEvent}).Run(runCtx, st)
	if err != nil {
		t.Fatal(err)
	}
	rt.End(res)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return allSpans(rcv.requests())
}

// A process that could not run (the sandbox failed) makes its exec span an Error.
func TestFailedExecPhaseSpan(t *testing.T) {
	spans := traceStage(t, mock.New(mock.Script{"dies": {{Err: "vm died"}}}), &runtime.Stage{Name: "dies", Cmd: []string{"make"}})
	for _, s := range spans {
		if s.Name == "exec make" {
			if s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || !strings.HasSuffix(s.Status.GetMessage(), "vm died") {
				t.Errorf("exec span status %v, want Error ending \"vm died\"", s.Status)
			}
			return
		}
	}
	t.Fatal("no exec make span")
}

// egressMock reports two decisions of its network from Open, as sandbox/vm's network
// does while a stage runs.
type egressMock struct{ *mock.Provider }

func (p egressMock) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	runtime.ReportEgress(ctx, runtime.EgressDecision{Allowed: true, Proto: "dns", Name: "api.example.com", Entry: "api.example.com:443", Reason: "allowed name"})
	runtime.ReportEgress(ctx, runtime.EgressDecision{Proto: "tcp", Dst: "10.0.0.1", Port: 80, Reason: "private address", UnloggedBefore: 4})
	return p.Provider.Open(ctx, spec)
}

// Egress decisions are events on the attempt's span.
func TestEgressSpanEvents(t *testing.T) {
	spans := traceStage(t, egressMock{mock.New(nil)}, &runtime.Stage{Name: "net", Cmd: []string{"curl"}})
	var events []string
	for _, s := range spans {
		if s.Name != "stage net" {
			continue
		}
		for _, e := range s.Events {
			if e.Name == "egress" {
				events = append(events, str(e.Attributes, "voidbox.network.decision")+" "+str(e.Attributes, "voidbox.network.protocol")+" "+
					str(e.Attributes, "dns.question.name")+str(e.Attributes, "destination.address")+" "+str(e.Attributes, "voidbox.network.reason"))
				if str(e.Attributes, "destination.address") == "10.0.0.1" && (num(e.Attributes, "destination.port") != 80 || num(e.Attributes, "voidbox.network.unlogged_before") != 4) {
					t.Errorf("deny event attributes %v, want port 80 and 4 unlogged before", e.Attributes)
				}
			}
		}
	}
	want := "allow dns api.example.com allowed name|deny tcp 10.0.0.1 private address"
	if got := strings.Join(events, "|"); got != want {
		t.Errorf("egress events %q, want %q", got, want)
	}
}
