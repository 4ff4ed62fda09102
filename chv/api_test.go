package chv

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/voidbox/voidbox/chv/internal/fakechv"
)

// serveFake runs the schema-checking fake API in-process on a unix socket.
// Any contract violation fails the test.
func serveFake(t *testing.T) (*fakechv.Server, *client) {
	t.Helper()
	path, err := fakechv.FindSpec()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := fakechv.LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := fakechv.New(doc, func(err error) { t.Errorf("contract violation: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return srv, newClient(sock)
}

func TestClientAgainstFake(t *testing.T) {
	srv, c := serveFake(t)
	ctx := context.Background()
	p, err := c.ping(ctx)
	if err != nil || p.Version != "v53.0-fake" || p.PID != 4242 {
		t.Fatalf("ping = %+v, %v", p, err)
	}
	_, err = c.info(ctx)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || !apiErr.notRunning() {
		t.Fatalf("info before create: %v", err)
	}
	if want := "chv: GET /api/v1/vm.info: 404 Not Found: Error from API: The VM info is not available: VM is not created"; err.Error() != want {
		t.Errorf("error text\n got %s\nwant %s", err, want)
	}
	cfg, _ := checkConfig(testConfig(t))
	paths, _ := pathsIn(cfg.StateDir)
	if err := c.put(ctx, "vm.create", buildVMConfig(cfg, paths, 3, nil)); err != nil {
		t.Fatal(err)
	}
	err = c.put(ctx, "vm.create", buildVMConfig(cfg, paths, 3, nil))
	if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error: Error from API: The VM could not be created: VM is already created") {
		t.Fatalf("second create: %v", err)
	}
	if err := c.put(ctx, "vm.boot", nil); err != nil {
		t.Fatal(err)
	}
	if i, err := c.info(ctx); err != nil || i.State != "Running" {
		t.Fatalf("info = %+v, %v", i, err)
	}
	if err := c.put(ctx, "vm.shutdown", nil); err != nil {
		t.Fatal(err)
	}
	err = c.put(ctx, "vm.shutdown", nil)
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || !apiErr.notRunning() {
		t.Fatalf("second shutdown: %v (must read as 'not running')", err)
	}
	if srv.State() != fakechv.Shutdown {
		t.Errorf("state %q", srv.State())
	}
	if err := c.call(ctx, http.MethodGet, "vm.nope", nil, nil); err == nil || !strings.Contains(err.Error(), "404 Not Found: Not Found") {
		t.Errorf("unknown route: %v", err)
	}
}

// Shares: memory must be shared and each share becomes an fs entry with the
// queues the schema requires; the fake checks the body against the schema.
func TestSharesConfigAccepted(t *testing.T) {
	srv, c := serveFake(t)
	cfg, err := checkConfig(shareConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := pathsIn(cfg.StateDir)
	shares := []fsShare{{Share: cfg.Shares[0], Socket: filepath.Join(cfg.StateDir, "fs0.sock")}}
	if err := c.put(context.Background(), "vm.create", buildVMConfig(cfg, paths, 9, shares)); err != nil {
		t.Fatal(err)
	}
	var got vmConfig
	json.Unmarshal(srv.Config(), &got)
	if !got.Memory.Shared || len(got.FS) != 1 || got.FS[0].Tag != "data" || got.FS[0].NumQueues != 1 || got.FS[0].QueueSize != 1024 {
		t.Errorf("config %+v", got)
	}
}

func TestParseErrorBody(t *testing.T) {
	cases := map[string][]string{
		`["Error from API","The VM could not boot","x"]`: {"Error from API", "The VM could not boot", "x"},
		``:                  nil,
		`  `:                nil,
		`["", " a "]`:       {"a"},
		`plain text error`:  {"plain text error"},
		`{"not":"a chain"}`: {`{"not":"a chain"}`},
	}
	for in, want := range cases {
		got := parseErrorBody([]byte(in))
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("parseErrorBody(%q) = %q, want %q", in, got, want)
		}
	}
	long := parseErrorBody([]byte(strings.Repeat("x", 5000)))
	if len(long) != 1 || len(long[0]) > 600 {
		t.Errorf("a long non-JSON body is not truncated: %d bytes", len(long[0]))
	}
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range []string{`["a","b"]`, ``, `[1,2]`, `"x"`, "\xff\xfe", `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		chain := parseErrorBody(body)
		msg := (&APIError{Method: "PUT", Path: "/api/v1/vm.boot", Status: 500, Chain: chain}).Error()
		if !utf8.ValidString(msg) && utf8.Valid(body) {
			t.Fatalf("invalid UTF-8 message from valid body %q", body)
		}
		for _, m := range chain {
			if m == "" {
				t.Fatalf("empty message in chain from %q", body)
			}
		}
	})
}
