package main

import (
	"encoding/json"
	"strings"
	"testing"
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
