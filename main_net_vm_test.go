package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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
	r := voidbox(t, vmArgs(t, "--json", "--network-log", logFile, prog)...)
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
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}

func asFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}
