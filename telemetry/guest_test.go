package telemetry

import (
	"context"
	"net/http/httptest"
	"testing"

	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/voidbox/voidbox/runtime"
)

// Guest samples arrive at a real OTLP receiver as voidbox.guest.* metrics with their
// units, kinds and attributes; network bytes add up across a retried stage's guests.
func TestGuestMetricsAtReceiver(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	ctx := context.Background()
	tel, err := Setup(ctx, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{"VOIDBOX_OTLP_ENDPOINT": srv.URL})})
	if err != nil {
		t.Fatal(err)
	}
	_, rt := tel.Run(ctx, "guest.star")
	rt.Describe(graph())
	cpu := func(v float64) *float64 { return &v }
	sample := func(stage string, s runtime.GuestSample) {
		rt.OnEvent(runtime.Event{Stage: stage, Kind: runtime.EventSample, Sample: &s})
	}
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventStart, Attempt: 1})
	sample("b", runtime.GuestSample{CPU: cpu(0.25), MemBytes: 50 << 20, MemTotalBytes: 480 << 20, NetRxBytes: 1000, NetTxBytes: 10, Procs: 60})
	sample("b", runtime.GuestSample{MemBytes: 70 << 20, MemTotalBytes: 480 << 20, NetRxBytes: 1500, NetTxBytes: 10, Procs: 61}) // no CPU value
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventRetry, Attempt: 2})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventStart, Attempt: 2})
	sample("b", runtime.GuestSample{CPU: cpu(0.75), MemBytes: 90 << 20, MemTotalBytes: 480 << 20, NetRxBytes: 200, NetTxBytes: 5, Procs: 58})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventSample}) // no sample: ignored
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventEnd, Attempt: 2, Result: &runtime.StageResult{Name: "b", Status: runtime.StatusOK, Attempts: 2}})
	rt.End(&runtime.Result{OK: true, Order: []string{"b"}})
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	byName := metricsByName(t, rcv.metrics.requests())
	stageB := map[string]string{"voidbox.stage.name": "b"}
	gauge := func(name, unit string, want float64) {
		t.Helper()
		m := namedMetric(t, byName, name, unit)
		switch {
		case m == nil:
		case m.GetGauge() == nil:
			t.Errorf("metric %s is %T, want a gauge", name, m.Data)
		default:
			pts := m.GetGauge().DataPoints
			if len(pts) != 1 || !matches(pts[0].Attributes, stageB) {
				t.Fatalf("metric %s points %v, want one for stage b", name, pts)
			}
			got := pts[0].GetAsDouble()
			if _, isInt := pts[0].Value.(*metricpb.NumberDataPoint_AsInt); isInt {
				got = float64(pts[0].GetAsInt())
			}
			if got != want {
				t.Errorf("metric %s = %v, want the last sample's %v", name, got, want)
			}
		}
	}
	gauge("voidbox.guest.cpu.utilization", "1", 0.75)
	gauge("voidbox.guest.memory.usage", "By", 90<<20)
	gauge("voidbox.guest.memory.limit", "By", 480<<20)
	gauge("voidbox.guest.processes", "{process}", 58)
	net := namedMetric(t, byName, "voidbox.guest.network.io", "By")
	switch {
	case net == nil:
	case !net.GetSum().GetIsMonotonic():
		t.Errorf("voidbox.guest.network.io is %T, want a monotonic sum (counter)", net.Data)
	default:
		// 1500 bytes in the first guest, 200 in the retry's; 10 and 5 sent.
		for dir, want := range map[string]float64{"receive": 1700, "transmit": 15} {
			if got := sumPoints(net, map[string]string{"voidbox.stage.name": "b", "network.io.direction": dir}); got != want {
				t.Errorf("voidbox.guest.network.io{direction=%s} = %v, want %v", dir, got, want)
			}
		}
	}
}
