package fakechv

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type step struct {
	method, endpoint, body string
	status                 int
	lastMsg                string
	state                  State
}

func runSteps(t *testing.T, s *Server, steps []step) {
	t.Helper()
	for i, st := range steps {
		code, chain := do(t, s, st.method, st.endpoint, st.body)
		if code != st.status {
			t.Fatalf("step %d %s %s: status %d, want %d (%q)", i, st.method, st.endpoint, code, st.status, chain)
		}
		if st.lastMsg != "" && (len(chain) == 0 || !strings.Contains(chain[len(chain)-1], st.lastMsg)) {
			t.Fatalf("step %d %s %s: chain %q, want its last message to contain %q", i, st.method, st.endpoint, chain, st.lastMsg)
		}
		if got := s.State(); got != st.state {
			t.Fatalf("step %d %s %s: state %q, want %q", i, st.method, st.endpoint, got, st.state)
		}
	}
}

// The order Cloud Hypervisor enforces: only a running VM pauses, only a paused one is
// snapshotted or resumed, and restore needs a VMM without a VM. A driver calling them
// in another order fails here as it would against the real VMM.
func TestSnapshotStateMachine(t *testing.T) {
	s, violations := newTestServer(t)
	dir := t.TempDir()
	snap := jsonBody(t, map[string]string{"destination_url": "file://" + dir})
	runSteps(t, s, []step{
		{"PUT", "/vm.pause", "", 500, "VM is not running", NotCreated},
		{"PUT", "/vm.resume", "", 500, "VM is not running", NotCreated},
		{"PUT", "/vm.snapshot", snap, 500, "VM is not running", NotCreated},
		{"PUT", "/vm.create", goodConfig, 204, "", Created},
		{"PUT", "/vm.pause", "", 500, "VM is not running", Created},
		{"PUT", "/vm.boot", "", 204, "", Running},
		{"PUT", "/vm.snapshot", snap, 500, "Trying to snapshot while VM is running", Running},
		{"PUT", "/vm.resume", "", 500, "InvalidStateTransition(Running, Running)", Running},
		{"PUT", "/vm.pause", "", 204, "", Paused},
		{"PUT", "/vm.pause", "", 500, "InvalidStateTransition(Paused, Paused)", Paused},
		{"PUT", "/vm.snapshot", jsonBody(t, map[string]string{"destination_url": dir}), 500, "Could not extract path from URL", Paused},
		{"PUT", "/vm.snapshot", jsonBody(t, map[string]string{"destination_url": "file://" + dir + "/missing"}), 500, "Destination is not a directory", Paused},
		{"PUT", "/vm.snapshot", snap, 204, "", Paused},
		// create_new: a second snapshot into the same directory fails.
		{"PUT", "/vm.snapshot", snap, 500, "file exists", Paused},
		{"GET", "/vm.info", "", 200, "", Paused},
		{"PUT", "/vm.restore", jsonBody(t, map[string]string{"source_url": "file://" + dir}), 500, "VM is already created", Paused},
		{"PUT", "/vm.resume", "", 204, "", Running},
		{"PUT", "/vm.pause", "", 204, "", Paused},
		{"PUT", "/vm.shutdown", "", 204, "", Shutdown},
		{"PUT", "/vm.resume", "", 500, "InvalidStateTransition(Shutdown, Running)", Shutdown},
	})
	for _, f := range []string{SnapshotConfigFile, SnapshotStateFile, SnapshotMemoryFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("snapshot file: %v", err)
		}
	}
	mem, _ := os.ReadFile(filepath.Join(dir, SnapshotMemoryFile))
	if len(mem) != 268435456 || !strings.HasPrefix(string(mem), MemoryMarker) {
		t.Errorf("memory-ranges: %d bytes starting %q; want the config's 268435456 starting with the marker", len(mem), mem[:min(len(mem), 32)])
	}

	// A fresh VMM restores it, paused, and sees the snapshot's config.
	r, violations2 := newTestServer(t)
	var restored json.RawMessage
	r.OnRestore = func(c json.RawMessage) error { restored = c; return nil }
	resumed := false
	r.OnResume = func() { resumed = true }
	runSteps(t, r, []step{
		{"PUT", "/vm.resume", "", 500, "VM is not running", NotCreated},
		{"PUT", "/vm.restore", jsonBody(t, map[string]any{"source_url": "file://" + dir, "prefault": false}), 204, "", Paused},
		{"GET", "/vm.info", "", 200, "", Paused},
		{"PUT", "/vm.restore", jsonBody(t, map[string]any{"source_url": "file://" + dir}), 500, "VM is already created", Paused},
		{"PUT", "/vm.resume", "", 204, "", Running},
	})
	var cfg struct {
		Vsock struct{ Socket string }
		IOMMU *bool `json:"iommu"`
	}
	if err := json.Unmarshal(restored, &cfg); err != nil || cfg.Vsock.Socket != "/tmp/v.sock" || cfg.IOMMU == nil {
		t.Errorf("OnRestore got %s (%v); want the snapshot's whole config", restored, err)
	}
	if !resumed {
		t.Error("OnResume did not run")
	}
	if len(*violations)+len(*violations2) != 0 {
		t.Fatalf("valid traffic flagged: %v %v", *violations, *violations2)
	}
}

