package telemetry

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

// BenchmarkOnEvent is what instrumenting a stage costs the executor: one start and
// one end event, with telemetry off, with spans going to a trace file, and with spans
// and metrics going to an OTLP endpoint.
func BenchmarkOnEvent(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  func(b *testing.B) Config
	}{
		{"off", func(*testing.B) Config { return Config{Env: envOf(nil)} }},
		{"file", func(b *testing.B) Config {
			return Config{TraceFile: filepath.Join(b.TempDir(), "t.jsonl"), Env: envOf(nil)}
		}},
		{"otlp", func(b *testing.B) Config { // spans and metrics to an in-process receiver
			srv := httptest.NewServer(&receiver{})
			b.Cleanup(srv.Close)
			return Config{Env: envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL})}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			tel, err := Setup(ctx, c.cfg(b))
			if err != nil {
				b.Fatal(err)
			}
			_, rt := tel.Run(ctx, "bench.star")
			rt.Describe(&runtime.Stage{Name: "s", Cmd: []string{"true"}, MemoryMB: 256})
			code := 0
			end := runtime.Event{Stage: "s", Kind: runtime.EventEnd, Attempt: 1, Result: &runtime.StageResult{
				Name: "s", Status: runtime.StatusOK, ExitCode: &code, Attempts: 1}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rt.OnEvent(runtime.Event{Stage: "s", Kind: runtime.EventStart, Attempt: 1})
				rt.OnEvent(end)
			}
			b.StopTimer()
			rt.End(&runtime.Result{OK: true})
			if err := tel.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
