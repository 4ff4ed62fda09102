package telemetry

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"

	"github.com/voidbox/voidbox/runtime"
)

// logsReceiver collects ExportLogsServiceRequests over HTTP or gRPC.
type logsReceiver struct {
	collogpb.UnimplementedLogsServiceServer
	collected[*collogpb.ExportLogsServiceRequest]
}

func (r *logsReceiver) Export(_ context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	r.add(req, "grpc")
	return &collogpb.ExportLogsServiceResponse{}, nil
}

func (r *logsReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	msg := &collogpb.ExportLogsServiceRequest{}
	serveOTLP(w, req, msg, &collogpb.ExportLogsServiceResponse{}, func() { r.add(msg, req.URL.Path) })
}

// logRun starts a run with stage "hello" open, logs a console line and a notice with
// its context, and ends the run; it returns the stage span's ids as hex.
func logRun(t *testing.T, tel *Telemetry, text io.Writer) (traceID, spanID string) {
	t.Helper()
	_, rt := tel.Run(context.Background(), "hello.star")
	rt.OnEvent(runtime.Event{Stage: "hello", Kind: runtime.EventStart, Attempt: 1})
	stageCtx := rt.StageContext("hello")
	log := tel.Logger(text)
	ConsoleLine(stageCtx, log, "hello", "voidbox-agent: serving \x1b[31mred\x1b[0m")
	log.InfoContext(stageCtx, "phase ended", LogStage, "hello", "voidbox.phase.name", "vm.boot")
	sc := trace.SpanContextFromContext(stageCtx)
	rt.OnEvent(runtime.Event{Stage: "hello", Kind: runtime.EventEnd, Attempt: 1, Result: &runtime.StageResult{Name: "hello", Status: runtime.StatusOK}})
	rt.End(&runtime.Result{OK: true})
	return sc.TraceID().String(), sc.SpanID().String()
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func TestLogsReachOTLPWithTheStageSpan(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			logs := &logsReceiver{}
			traces := &receiver{}
			endpoint := ""
			if protocol == "grpc" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				collogpb.RegisterLogsServiceServer(srv, logs)
				go srv.Serve(ln)
				t.Cleanup(srv.Stop)
				endpoint = "http://" + ln.Addr().String()
			} else {
				mux := http.NewServeMux()
				mux.Handle("/v1/logs", logs)
				srv := httptest.NewServer(mux)
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			tsrv := httptest.NewServer(traces)
			t.Cleanup(tsrv.Close)
			tel, err := Setup(context.Background(), Config{Env: envOf(map[string]string{
				"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT":   endpoint + map[bool]string{true: "/v1/logs", false: ""}[protocol != "grpc"],
				"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL":   protocol,
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": tsrv.URL + "/v1/traces",
			})})
			if err != nil {
				t.Fatal(err)
			}
			traceID, spanID := logRun(t, tel, nil)
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			var bodies []string
			for _, req := range logs.requests() {
				for _, rl := range req.ResourceLogs {
					for _, sl := range rl.ScopeLogs {
						for _, lr := range sl.LogRecords {
							bodies = append(bodies, lr.Body.GetStringValue())
							if got := hexOf(lr.TraceId); got != traceID || hexOf(lr.SpanId) != spanID {
								t.Errorf("log %q: trace %s span %s, want the stage span's %s %s", lr.Body.GetStringValue(), got, hexOf(lr.SpanId), traceID, spanID)
							}
							if str(lr.Attributes, LogStage) != "hello" {
								t.Errorf("log %q: %s = %q, want hello", lr.Body.GetStringValue(), LogStage, str(lr.Attributes, LogStage))
							}
						}
					}
				}
			}
			if len(bodies) != 2 || !strings.HasPrefix(bodies[0], "voidbox-agent: serving") || bodies[1] != "phase ended" {
				t.Errorf("log bodies %q, want the console line and the notice", bodies)
			}
			// The stage span exists in the trace with those ids.
			found := false
			for _, s := range allSpans(traces.requests()) {
				found = found || (s.Name == "stage hello" && hexOf(s.SpanId) == spanID && hexOf(s.TraceId) == traceID)
			}
			if !found {
				t.Errorf("no span \"stage hello\" with span id %s in the trace", spanID)
			}
		})
	}
}

// --verbose text: console lines prefixed [vm:NAME] and cleaned of terminal escapes;
// other records with their attributes and trace ids.
func TestTextLogLines(t *testing.T) {
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	tel, err := Setup(context.Background(), Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces"})})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	traceID, spanID := logRun(t, tel, &text)
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "[vm:hello] voidbox-agent: serving red\n" +
		"voidbox: phase ended voidbox.stage.name=hello voidbox.phase.name=vm.boot trace_id=" + traceID + " span_id=" + spanID + "\n"
	if text.String() != want {
		t.Errorf("text log:\n%q\nwant:\n%q", text.String(), want)
	}
}

// With no endpoint and no text writer, the logger discards, and no provider exists.
func TestLoggerOffDiscards(t *testing.T) {
	tel, err := Setup(context.Background(), Config{Env: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if tel.logs != nil {
		t.Fatal("a logger provider exists with no endpoint")
	}
	if tel.Logger(nil).Enabled(context.Background(), 12) {
		t.Error("the logger is enabled with nowhere to write")
	}
}
