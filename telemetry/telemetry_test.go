package telemetry

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/voidbox/voidbox/runtime"
)

// collected holds the export requests a receiver got and the path each came on
// ("grpc" over gRPC).
type collected[T any] struct {
	mu    sync.Mutex
	reqs  []T
	paths []string
}

func (c *collected[T]) add(req T, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	c.paths = append(c.paths, path)
}

func (c *collected[T]) requests() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.reqs...)
}

// receiver collects the OTLP requests an exporter sends, over HTTP or gRPC; metrics
// go to its metrics receiver.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	collected[*coltracepb.ExportTraceServiceRequest]
	metrics metricsReceiver
}

func (r *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.add(req, "grpc")
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if strings.HasSuffix(req.URL.Path, "/v1/metrics") {
		r.metrics.ServeHTTP(w, req)
		return
	}
	msg := &coltracepb.ExportTraceServiceRequest{}
	serveOTLP(w, req, msg, &coltracepb.ExportTraceServiceResponse{}, func() { r.add(msg, req.URL.Path) })
}

// serveOTLP decodes an OTLP/HTTP protobuf request into msg, calls received (before
// answering, so a flushed exporter's data is there once it returns) and answers resp.
func serveOTLP(w http.ResponseWriter, req *http.Request, msg, resp proto.Message, received func()) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := proto.Unmarshal(body, msg); err != nil {
		http.Error(w, fmt.Sprintf("not a %s: %v", msg.ProtoReflect().Descriptor().FullName(), err), http.StatusBadRequest)
		return
	}
	received()
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// graph is the program the synthetic events come from:
// pipe(a, fan_out(b, c), agent, z).
func graph() runtime.Node {
	return &runtime.Pipe{Nodes: []runtime.Node{
		&runtime.Stage{Name: "a", Cmd: []string{"true"}, MemoryMB: 512, VCPUs: 2},
		&runtime.FanOut{Nodes: []runtime.Node{
			&runtime.Stage{Name: "b", Cmd: []string{"flaky"}, Retries: 1, Network: true},
			&runtime.Stage{Name: "c", Cmd: []string{"false"}, OnFailure: runtime.FailContinue},
		}},
		&runtime.Stage{Name: "agent", Prompt: "fix it", LLM: &runtime.LLM{Provider: "claude", Model: "claude-sonnet-4-5"}},
		&runtime.Stage{Name: "z", Cmd: []string{"true"}},
	}}
}

func exit(n int) *int { return &n }

const bigInputLen = 2000

// feed plays the events the executor sends for graph(), and returns the traceparent
// of stage a while it ran.
func feed(rt *RunTrace) (aParent string) {
	rt.OnEvent(runtime.Event{Stage: "a", Kind: runtime.EventStart, Attempt: 1})
	aParent = rt.Traceparent("a")
	rt.OnEvent(runtime.Event{Stage: "a", Kind: runtime.EventEnd, Attempt: 1, Result: &runtime.StageResult{
		Name: "a", Status: runtime.StatusOK, ExitCode: exit(0), Attempts: 1, DurationMS: 5}})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventStart, Attempt: 1})
	rt.OnEvent(runtime.Event{Stage: "c", Kind: runtime.EventStart, Attempt: 1})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventRetry, Attempt: 2, Err: errors.New("exit status 1")})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventStart, Attempt: 2})
	rt.OnEvent(runtime.Event{Stage: "c", Kind: runtime.EventEnd, Attempt: 1, Err: errors.New("exit status 3"), Result: &runtime.StageResult{
		Name: "c", Status: runtime.StatusFailed, ExitCode: exit(3), Attempts: 1, Error: "exit status 3"}})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventEnd, Attempt: 2, Result: &runtime.StageResult{
		Name: "b", Status: runtime.StatusOK, ExitCode: exit(0), Attempts: 2,
		Network: &runtime.NetworkCounts{TCP: runtime.NetworkDecisions{Allowed: 3, Denied: 1}, DNS: runtime.NetworkDecisions{Allowed: 2}}}})
	rt.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventStart, Attempt: 1})
	rt.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventTool, Tool: &runtime.ToolCall{Name: "Bash", Input: `{"command":"ls"}`}})
	rt.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventTool, Tool: &runtime.ToolCall{Name: "Write", Input: strings.Repeat("é", bigInputLen/2)}})
	rt.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventEnd, Attempt: 1, Err: errors.New("the agent reported an error"), Result: &runtime.StageResult{
		Name: "agent", Status: runtime.StatusFailed, ExitCode: exit(1), Attempts: 1, Error: "the agent reported an error",
		Agent: &runtime.AgentReport{Result: "could not fix it", IsError: true, CostUSD: 0.0125, InputTokens: 1200, OutputTokens: 340,
			Turns: 4, DurationAPIMS: 900, Model: "claude-sonnet-4-5-20250929", SessionID: "sess-42",
			ToolCalls: []runtime.ToolCall{{Name: "Bash"}, {Name: "Write"}}}}})
	rt.OnEvent(runtime.Event{Stage: "z", Kind: runtime.EventSkip, Result: &runtime.StageResult{
		Name: "z", Status: runtime.StatusSkipped, Error: "the run stopped before this stage started"}})
	rt.End(&runtime.Result{OK: false, Order: []string{"a", "b", "c", "agent", "z"}, DurationMS: 40, Error: "stage agent failed"})
	return aParent
}

