package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/anthropictest"
	"github.com/voidbox/voidbox/internal/vmtest"
)

// runVMArgs is `voidbox run --file SPEC` in a real microVM (QEMU, TCG) on the test image.
func runVMArgs(t *testing.T, spec string, args ...string) []string {
	img := vmtest.Image(t)
	return append([]string{"run", "--file", spec, "--sandbox", "vm", "--accel", "tcg", "--kernel", img.Kernel, "--initramfs", img.Initramfs}, args...)
}

// The diamond workflow in one real VM: b and c each wait for a file the other creates
// (both succeed only when the guest agent runs them at the same time, which also shows
// its Exec multiplexes concurrent calls on one session), d reads a file a wrote in /tmp
// (one VM), and c's stdin is a's stdout.
func TestVMRunSpecDiamond(t *testing.T) {
	r := voidbox(t, runVMArgs(t, "spec/testdata/diamond.yaml", "--json")...)
	var doc struct {
		OK     bool
		Output string
		Stages map[string]struct {
			Attempts int
			Steps    []struct{ Name, Status, Error string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("exit %d: %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	st := doc.Stages["diamond"]
	if r.code != exitOK || !doc.OK || doc.Output != "ALPHA\nfrom-a\n" || st.Attempts != 1 || len(st.Steps) != 4 {
		t.Fatalf("exit %d, output %q, stage %+v\nstderr: %s", r.code, doc.Output, st, r.stderr)
	}
	for _, s := range st.Steps {
		if s.Status != "ok" {
			t.Errorf("step %s: %s %s", s.Name, s.Status, s.Error)
		}
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}

// A pipeline spec with an agent box runs the real claude-code in a VM against a
// scripted Messages API, the spec's llm pointing at it.
func TestVMRunSpecPipeline(t *testing.T) {
	srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Text("Upgrade openssl 1.1.1 first: it is past end of life.")),
	}})
	t.Setenv("VOIDBOX_TEST_KEY", "sk-voidbox-example")
	spec := writeFile(t, t.TempDir(), "pipeline.yaml", `api_version: v1
kind: pipeline
name: vm-pipeline
llm:
  provider: claude
  base_url: `+srv.URL+`
  api_key_env: VOIDBOX_TEST_KEY
pipeline:
  boxes:
    - name: analyst
      prompt: Say which item of the input needs an upgrade first.
      timeout_secs: 900
  stages:
    - type: box
      name: analyst
`)
	r := voidbox(t, runVMArgs(t, spec, "--input", "openssl 1.1.1 end of life\n")...)
	if r.code != exitOK || strings.TrimSpace(r.stdout) != "Upgrade openssl 1.1.1 first: it is past end of life." {
		t.Fatalf("exit %d, stdout %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}
