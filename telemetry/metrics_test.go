package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// metricsReceiver collects the ExportMetricsServiceRequests an exporter sends, over
// HTTP or gRPC.
type metricsReceiver struct {
	colmetricpb.UnimplementedMetricsServiceServer
	collected[*colmetricpb.ExportMetricsServiceRequest]
}

func (r *metricsReceiver) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	r.add(req, "grpc")
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func (r *metricsReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	msg := &colmetricpb.ExportMetricsServiceRequest{}
	serveOTLP(w, req, msg, &colmetricpb.ExportMetricsServiceResponse{}, func() { r.add(msg, req.URL.Path) })
}

func TestOTLPHTTPReceivesMetrics(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	record(t, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{
		"VOIDBOX_OTLP_ENDPOINT": srv.URL + "/collector",
	})})
	for _, p := range rcv.metrics.paths {
		if p != "/collector/v1/metrics" {
			t.Errorf("metrics request path %q, want /collector/v1/metrics", p)
		}
	}
	checkMetrics(t, rcv.metrics.requests())
}

// A metrics endpoint alone records metrics and no spans; a traces endpoint alone no
// metrics.
func TestSignalSpecificEndpoints(t *testing.T) {
	rcv := &receiver{}
	mux := http.NewServeMux()
	mux.Handle("/m", &rcv.metrics)
	mux.Handle("/", rcv)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	tel, err := Setup(ctx, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": srv.URL + "/m",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Enabled() || tel.meters == nil {
		t.Fatalf("Setup with OTEL_EXPORTER_OTLP_METRICS_ENDPOINT only: Enabled() = %v, meters = %v; want metrics without spans", tel.Enabled(), tel.meters)
	}
	_, rt := tel.Run(ctx, "examples/fan.star")
	rt.Describe(graph())
	if tp := feed(rt); tp != "" {
		t.Errorf("Traceparent with spans off = %q, want \"\"", tp)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(rcv.requests()); n != 0 {
		t.Errorf("the receiver got %d span requests, want none", n)
	}
	for _, p := range rcv.metrics.paths {
		if p != "/m" {
			t.Errorf("metrics request path %q, want /m (a signal-specific endpoint is used as is)", p)
		}
	}
	checkMetrics(t, rcv.metrics.requests())

	tel, err = Setup(ctx, Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces"})})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Enabled() || tel.meters != nil {
		t.Errorf("Setup with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT only: Enabled() = %v, meters = %v; want spans without metrics", tel.Enabled(), tel.meters)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestBadMetricsProtocolIsAnError(t *testing.T) {
	_, err := Setup(context.Background(), Config{Env: envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":         "http://127.0.0.1:1",
		"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "udp",
	})})
	if err == nil || !strings.Contains(err.Error(), `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="udp"`) {
		t.Fatalf("Setup with metrics protocol udp: err = %v, want one naming OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=\"udp\"", err)
	}
}

// checkMetrics asserts the metrics feed() must produce. Temporality is cumulative, so
// the last export of a metric holds the run's totals.
func checkMetrics(t *testing.T, reqs []*colmetricpb.ExportMetricsServiceRequest) {
	t.Helper()
	byName := metricsByName(t, reqs)
	get := func(name, unit string, histogram bool) *metricpb.Metric {
		t.Helper()
		m := namedMetric(t, byName, name, unit)
		switch {
		case m == nil:
		case histogram && m.GetHistogram() == nil:
			t.Errorf("metric %s is %T, want a histogram", name, m.Data)
		case !histogram && !m.GetSum().GetIsMonotonic():
			t.Errorf("metric %s is %T (monotonic %v), want a monotonic sum (counter)", name, m.Data, m.GetSum().GetIsMonotonic())
		default:
			return m
		}
		return nil
	}
	wantSum := func(name, unit string, match map[string]string, want float64) {
		t.Helper()
		if m := get(name, unit, false); m != nil {
			if got := sumPoints(m, match); got != want {
				t.Errorf("metric %s%v = %v, want %v", name, match, got, want)
			}
		}
	}
	wantHist := func(name, unit string, match map[string]string, count uint64, sum float64) {
		t.Helper()
		m := get(name, unit, true)
		if m == nil {
			return
		}
		var gotCount uint64
		var gotSum float64
		for _, dp := range m.GetHistogram().DataPoints {
			if matches(dp.Attributes, match) {
				gotCount += dp.Count
				gotSum += dp.GetSum()
			}
		}
		if gotCount != count || gotSum != sum {
			t.Errorf("metric %s%v: count %d sum %v, want count %d sum %v", name, match, gotCount, gotSum, count, sum)
		}
	}

	wantSum("voidbox.stage.attempts", "{attempt}", nil, 5) // a, b twice, c, agent
	wantSum("voidbox.stage.attempts", "{attempt}", map[string]string{"voidbox.stage.name": "b"}, 2)
	wantSum("voidbox.stage.retries", "{retry}", nil, 1)
	wantSum("voidbox.stage.retries", "{retry}", map[string]string{"voidbox.stage.name": "b"}, 1)
	wantHist("voidbox.stage.duration", "s", nil, 4, 0.005) // z was skipped: no end
	wantHist("voidbox.stage.duration", "s", map[string]string{"voidbox.stage.name": "a", "voidbox.stage.status": "ok"}, 1, 0.005)
	wantHist("voidbox.stage.duration", "s", map[string]string{"voidbox.stage.status": "failed"}, 2, 0)
	wantHist("voidbox.run.duration", "s", map[string]string{"voidbox.run.ok": "false"}, 1, 0.04)
	wantSum("voidbox.agent.tokens", "{token}", map[string]string{"gen_ai.token.type": "input", "voidbox.stage.name": "agent"}, 1200)
	wantSum("voidbox.agent.tokens", "{token}", map[string]string{"gen_ai.token.type": "output", "voidbox.stage.name": "agent"}, 340)
	genAI := map[string]string{"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "anthropic",
		"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929"}
	genAI["gen_ai.token.type"] = "input"
	wantHist("gen_ai.client.token.usage", "{token}", genAI, 1, 1200)
	genAI["gen_ai.token.type"] = "output"
	wantHist("gen_ai.client.token.usage", "{token}", genAI, 1, 340)
	wantSum("voidbox.agent.cost", "{USD}", map[string]string{"voidbox.stage.name": "agent"}, 0.0125)
	wantSum("voidbox.agent.tool_calls", "{call}", nil, 2)
	wantSum("voidbox.agent.tool_calls", "{call}", map[string]string{"gen_ai.tool.name": "Bash", "voidbox.stage.name": "agent"}, 1)
	wantSum("voidbox.agent.tool_calls", "{call}", map[string]string{"gen_ai.tool.name": "Write"}, 1)
	net := func(proto, decision string) map[string]string {
		return map[string]string{"voidbox.stage.name": "b", "voidbox.network.protocol": proto, "voidbox.network.decision": decision}
	}
	wantSum("voidbox.network.decisions", "{decision}", net("tcp", "allow"), 3)
	wantSum("voidbox.network.decisions", "{decision}", net("tcp", "deny"), 1)
	wantSum("voidbox.network.decisions", "{decision}", net("dns", "allow"), 2)
	wantSum("voidbox.network.decisions", "{decision}", map[string]string{"voidbox.network.decision": "deny"}, 1)
	if m := byName["voidbox.network.decisions"]; m != nil {
		for _, dp := range m.GetSum().GetDataPoints() {
			if p := str(dp.Attributes, "voidbox.network.protocol"); p == "udp" {
				t.Errorf("voidbox.network.decisions has a udp point %v, want none (no udp decisions)", dp)
			}
		}
	}
}

// metricsByName is the last export of each metric in reqs, which must come from the
// voidbox-test service and this package's scope.
func metricsByName(t *testing.T, reqs []*colmetricpb.ExportMetricsServiceRequest) map[string]*metricpb.Metric {
	t.Helper()
	byName := map[string]*metricpb.Metric{}
	for _, req := range reqs {
		for _, rm := range req.ResourceMetrics {
			if got := str(rm.Resource.GetAttributes(), "service.name"); got != "voidbox-test" {
				t.Errorf("metrics resource service.name = %q, want voidbox-test", got)
			}
			for _, sm := range rm.ScopeMetrics {
				if sm.Scope.GetName() != ScopeName {
					t.Errorf("metrics scope name %q, want %s", sm.Scope.GetName(), ScopeName)
				}
				for _, m := range sm.Metrics {
					byName[m.Name] = m
				}
			}
		}
	}
	if len(byName) == 0 {
		t.Fatalf("the receiver got no metrics in %d requests", len(reqs))
	}
	return byName
}

// namedMetric is byName[name] when it is there with unit; else the test fails saying
// why, and it is nil.
func namedMetric(t *testing.T, byName map[string]*metricpb.Metric, name, unit string) *metricpb.Metric {
	t.Helper()
	m := byName[name]
	switch {
	case m == nil:
		t.Errorf("no metric %s; got %v", name, metricNames(byName))
	case m.Unit != unit:
		t.Errorf("metric %s unit %q, want %q", name, m.Unit, unit)
	default:
		return m
	}
	return nil
}

// sumPoints adds the values of m's points whose attributes include match.
func sumPoints(m *metricpb.Metric, match map[string]string) float64 {
	var total float64
	for _, dp := range m.GetSum().GetDataPoints() {
		if !matches(dp.Attributes, match) {
			continue
		}
		if _, isInt := dp.Value.(*metricpb.NumberDataPoint_AsInt); isInt {
			total += float64(dp.GetAsInt())
		} else {
			total += dp.GetAsDouble()
		}
	}
	return total
}

// matches reports whether kvs has every key of match with that value (booleans as
// "true"/"false").
func matches(kvs []*commonpb.KeyValue, match map[string]string) bool {
	for k, want := range match {
		v := attr(kvs, k)
		if v == nil {
			return false
		}
		got := v.GetStringValue()
		if b, ok := v.Value.(*commonpb.AnyValue_BoolValue); ok {
			got = "false"
			if b.BoolValue {
				got = "true"
			}
		}
		if got != want {
			return false
		}
	}
	return true
}

func metricNames(byName map[string]*metricpb.Metric) []string {
	var out []string
	for n := range byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
