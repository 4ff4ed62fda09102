package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/voidbox/voidbox/internal/vmtest"
)

// TestVMNetworkFromTheCLI runs a networked box through `voidbox exec`: host:PORT reaches
// a server on the host's loopback, another host port is refused, --json carries the
// stage's counts and --network-log one JSON line per decision. Nothing leaves
// 127.0.0.0/8: the only allowed destination is the host's loopback.
func TestVMNetworkFromTheCLI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello host\n") }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	dir := t.TempDir()
	prog := filepath.Join(dir, "net.star")
	os.WriteFile(prog, []byte(`
b = box("fetch", cmd = ["sh", "-c", "wget -q -O - http://host.voidbox.internal:`+port+`/; nc -w 3 host.voidbox.internal 1 </dev/null || echo refused"],
        network = True, egress = ["host:`+port+`"])
pipeline = pipe(b)
`), 0o644)
	logFile := filepath.Join(dir, "net.log")
	traceFile := filepath.Join(dir, "trace.json")
	r := voidbox(t, vmArgs(t, "--json", "--network-log", logFile, "--trace-file", traceFile, prog)...)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var doc struct {
		Stages map[string]struct {
			Stdout  string `json:"stdout"`
			Network *struct {
				TCP struct{ Allowed, Denied int } `json:"tcp"`
				DNS struct{ Allowed, Denied int } `json:"dns"`
			} `json:"network"`
		} `json:"stages"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	st := doc.Stages["fetch"]
	if st.Stdout != "hello host\nrefused\n" {
		t.Errorf("stage stdout %q", st.Stdout)
	}
	if n := st.Network; n == nil || n.TCP.Allowed != 1 || n.TCP.Denied != 1 {
		t.Errorf("network counts %+v, want 1 TCP allowed and 1 denied", n)
	}
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var allow, deny bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("network log line %q: %v", sc.Text(), err)
		}
		if line["stage"] != "fetch" || line["proto"] != "tcp" {
			continue
		}
		switch {
		case line["decision"] == "allow" && strconv.Itoa(int(asFloat(line["port"]))) == port:
			allow = true
		case line["decision"] == "deny" && line["port"] == float64(1) && line["reason"] != "":
			deny = true
		}
	}
	if !allow || !deny {
		data, _ := os.ReadFile(logFile)
		t.Errorf("network log lacks the allowed and the denied connection:\n%s", data)
	}
	// The same decisions are events on the stage's span.
	if got := egressEvents(t, traceFile, "fetch"); !strings.Contains(got, "allow tcp "+port+"\n") || !strings.Contains(got, "deny tcp 1\n") {
		t.Errorf("egress events on the fetch span:\n%s\nwant an allowed tcp to %s and a refused tcp to 1", got, port)
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}

// egressEvents lists the egress events of stage's spans in an OTLP JSON trace file, one
// "DECISION PROTO PORT" line each.
func egressEvents(t *testing.T, traceFile, stage string) string {
	t.Helper()
	data, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := protojson.Unmarshal([]byte(line), req); err != nil {
			t.Fatalf("trace file line is not OTLP JSON: %v", err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if sp.Name != "stage "+stage {
						continue
					}
					for _, ev := range sp.Events {
						if ev.Name != "egress" {
							continue
						}
						a := map[string]string{}
						for _, kv := range ev.Attributes {
							a[kv.Key] = kv.Value.GetStringValue()
							if kv.Key == "destination.port" {
								a[kv.Key] = strconv.FormatInt(kv.Value.GetIntValue(), 10)
							}
						}
						fmt.Fprintf(&b, "%s %s %s\n", a["voidbox.network.decision"], a["voidbox.network.protocol"], a["destination.port"])
					}
				}
			}
		}
	}
	return b.String()
}

func asFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}
