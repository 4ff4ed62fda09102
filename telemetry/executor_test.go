package telemetry

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// toolAgent is the mock provider with an agent that calls two tools and reports.
type toolAgent struct{ *mock.Provider }

func (p toolAgent) RunAgent(ctx context.Context, sb runtime.Sandbox, st *runtime.Stage, input string) (runtime.AgentResult, error) {
	runtime.ReportToolCall(ctx, runtime.ToolCall{Name: "Read", Input: `{"file_path":"/workspace/input"}`})
	runtime.ReportToolCall(ctx, runtime.ToolCall{Name: "Bash", Input: `{"command":"make"}`})
	res, err := p.Provider.RunAgent(ctx, sb, st, input)
	res.Agent = &runtime.AgentReport{InputTokens: 10, OutputTokens: 5, Turns: 2, Model: "claude-test", SessionID: "s-1"}
	return res, err
}

// TestExecutorEventsMakeTheTree runs a real Executor (mock sandboxes) with the
// RunTrace as its OnEvent: the tree follows the executor's actual event order.
func TestExecutorEventsMakeTheTree(t *testing.T) {
	rcv := &receiver{}
	ctx := context.Background()
	srv := startHTTP(t, rcv)
	tel, err := Setup(ctx, Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv + "/v1/traces"})})
	if err != nil {
		t.Fatal(err)
	}
	root := &runtime.Pipe{Nodes: []runtime.Node{
		&runtime.Stage{Name: "a", Cmd: []string{"a"}},
		&runtime.FanOut{Nodes: []runtime.Node{
			&runtime.Stage{Name: "b", Cmd: []string{"b"}, Retries: 1},
			&runtime.Stage{Name: "c", Cmd: []string{"c"}, OnFailure: runtime.FailContinue},
		}},
		&runtime.Stage{Name: "agent", Prompt: "go"},
	}}
	runCtx, rt := tel.Run(ctx, "pipe.star")
	rt.Describe(root)
	e := &runtime.Executor{
		Provider: toolAgent{mock.New(mock.Script{
			"b": {{ExitCode: 1}, {Stdout: "ok"}},
			"c": {{ExitCode: 3}},
		})},
		MaxParallel: 4,
		OnEvent:     rt.OnEvent,
		Backoff:     func(int) time.Duration { return time.Millisecond },
	}
	res, err := e.Run(runCtx, root)
	if err != nil {
		t.Fatal(err)
	}
	rt.End(res)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	spans := map[string]*tracepb.Span{}
	for _, s := range allSpans(rcv.requests()) {
		spans[s.Name+"/"+attrText(s, "voidbox.stage.attempt")] = s
	}
	run := spans["run/"]
	if run == nil {
		t.Fatalf("no run span among %v", keys(spans))
	}
	for _, k := range []string{"stage a/1", "stage b/1", "stage b/2", "stage c/1", "stage agent/1"} {
		if s := spans[k]; s == nil || string(s.ParentSpanId) != string(run.SpanId) {
			t.Errorf("span %s missing or not a child of run; spans: %v", k, keys(spans))
		}
	}
	if s := spans["stage b/1"]; s != nil && s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("stage b attempt 1 status %v, want Error (it was retried)", s.Status)
	}
	if s := spans["stage c/1"]; s != nil && (s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || num(s.Attributes, "voidbox.stage.exit_code") != 3) {
		t.Errorf("stage c: status %v exit %v, want Error and 3", s.Status, attr(s.Attributes, "voidbox.stage.exit_code"))
	}
	inv, st := spans["invoke_agent agent/"], spans["stage agent/1"]
	if inv == nil || st == nil || string(inv.ParentSpanId) != string(st.SpanId) {
		t.Fatalf("invoke_agent agent missing or not under stage agent; spans: %v", keys(spans))
	}
	if got := str(inv.Attributes, "gen_ai.conversation.id"); got != "s-1" {
		t.Errorf("invoke_agent gen_ai.conversation.id = %q, want s-1", got)
	}
	for _, tool := range []string{"execute_tool Read/", "execute_tool Bash/"} {
		if s := spans[tool]; s == nil || string(s.ParentSpanId) != string(inv.SpanId) {
			t.Errorf("%s missing or not under invoke_agent; spans: %v", tool, keys(spans))
		}
	}
	if !res.OK || run.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("run OK=%v (error %q), run span status %v; want OK and Unset", res.OK, res.Error, run.Status)
	}
}

// TestCancelDuringBackoffEndsAsRunEvent: a run cancelled while a stage waits to retry
// ends that stage with no attempt open; the end is kept as an event on the run.
func TestCancelDuringBackoffEndsAsRunEvent(t *testing.T) {
	rcv := &receiver{}
	ctx := context.Background()
	tel, err := Setup(ctx, Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": startHTTP(t, rcv)})})
	if err != nil {
		t.Fatal(err)
	}
	_, rt := tel.Run(ctx, "x.star")
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventStart, Attempt: 1})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventRetry, Attempt: 2})
	rt.OnEvent(runtime.Event{Stage: "b", Kind: runtime.EventEnd, Attempt: 1, Result: &runtime.StageResult{
		Name: "b", Status: runtime.StatusCanceled, Attempts: 1, Error: runtime.Cancelled}})
	rt.End(&runtime.Result{Error: runtime.Cancelled})
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var run *tracepb.Span
	n := 0
	for _, s := range allSpans(rcv.requests()) {
		n++
		if s.Name == "run" {
			run = s
		}
	}
	if run == nil || n != 2 {
		t.Fatalf("got %d spans, run = %v; want run and one stage b", n, run)
	}
	ev := event(run, "stage.end")
	if ev == nil || str(ev.Attributes, "voidbox.stage.name") != "b" || str(ev.Attributes, "voidbox.stage.status") != "canceled" {
		t.Errorf("run events %v, want stage.end for b with status canceled", run.Events)
	}
}

func allSpans(reqs []*coltracepb.ExportTraceServiceRequest) []*tracepb.Span {
	var out []*tracepb.Span
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

func attrText(s *tracepb.Span, key string) string {
	if v := attr(s.Attributes, key); v != nil {
		return strconv.FormatInt(v.GetIntValue(), 10)
	}
	return ""
}

func keys(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// startHTTP serves rcv as an OTLP/HTTP receiver for the test and returns its URL.
func startHTTP(t *testing.T, rcv *receiver) string {
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return srv.URL
}