// record runs the synthetic run through a Telemetry built from cfg and shuts it down.
func record(t *testing.T, cfg Config) (aParent string) {
	t.Helper()
	ctx := context.Background()
	tel, err := Setup(ctx, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if !tel.Enabled() {
		t.Fatalf("Setup(%+v): Enabled() = false, want an exporter", cfg)
	}
	runCtx, rt := tel.Run(ctx, "examples/fan.star")
	if tp := Traceparent(runCtx); len(tp) != 55 || !strings.HasPrefix(tp, "00-") {
		t.Errorf("Traceparent(run ctx) = %q, want a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex>", tp)
	}
	rt.Describe(graph())
	aParent = feed(rt)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return aParent
}

func TestOTLPHTTPReceivesSpanTree(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	// A base endpoint with a path: the spec appends v1/traces to it.
	aParent := record(t, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{
		"VOIDBOX_OTLP_ENDPOINT": srv.URL + "/collector",
	})})
	reqs := rcv.requests()
	if len(reqs) == 0 {
		t.Fatal("the receiver got no request")
	}
	for _, p := range rcv.paths {
		if p != "/collector/v1/traces" {
			t.Errorf("request path %q, want /collector/v1/traces", p)
		}
	}
	checkTree(t, reqs, aParent)
}

func TestOTLPGRPCReceivesSpanTree(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, rcv)
	colmetricpb.RegisterMetricsServiceServer(srv, &rcv.metrics)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	aParent := record(t, Config{ServiceName: "voidbox-test", Env: envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(),
	})})
	checkTree(t, rcv.requests(), aParent)
	checkMetrics(t, rcv.metrics.requests())
}

func TestTraceFileIsOTLPJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	aParent := record(t, Config{TraceFile: path, ServiceName: "voidbox-test", Env: envOf(nil)})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var reqs []*coltracepb.ExportTraceServiceRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		// OTLP JSON, not plain protobuf JSON: hex ids and numeric enums.
		if !strings.Contains(line, `"traceId":"`+aParent[3:35]+`"`) {
			t.Errorf("%s:%d: no hex traceId %s in %.300s", path, n, aParent[3:35], line)
		}
		if strings.Contains(line, "SPAN_KIND_") || strings.Contains(line, "STATUS_CODE_") {
			t.Errorf("%s:%d: enums written as names, OTLP JSON wants numbers: %.300s", path, n, line)
		}
		req, err := DecodeTraceLine([]byte(line))
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		reqs = append(reqs, req)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(reqs) == 0 {
		t.Fatalf("%s is empty", path)
	}
	checkTree(t, reqs, aParent)
}

func TestNoEndpointNoFileExportsNothing(t *testing.T) {
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=b"})})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Enabled() || tel.sdk != nil || tel.meters != nil {
		t.Fatalf("Setup without endpoint or file: Enabled() = %v, sdk = %v, meters = %v; want no provider", tel.Enabled(), tel.sdk, tel.meters)
	}
	runCtx, rt := tel.Run(ctx, "x.star")
	if tp := Traceparent(runCtx); tp != "" {
		t.Errorf("Traceparent with telemetry off = %q, want \"\"", tp)
	}
	if aParent := feed(rt); aParent != "" {
		t.Errorf("RunTrace.Traceparent with telemetry off = %q, want \"\"", aParent)
	}
	if rt.stages != nil {
		t.Errorf("a disabled RunTrace kept stage state: %v", rt.stages)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestBadProtocolIsAnError(t *testing.T) {
	_, err := Setup(context.Background(), Config{Env: envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift",
	})})
	if err == nil || !strings.Contains(err.Error(), `OTEL_EXPORTER_OTLP_PROTOCOL="thrift"`) {
		t.Fatalf("Setup with protocol thrift: err = %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\"", err)
	}
}

func TestTraceFileInMissingDirIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "t.jsonl")
	_, err := Setup(context.Background(), Config{TraceFile: path, Env: envOf(nil)})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Setup with trace file %s: err = %v, want one naming the file", path, err)
	}
}

