package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
)

// In real microVMs, `exec --json` gives a busy stage's guest object and `--report`
// draws its sparklines.
func TestVMExecGuestSamples(t *testing.T) {
	dir := t.TempDir()
	prog := writeFile(t, dir, "busy.star", `pipeline = box(name = "busy", cmd = ["sh", "-c",
    "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/tmp/x bs=1M count=40 2>/dev/null; sleep 1"])
`)
	report := filepath.Join(dir, "report.html")
	r := voidbox(t, vmArgs(t, "--json", "--report", report, prog)...)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var doc struct {
		Stages map[string]struct {
			Guest *struct {
				SampleCount   int      `json:"sample_count"`
				CPUPeak       *float64 `json:"cpu_peak"`
				MemStartBytes uint64   `json:"mem_start_bytes"`
				MemPeakBytes  uint64   `json:"mem_peak_bytes"`
				MemTotalBytes uint64   `json:"mem_total_bytes"`
				Samples       []struct {
					AtMS int64 `json:"t_ms"`
				} `json:"samples"`
			} `json:"guest"`
		} `json:"stages"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	g := doc.Stages["busy"].Guest
	if g == nil {
		t.Fatalf("stage busy has no guest object:\n%s", r.stdout)
	}
	if g.SampleCount < 3 || len(g.Samples) != g.SampleCount || g.CPUPeak == nil || *g.CPUPeak <= 0.5 ||
		g.MemPeakBytes-g.MemStartBytes < 30<<20 || g.MemTotalBytes == 0 || g.MemTotalBytes > 512<<20 {
		t.Errorf("stage busy's guest = %+v (cpu peak %v), want >= 3 samples, CPU peak > 0.5, memory up >= 30 MiB of at most 512", g, g.CPUPeak)
	}
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<tr data-stage="busy">`, `<svg class="spark cpu"`, `<svg class="spark mem"`, "CPU mean"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the report lacks %s", want)
		}
	}
	if strings.Contains(string(html), "Guest CPU and memory: not recorded") {
		t.Error("the report says guest CPU and memory were not recorded for a VM run")
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}
