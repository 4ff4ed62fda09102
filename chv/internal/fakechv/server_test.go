package fakechv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// newTestServer loads the real schema; a missing schema fails the test with
// the list of places searched.
func newTestServer(t *testing.T) (*Server, *[]error) {
	t.Helper()
	path, err := FindSpec()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	var violations []error
	s, err := New(doc, func(err error) { violations = append(violations, err) })
	if err != nil {
		t.Fatal(err)
	}
	return s, &violations
}

func do(t *testing.T, s *Server, method, endpoint, body string) (int, []string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://localhost/api/v1"+endpoint, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var chain []string
	if rec.Body.Len() > 0 && rec.Code >= 400 {
		if err := json.Unmarshal(rec.Body.Bytes(), &chain); err != nil {
			t.Fatalf("%s %s: error body %q is not a JSON string array", method, endpoint, rec.Body)
		}
	}
	return rec.Code, chain
}

const goodConfig = `{"cpus":{"boot_vcpus":1,"max_vcpus":1},"memory":{"size":268435456},
 "payload":{"kernel":"/k","cmdline":"console=ttyS0"},"rng":{"src":"/dev/urandom"},
 "serial":{"mode":"File","file":"/tmp/c.log"},"console":{"mode":"Off"},"vsock":{"cid":3,"socket":"/tmp/v.sock"}}`

func TestStateMachine(t *testing.T) {
	s, violations := newTestServer(t)
	steps := []step{
		{"GET", "/vm.info", "", 404, "VM is not created", NotCreated},
		{"PUT", "/vm.boot", "", 404, "VM is not created", NotCreated},
		{"PUT", "/vm.shutdown", "", 404, "VM is not created", NotCreated},
		{"GET", "/vmm.ping", "", 200, "", NotCreated},
		{"PUT", "/vm.create", goodConfig, 204, "", Created},
		{"PUT", "/vm.create", goodConfig, 500, "VM is already created", Created},
		{"PUT", "/vm.shutdown", "", 500, "VM is not running", Created},
		{"GET", "/vm.info", "", 200, "", Created},
		{"PUT", "/vm.boot", "", 204, "", Running},
		{"PUT", "/vm.boot", "", 500, "VM is already running", Running},
		{"GET", "/vm.info", "", 200, "", Running},
		{"PUT", "/vm.shutdown", "", 204, "", Shutdown},
		{"PUT", "/vm.shutdown", "", 500, "VM is not running", Shutdown},
		{"PUT", "/vmm.shutdown", "", 204, "", Shutdown},
	}
	runSteps(t, s, steps)
	if len(*violations) != 0 {
		t.Fatalf("valid traffic flagged: %v", *violations)
	}
	if got := len(s.Calls()); got != len(steps) {
		t.Fatalf("recorded %d calls, want %d", got, len(steps))
	}
}

func TestRejectsRequestsTheSchemaRejects(t *testing.T) {
	bad := map[string]string{
		"boot_vcpus as a string": `{"cpus":{"boot_vcpus":"two","max_vcpus":1},"payload":{"kernel":"/k"}}`,
		"missing payload":        `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`,
		"vsock cid below 3":      `{"payload":{"kernel":"/k"},"vsock":{"cid":2,"socket":"/s"}}`,
		"unknown console mode":   `{"payload":{"kernel":"/k"},"console":{"mode":"Sometimes"}}`,
		"fs without queues":      `{"payload":{"kernel":"/k"},"fs":[{"tag":"t","socket":"/s"}]}`,
		"disk readonly as text":  `{"payload":{"kernel":"/k"},"disks":[{"path":"/d","readonly":"yes"}]}`,
		"disks not a list":       `{"payload":{"kernel":"/k"},"disks":{"path":"/d"}}`,
		"not JSON":               `{"payload":`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			s, violations := newTestServer(t)
			code, _ := do(t, s, "PUT", "/vm.create", body)
			if code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", code)
			}
			if len(*violations) == 0 {
				t.Errorf("schema violation was not reported")
			}
			if s.State() != NotCreated {
				t.Errorf("a rejected config created the VM")
			}
		})
	}
}

func TestRoutesAndMethods(t *testing.T) {
	s, violations := newTestServer(t)
	if code, chain := do(t, s, "GET", "/vm.nonsense", ""); code != 404 || len(chain) != 1 || chain[0] != "Not Found" {
		t.Errorf("unknown route: %d %q, want 404 [\"Not Found\"]", code, chain)
	}
	if code, _ := do(t, s, "DELETE", "/vm.create", ""); code != 400 {
		t.Errorf("DELETE: %d, want 400", code)
	}
	if code, _ := do(t, s, "GET", "/vm.create", ""); code != 400 {
		t.Errorf("GET on a PUT endpoint: %d, want 400", code)
	}
	if len(*violations) != 0 {
		t.Errorf("flagged: %v", *violations)
	}
}

func TestFailureKnobs(t *testing.T) {
	s, _ := newTestServer(t)
	s.CreateError = []string{"Error from API", "The VM could not be created", "Invalid kernel path"}
	if code, chain := do(t, s, "PUT", "/vm.create", goodConfig); code != 400 || chain[2] != "Invalid kernel path" {
		t.Fatalf("create: %d %q", code, chain)
	}
	s.CreateError = nil
	s.BootError = []string{"Error from API", "The VM could not boot", "Cannot load kernel"}
	do(t, s, "PUT", "/vm.create", goodConfig)
	if code, _ := do(t, s, "PUT", "/vm.boot", ""); code != 500 || s.State() != Created {
		t.Fatalf("boot with BootError: %d, state %q", code, s.State())
	}
	s.PingError = []string{"boom"}
	if code, _ := do(t, s, "GET", "/vmm.ping", ""); code != 500 {
		t.Fatalf("ping with PingError: %d", code)
	}
}

// The response check must catch the fake itself answering what the real
// server could not.
func TestFlagsBadResponses(t *testing.T) {
	s, violations := newTestServer(t)
	req := httptest.NewRequest("GET", "http://localhost/api/v1/vmm.ping", nil)
	route, _, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, Route: route}
	s.checkResponse(context.Background(), in, "/vmm.ping", reply{status: 200, body: []byte(`{"build_version":"x"}`)})
	if len(*violations) != 1 {
		t.Fatalf("ping answer without version: %d violations, want 1", len(*violations))
	}
	s.checkResponse(context.Background(), in, "/vmm.ping", reply{status: 500, body: []byte(`{"error":"x"}`)})
	if len(*violations) != 2 {
		t.Fatalf("error body that is not a string array: %d violations, want 2", len(*violations))
	}
}

func TestPowerOff(t *testing.T) {
	s, _ := newTestServer(t)
	do(t, s, "PUT", "/vm.create", goodConfig)
	do(t, s, "PUT", "/vm.boot", "")
	s.PowerOff()
	if s.State() != Shutdown {
		t.Fatalf("state after power off: %q", s.State())
	}
}