// checkTree asserts the span tree feed() must produce.
func checkTree(t *testing.T, reqs []*coltracepb.ExportTraceServiceRequest, aParent string) {
	t.Helper()
	var spans []*tracepb.Span
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			if got := str(rs.Resource.GetAttributes(), "service.name"); got != "voidbox-test" {
				t.Errorf("resource service.name = %q, want voidbox-test", got)
			}
			for _, ss := range rs.ScopeSpans {
				if ss.Scope.GetName() != ScopeName {
					t.Errorf("scope name %q, want %s", ss.Scope.GetName(), ScopeName)
				}
				spans = append(spans, ss.Spans...)
			}
		}
	}
	byID := map[string]*tracepb.Span{}
	children := map[string][]*tracepb.Span{}
	var roots []*tracepb.Span
	for _, s := range spans {
		byID[string(s.SpanId)] = s
		if len(s.ParentSpanId) == 0 {
			roots = append(roots, s)
		} else {
			children[string(s.ParentSpanId)] = append(children[string(s.ParentSpanId)], s)
		}
		if string(s.TraceId) != string(spans[0].TraceId) {
			t.Errorf("span %q has trace id %x, want the run's %x", s.Name, s.TraceId, spans[0].TraceId)
		}
	}
	if len(spans) != 9 {
		t.Errorf("got %d spans, want 9 (run, 5 stage attempts, invoke_agent, 2 tools): %v", len(spans), names(spans))
	}
	if len(roots) != 1 || roots[0].Name != "run" {
		t.Fatalf("roots = %v, want one span named run", names(roots))
	}
	run := roots[0]
	if got := str(run.Attributes, "voidbox.run.name"); got != "examples/fan.star" {
		t.Errorf("run voidbox.run.name = %q, want examples/fan.star", got)
	}
	if run.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || run.Status.GetMessage() != "stage agent failed" {
		t.Errorf("run status = %v, want Error %q", run.Status, "stage agent failed")
	}
	if ev := event(run, "skip"); ev == nil || str(ev.Attributes, "voidbox.stage.name") != "z" {
		t.Errorf("run events = %v, want a skip event for stage z", run.Events)
	}

	stages := map[string]*tracepb.Span{}
	for _, s := range children[string(run.SpanId)] {
		key := str(s.Attributes, "voidbox.stage.name") + "/" + strconv.FormatInt(num(s.Attributes, "voidbox.stage.attempt"), 10)
		if s.Name != "stage "+str(s.Attributes, "voidbox.stage.name") {
			t.Errorf("span %q has voidbox.stage.name %q", s.Name, str(s.Attributes, "voidbox.stage.name"))
		}
		stages[key] = s
	}
	for _, k := range []string{"a/1", "b/1", "b/2", "c/1", "agent/1"} {
		if stages[k] == nil {
			t.Fatalf("no stage span %s under run; run's children: %v", k, names(children[string(run.SpanId)]))
		}
	}
	if len(stages) != 5 {
		t.Errorf("run has %d stage spans, want 5: %v", len(stages), names(children[string(run.SpanId)]))
	}
	a := stages["a/1"]
	if tp := "00-" + hex.EncodeToString(a.TraceId) + "-" + hex.EncodeToString(a.SpanId) + "-01"; aParent != tp {
		t.Errorf("Traceparent(a) while a ran = %q, want a's span %q", aParent, tp)
	}
	wantInts(t, a, map[string]int64{"voidbox.stage.memory_mb": 512, "voidbox.stage.vcpus": 2, "voidbox.stage.exit_code": 0, "voidbox.stage.attempts": 1})
	wantStrs(t, a, map[string]string{"voidbox.stage.status": "ok", "voidbox.stage.kind": "command"})
	wantCode(t, a, tracepb.Status_STATUS_CODE_UNSET)

	b1, b2 := stages["b/1"], stages["b/2"]
	wantCode(t, b1, tracepb.Status_STATUS_CODE_ERROR)
	if ev := event(b1, "retry"); ev == nil || num(ev.Attributes, "voidbox.stage.next_attempt") != 2 || str(ev.Attributes, "error.message") != "exit status 1" {
		t.Errorf("stage b attempt 1 events = %v, want retry with next_attempt 2 and error exit status 1", b1.Events)
	}
	if b1.EndTimeUnixNano > b2.StartTimeUnixNano {
		t.Errorf("stage b attempt 1 ends at %d, after attempt 2 starts at %d", b1.EndTimeUnixNano, b2.StartTimeUnixNano)
	}
	wantStrs(t, b2, map[string]string{"voidbox.stage.status": "ok"})
	wantInts(t, b2, map[string]int64{"voidbox.stage.attempts": 2, "voidbox.network.tcp.allowed": 3, "voidbox.network.tcp.denied": 1, "voidbox.network.dns.allowed": 2, "voidbox.network.udp.denied": 0})
	wantCode(t, b2, tracepb.Status_STATUS_CODE_UNSET)
	if attr(b2.Attributes, "voidbox.stage.network") == nil {
		t.Errorf("stage b: no voidbox.stage.network attribute")
	}

	c := stages["c/1"]
	wantCode(t, c, tracepb.Status_STATUS_CODE_ERROR)
	wantStrs(t, c, map[string]string{"voidbox.stage.status": "failed", "voidbox.stage.error": "exit status 3"})
	wantInts(t, c, map[string]int64{"voidbox.stage.exit_code": 3})
	if c.Status.GetMessage() != "exit status 3" {
		t.Errorf("stage c status message %q, want exit status 3", c.Status.GetMessage())
	}

	ag := stages["agent/1"]
	wantCode(t, ag, tracepb.Status_STATUS_CODE_ERROR)
	wantStrs(t, ag, map[string]string{"voidbox.stage.kind": "agent"})
	agentKids := children[string(ag.SpanId)]
	if len(agentKids) != 1 || agentKids[0].Name != "invoke_agent agent" {
		t.Fatalf("stage agent's children = %v, want one invoke_agent agent", names(agentKids))
	}
	inv := agentKids[0]
	if inv.StartTimeUnixNano != ag.StartTimeUnixNano || inv.EndTimeUnixNano > ag.EndTimeUnixNano {
		t.Errorf("invoke_agent [%d,%d] not within its stage [%d,%d] from its start", inv.StartTimeUnixNano, inv.EndTimeUnixNano, ag.StartTimeUnixNano, ag.EndTimeUnixNano)
	}
	wantStrs(t, inv, map[string]string{
		"gen_ai.operation.name": "invoke_agent", "gen_ai.system": "anthropic", "gen_ai.provider.name": "anthropic",
		"gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
		"gen_ai.conversation.id": "sess-42", "gen_ai.agent.name": "agent",
	})
	wantInts(t, inv, map[string]int64{"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 340, "voidbox.agent.turns": 4, "voidbox.agent.tool_calls": 2})
	if got := attr(inv.Attributes, "voidbox.agent.cost_usd").GetDoubleValue(); got != 0.0125 {
		t.Errorf("invoke_agent voidbox.agent.cost_usd = %v, want 0.0125", got)
	}
	wantCode(t, inv, tracepb.Status_STATUS_CODE_ERROR)

	tools := children[string(inv.SpanId)]
	if len(tools) != 2 || tools[0].Name != "execute_tool Bash" || tools[1].Name != "execute_tool Write" {
		t.Fatalf("invoke_agent's children = %v, want execute_tool Bash, execute_tool Write", names(tools))
	}
	wantStrs(t, tools[0], map[string]string{"gen_ai.tool.name": "Bash", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.call.arguments": `{"command":"ls"}`})
	in := str(tools[1].Attributes, "gen_ai.tool.call.arguments")
	if want := strings.Repeat("é", MaxToolInput/2) + "…"; in != want {
		t.Errorf("Write's %d-byte input kept as %d bytes %.20q..., want the first %d bytes and …", bigInputLen, len(in), in, MaxToolInput)
	}
}

func attr(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

func str(kvs []*commonpb.KeyValue, key string) string { return attr(kvs, key).GetStringValue() }
func num(kvs []*commonpb.KeyValue, key string) int64  { return attr(kvs, key).GetIntValue() }

func wantStrs(t *testing.T, s *tracepb.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(s.Attributes, k); got == nil || got.GetStringValue() != v {
			t.Errorf("span %q: %s = %v, want %q", s.Name, k, got, v)
		}
	}
}

func wantInts(t *testing.T, s *tracepb.Span, want map[string]int64) {
	t.Helper()
	for k, v := range want {
		if got := attr(s.Attributes, k); got == nil || got.GetIntValue() != v {
			t.Errorf("span %q: %s = %v, want %d", s.Name, k, got, v)
		}
	}
}

func wantCode(t *testing.T, s *tracepb.Span, want tracepb.Status_StatusCode) {
	t.Helper()
	if got := s.Status.GetCode(); got != want {
		t.Errorf("span %q (attempt %d): status %v, want %v", s.Name, num(s.Attributes, "voidbox.stage.attempt"), got, want)
	}
}

func event(s *tracepb.Span, name string) *tracepb.Span_Event {
	for _, ev := range s.Events {
		if ev.Name == name {
			return ev
		}
	}
	return nil
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
