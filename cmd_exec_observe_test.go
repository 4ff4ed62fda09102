package main

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/telemetry"
)

// exec --trace-file and --report: the trace file is OTLP JSON holding the run and its
// stages' spans, and the report is one HTML page naming every stage.
func TestExecTraceFileAndReport(t *testing.T) {
	dir := t.TempDir()
	trace, page := filepath.Join(dir, "trace.jsonl"), filepath.Join(dir, "run.html")
	r := voidbox(t, "exec", "--sandbox", "mock", "--trace-file", trace, "--report", page, "examples/fan_out.star")
	if r.code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		req, err := telemetry.DecodeTraceLine(sc.Bytes())
		if err != nil {
			t.Fatalf("trace line: %v", err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names[sp.Name] = true
				}
			}
		}
	}
	for _, want := range []string{"run", "stage words", "stage sorted", "stage first", "stage lines"} {
		if !names[want] {
			t.Errorf("the trace has no span %q (spans: %v)", want, names)
		}
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"words", "sorted", "first", "lines"} {
		if !strings.Contains(string(html), st) {
			t.Errorf("the report does not name stage %s", st)
		}
	}
	if r := voidbox(t, "exec", "--sandbox", "mock", "--report", filepath.Join(dir, "missing", "r.html"), "examples/hello.star"); r.code != exitFailed || !strings.Contains(r.stderr, "voidbox exec: write report") {
		t.Errorf("an unwritable report: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A traced run gives each stage TRACEPARENT: the stage's span in the run's trace.
func TestExecTraceparentReachesTheStage(t *testing.T) {
	dir := t.TempDir()
	prog, trace := filepath.Join(dir, "tp.star"), filepath.Join(dir, "trace.jsonl")
	os.WriteFile(prog, []byte(`pipeline = pipe(box("tp", cmd = ["sh", "-c", "echo $TRACEPARENT"]))`+"\n"), 0o644)
	r := voidbox(t, "exec", "--sandbox", "local", "--trace-file", trace, prog)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	tp := strings.Split(strings.TrimSpace(r.stdout), "-")
	if len(tp) != 4 || tp[0] != "00" || len(tp[1]) != 32 || len(tp[2]) != 16 {
		t.Fatalf("stage saw TRACEPARENT %q, want 00-TRACEID-SPANID-FLAGS", r.stdout)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		req, err := telemetry.DecodeTraceLine([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if sp.Name == "stage tp" && hex.EncodeToString(sp.TraceId) == tp[1] && hex.EncodeToString(sp.SpanId) == tp[2] {
						found = true
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("TRACEPARENT %q names no stage span of the trace file", r.stdout)
	}
}
