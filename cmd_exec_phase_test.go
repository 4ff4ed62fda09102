package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// --json carries each stage's phases; a local stage has no VM, so no vm.* phases.
func TestExecJSONPhasesLocal(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "p.star", `pipeline = box(name = "hello", cmd = ["echo", "hi"])`+"\n")
	r := voidbox(t, "exec", "--sandbox", "local", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	var doc struct {
		DurationMS int64 `json:"duration_ms"`
		Stages     map[string]struct {
			Phases []struct {
				Name       string `json:"name"`
				Attempt    int    `json:"attempt"`
				StartMS    *int64 `json:"start_ms"`
				DurationMS *int64 `json:"duration_ms"`
				Detail     string `json:"detail"`
			} `json:"phases"`
		} `json:"stages"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	var names []string
	for _, p := range doc.Stages["hello"].Phases {
		names = append(names, p.Name)
		if p.Attempt != 1 || p.StartMS == nil || p.DurationMS == nil || *p.StartMS+*p.DurationMS > doc.DurationMS {
			t.Errorf("phase %+v: want attempt 1, start_ms and duration_ms within the run's %d ms", p, doc.DurationMS)
		}
		if p.Name == "exec" && p.Detail != "echo" {
			t.Errorf("exec phase detail %q, want echo", p.Detail)
		}
	}
	if got := strings.Join(names, " "); got != "file.write exec sandbox.close" {
		t.Errorf("phases %q, want \"file.write exec sandbox.close\"\n%s", got, r.stdout)
	}
}

// The live view leaves phases to --verbose, but for vm.boot: how the VM started.
func TestLiveViewPhases(t *testing.T) {
	var b strings.Builder
	v := newLiveView(&b)
	v.event(runtime.Event{Stage: "s", Kind: runtime.EventPhase, Phase: &runtime.Phase{Name: runtime.PhaseExec, Detail: "true"}})
	if b.Len() != 0 {
		t.Errorf("live view printed %q for an exec phase", b.String())
	}
	v.event(runtime.Event{Stage: "s", Kind: runtime.EventPhase, Phase: &runtime.Phase{Name: runtime.PhaseBoot, Duration: 534 * time.Millisecond,
		Detail: "qemu/tcg warm start from snapshot 0123456789ab"}})
	if want := "vm.boot 534ms (qemu/tcg warm start from snapshot 0123456789ab)\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("live view printed %q for vm.boot, want a line ending %q", b.String(), want)
	}
	b.Reset()
	v.event(runtime.Event{Stage: "s", Kind: runtime.EventStart, Attempt: 1})
	if !strings.HasSuffix(b.String(), "start\n") {
		t.Errorf("live view printed %q for a start, want a start line", b.String())
	}
}
