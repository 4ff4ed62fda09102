package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

// --json gives each stage a guest object: the samples' summary where the sandbox
// measured the guest, null where it did not (never made-up zeros).
func TestExecJSONGuest(t *testing.T) {
	cpu := 0.8
	res := &runtime.Result{OK: true, Order: []string{"vm", "local"}, Stages: map[string]*runtime.StageResult{
		"vm": {Name: "vm", Status: runtime.StatusOK, Guest: &runtime.GuestStats{SampleCount: 1, CPUPeak: &cpu, CPUMean: &cpu,
			MemStartBytes: 20 << 20, MemPeakBytes: 20 << 20, MemTotalBytes: 480 << 20, ProcsPeak: 30,
			Samples: []runtime.GuestSample{{AtMS: 500, CPU: &cpu, MemBytes: 20 << 20, Procs: 30}}}},
		"local": {Name: "local", Status: runtime.StatusOK},
	}}
	var b bytes.Buffer
	if err := writeJSON(&b, execJSON(res, "")); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stages map[string]map[string]json.RawMessage `json:"stages"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if g, ok := doc.Stages["local"]["guest"]; !ok || string(g) != "null" {
		t.Errorf("stage local: guest = %s (present %v), want null", g, ok)
	}
	var g struct {
		SampleCount int                   `json:"sample_count"`
		CPUPeak     *float64              `json:"cpu_peak"`
		MemTotal    uint64                `json:"mem_total_bytes"`
		Samples     []runtime.GuestSample `json:"samples"`
	}
	if err := json.Unmarshal(doc.Stages["vm"]["guest"], &g); err != nil {
		t.Fatalf("stage vm guest: %v\n%s", err, b.String())
	}
	if g.SampleCount != 1 || g.CPUPeak == nil || *g.CPUPeak != 0.8 || g.MemTotal != 480<<20 || len(g.Samples) != 1 || g.Samples[0].AtMS != 500 {
		t.Errorf("stage vm guest = %+v, want the stage's GuestStats", g)
	}
}

// The local sandbox measures no guest: its stages' guest is null.
func TestExecJSONGuestNullLocal(t *testing.T) {
	dir := t.TempDir()
	prog := writeFile(t, dir, "p.star", `pipeline = box(name = "a", cmd = ["true"])`+"\n")
	r := voidbox(t, "exec", "--sandbox", "local", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"guest": null`) {
		t.Errorf("--json of a local run lacks \"guest\": null:\n%s", r.stdout)
	}
}
