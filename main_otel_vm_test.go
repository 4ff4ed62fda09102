package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/voidbox/voidbox/internal/anthropictest"
	"github.com/voidbox/voidbox/internal/vmtest"
)

// otlpCollector is an OTLP/HTTP receiver (protobuf) for all three signals.
type otlpCollector struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	metrics map[string]string // name → unit
	logs    []string          // "stage|trace id|span id|body"
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		req := &coltracepb.ExportTraceServiceRequest{}
		err = proto.Unmarshal(body, req)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		req := &colmetricpb.ExportMetricsServiceRequest{}
		err = proto.Unmarshal(body, req)
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					c.metrics[m.Name] = m.Unit
				}
			}
		}
		resp = &colmetricpb.ExportMetricsServiceResponse{}
	case "/v1/logs":
		req := &collogpb.ExportLogsServiceRequest{}
		err = proto.Unmarshal(body, req)
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					stage := ""
					for _, kv := range lr.Attributes {
						if kv.Key == "voidbox.stage.name" {
							stage = kv.Value.GetStringValue()
						}
					}
					c.logs = append(c.logs, strings.Join([]string{stage, hex.EncodeToString(lr.TraceId), hex.EncodeToString(lr.SpanId), lr.Body.GetStringValue()}, "|"))
				}
			}
		}
		resp = &collogpb.ExportLogsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// A pipe of a command stage and an agent stage, run in real VMs with the real
// claude-code against the scripted API, exported to a real OTLP receiver: the span
// tree from run down to each tool call, the phases inside each stage, the metrics by
// name and unit, and console logs carrying their stage span's ids.
func TestVMOTLPAgentPipeline(t *testing.T) {
	vmtest.Require(t)
	api := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Bash("wc -l < /workspace/input > /workspace/count")),
		anthropictest.Reply(anthropictest.Text("Two lines.")),
	}})
	col := &otlpCollector{metrics: map[string]string{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("VOIDBOX_TEST_KEY", "sk-voidbox-otel")
	prog := writeFile(t, t.TempDir(), "otel.star", `
src = box(name = "src", cmd = ["printf", "a\nb\n"])
agent = box(
    name = "count",
    prompt = "Count the lines of the input.",
    skills = [skill("agent:claude-code")],
    llm = llm.custom(base_url = args["url"], model = "claude-sonnet-4-5", api_key_env = "VOIDBOX_TEST_KEY"),
    timeout = "10m",
)
pipeline = pipe(src, agent)
`)
	r := voidbox(t, vmArgs(t, "--set", "url="+api.URL, "--json", prog)...)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)

	col.mu.Lock()
	defer col.mu.Unlock()
	byID := map[string]*tracepb.Span{}
	for _, s := range col.spans {
		byID[string(s.SpanId)] = s
	}
	path := func(s *tracepb.Span) string { // names from the root down
		var names []string
		for ; s != nil; s = byID[string(s.ParentSpanId)] {
			names = append([]string{s.Name}, names...)
		}
		return strings.Join(names, " > ")
	}
	have := map[string]bool{}
	for _, s := range col.spans {
		have[path(s)] = true
	}
	for _, want := range []string{
		"run > stage src > vm.boot",
		"run > stage src > agent.connect",
		"run > stage src > exec printf",
		"run > stage count > vm.prepare",
		"run > stage count > vm.boot",
		"run > stage count > exec agent",
		"run > stage count > invoke_agent count",
		"run > stage count > invoke_agent count > execute_tool Bash",
		"run > stage count > sandbox.close",
	} {
		if !have[want] {
			var got []string
			for p := range have {
				got = append(got, p)
			}
			t.Errorf("no span %q; spans:\n%s", want, strings.Join(got, "\n"))
		}
	}
	for name, unit := range map[string]string{
		"voidbox.vm.boot.duration":      "s",
		"voidbox.execs":                 "{exec}",
		"voidbox.stage.duration":        "s",
		"gen_ai.client.token.usage":     "{token}",
		"voidbox.agent.tool_calls":      "{call}",
		"voidbox.guest.memory.usage":    "By",
		"voidbox.guest.cpu.utilization": "1",
	} {
		if got, ok := col.metrics[name]; !ok || got != unit {
			t.Errorf("metric %s: unit %q (received %v), want %q", name, got, ok, unit)
		}
	}
	// Console lines are logged under the stage's attempt span.
	stageSpan := map[string]string{}
	for _, s := range col.spans {
		if strings.HasPrefix(s.Name, "stage ") {
			stageSpan[hex.EncodeToString(s.SpanId)] = strings.TrimPrefix(s.Name, "stage ")
		}
	}
	agentLines := 0
	for _, l := range col.logs {
		f := strings.SplitN(l, "|", 4)
		if strings.HasPrefix(f[3], "voidbox-agent: ") {
			agentLines++
			if stageSpan[f[2]] != f[0] {
				t.Errorf("console log %q: span %s is not stage %s's span", f[3], f[2], f[0])
			}
		}
	}
	if agentLines < 4 {
		t.Errorf("%d guest agent console lines among %d log records, want one set per VM", agentLines, len(col.logs))
	}
}