func TestRestoreFailures(t *testing.T) {
	good := t.TempDir()
	s, _ := newTestServer(t)
	runSteps(t, s, []step{
		{"PUT", "/vm.create", goodConfig, 204, "", Created},
		{"PUT", "/vm.boot", "", 204, "", Running},
		{"PUT", "/vm.pause", "", 204, "", Paused},
		{"PUT", "/vm.snapshot", jsonBody(t, map[string]string{"destination_url": "file://" + good}), 204, "", Paused},
	})
	corrupt := func(name, content string) string {
		d := t.TempDir()
		for _, f := range []string{SnapshotConfigFile, SnapshotStateFile, SnapshotMemoryFile} {
			if err := os.Link(filepath.Join(good, f), filepath.Join(d, f)); err != nil {
				t.Fatal(err)
			}
		}
		os.Remove(filepath.Join(d, name))
		if content != "" {
			os.WriteFile(filepath.Join(d, name), []byte(content), 0o600)
		}
		return d
	}
	cases := map[string]struct {
		dir, want string
	}{
		"no directory":            {filepath.Join(good, "nope"), "Destination is not a directory"},
		"no config.json":          {corrupt(SnapshotConfigFile, ""), "no such file or directory"},
		"config.json not JSON":    {corrupt(SnapshotConfigFile, "{"), "unexpected end of JSON input"},
		"no state.json":           {corrupt(SnapshotStateFile, ""), "no such file or directory"},
		"state.json truncated":    {corrupt(SnapshotStateFile, `{"snapshot_data":`), "unexpected end of JSON input"},
		"state.json no VM":        {corrupt(SnapshotStateFile, `{"snapshot_data":{}}`), "Could not find VM config snapshot section"},
		"no memory-ranges":        {corrupt(SnapshotMemoryFile, ""), "no such file or directory"},
		"memory-ranges too short": {corrupt(SnapshotMemoryFile, "x"), "memory-ranges holds 1 bytes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r, violations := newTestServer(t)
			called := false
			r.OnRestore = func(json.RawMessage) error { called = true; return nil }
			runSteps(t, r, []step{{"PUT", "/vm.restore", jsonBody(t, map[string]string{"source_url": "file://" + tc.dir}), 500, tc.want, NotCreated}})
			if called {
				t.Error("the devices of a snapshot that cannot be read were built")
			}
			if len(*violations) != 0 {
				t.Errorf("flagged: %v", *violations)
			}
		})
	}
	t.Run("device fails", func(t *testing.T) {
		r, _ := newTestServer(t)
		r.OnRestore = func(json.RawMessage) error { return errors.New("Address in use") }
		runSteps(t, r, []step{{"PUT", "/vm.restore", jsonBody(t, map[string]string{"source_url": "file://" + good}), 500, "Address in use", NotCreated}})
	})
	t.Run("prefault with on-demand", func(t *testing.T) {
		r, _ := newTestServer(t)
		runSteps(t, r, []step{{"PUT", "/vm.restore", jsonBody(t, map[string]any{"source_url": "file://" + good, "prefault": true, "memory_restore_mode": "OnDemand"}), 400, "prefault", NotCreated}})
	})
}

func TestSnapshotBodiesAgainstSchema(t *testing.T) {
	bad := map[string]struct{ endpoint, body string }{
		"restore without source_url":  {"/vm.restore", `{"prefault":false}`},
		"restore prefault as text":    {"/vm.restore", `{"source_url":"file:///x","prefault":"no"}`},
		"restore unknown memory mode": {"/vm.restore", `{"source_url":"file:///x","memory_restore_mode":"Lazy"}`},
		"snapshot url as number":      {"/vm.snapshot", `{"destination_url":3}`},
		"snapshot without body":       {"/vm.snapshot", ``},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			s, violations := newTestServer(t)
			if code, _ := do(t, s, "PUT", tc.endpoint, tc.body); code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", code)
			}
			if len(*violations) == 0 {
				t.Error("schema violation was not reported")
			}
		})
	}
}
