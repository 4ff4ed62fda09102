package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// BenchmarkExecTelemetry is a whole `voidbox exec` of one VM stage with nothing
// listening (no exporter exists), beside the same run exporting spans, metrics and
// logs to an in-process OTLP receiver, and with --verbose logging to a buffer: what
// observability costs a run's wall time.
//
//	go test -run '^$' -bench ExecTelemetry -benchtime 5x .
func BenchmarkExecTelemetry(b *testing.B) {
	args := vmArgs(b, writeFile(b, b.TempDir(), "one.star", `pipeline = box(name = "one", cmd = ["true"])`+"\n"))
	col := &otlpCollector{metrics: map[string]string{}}
	srv := httptest.NewServer(col)
	b.Cleanup(srv.Close)
	for _, c := range []struct {
		name     string
		endpoint string
		extra    []string
	}{
		{"off", "", nil},
		{"otlp", srv.URL, nil},
		{"verbose", "", []string{"--verbose"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.endpoint == "" {
				os.Unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT")
			} else {
				b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint)
			}
			run := append(append([]string{}, args[:1]...), append(c.extra, args[1:]...)...)
			for b.Loop() {
				var out, errb bytes.Buffer
				if code := runMain(run, &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}); code != exitOK {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
		})
	}
}
