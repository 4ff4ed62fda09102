package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The golden specs of every kind, run with `voidbox run --file` in the sandbox their
// mode names (the diamond, written for a microVM, under --sandbox local here).
var goldenRuns = []struct {
	spec, input, want string
	flags             []string
}{
	{spec: "workflow.yaml", want: "HELLO FROM WORKFLOW\n"},
	{spec: "diamond.yaml", want: "ALPHA\nfrom-a\n", flags: []string{"--sandbox", "local"}},
	{spec: "pipeline.yaml", input: "facts", want: `["factsanalyst\nwriter\n","factsanalyst\ncritic\n"]` + "\n"},
	{spec: "agent.yaml", input: "diff", want: "diffreviewer\n"},
	{spec: "sandbox.yaml", input: "echo $GREETING world", want: "hello world\n"},
}

func TestRunGoldenSpecs(t *testing.T) {
	for _, g := range goldenRuns {
		t.Run(g.spec, func(t *testing.T) {
			args := append([]string{"run", "--file", filepath.Join("spec/testdata", g.spec), "--input", g.input}, g.flags...)
			r := voidbox(t, args...)
			if r.code != exitOK || r.stdout != g.want {
				t.Errorf("exit %d, stdout %q, want %q\nstderr: %s", r.code, r.stdout, g.want, r.stderr)
			}
		})
	}
}

// Round trip: convert prints the golden program beside the spec, fmt --check accepts
// it, and exec runs it to the output `run --file` gives.
func TestConvertRoundTrip(t *testing.T) {
	for _, g := range goldenRuns {
		t.Run(g.spec, func(t *testing.T) {
			spec := filepath.Join("spec/testdata", g.spec)
			star := strings.TrimSuffix(spec, ".yaml") + ".star"
			r := voidbox(t, "convert", spec)
			want, err := os.ReadFile(star)
			if err != nil || r.code != exitOK || r.stdout != string(want) {
				t.Fatalf("convert: exit %d (%v), stdout:\n%s\nwant the golden %s:\n%s", r.code, err, r.stdout, star, want)
			}
			if r := voidbox(t, "fmt", "--check", star); r.code != exitOK {
				t.Errorf("fmt --check %s: exit %d %s%s", star, r.code, r.stdout, r.stderr)
			}
			run := voidbox(t, append([]string{"run", "--file", spec}, g.flags...)...)
			sandbox := "mock"
			if strings.Contains(r.stdout, "--sandbox local") || len(g.flags) > 0 {
				sandbox = "local"
			}
			exec := voidbox(t, "exec", "--sandbox", sandbox, star)
			if run.code != exitOK || exec.code != exitOK || run.stdout != exec.stdout {
				t.Errorf("run --file: exit %d %q; exec %s: exit %d %q\nstderr: %s%s", run.code, run.stdout, star, exec.code, exec.stdout, run.stderr, exec.stderr)
			}
		})
	}
}

func TestRunJSONHasSteps(t *testing.T) {
	r := voidbox(t, "run", "--json", "--file", "spec/testdata/workflow.yaml")
	var doc struct {
		OK     bool
		Output string
		Stages map[string]struct {
			Steps []struct {
				Name     string
				Status   string
				ExitCode *int `json:"exit_code"`
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	steps := doc.Stages["quick-workflow"].Steps
	if !doc.OK || len(steps) != 2 || steps[1].Name != "transform" || steps[1].Status != "ok" || steps[1].ExitCode == nil || *steps[1].ExitCode != 0 {
		t.Errorf("--json: %s", r.stdout)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "kind: agent\nname: a\nagent:\n  promt: hi\n")
	kernel := writeFile(t, dir, "kernel.yaml", "kind: sandbox\nname: k\nsandbox:\n  mode: mock\n  kernel: vmlinux\n")
	failing := writeFile(t, dir, "fail.yaml", "kind: workflow\nname: w\nsandbox: {mode: local}\nworkflow:\n  steps:\n    - {name: a, run: {program: sh, args: [-c, 'echo no >&2; exit 3']}}\n")
	input := writeFile(t, dir, "in.txt", "from a file")
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"run", "--file", bad}, exitUsage, "", `voidbox run: ` + bad + `:4:3: unknown key "promt" in agent (known: prompt, skills, timeout_secs, output_file, mode)`},
		{[]string{"validate", bad}, exitUsage, "", `voidbox validate: ` + bad + `:4:3: unknown key "promt"`},
		{[]string{"inspect", bad}, exitUsage, "", `voidbox inspect: ` + bad + `:4:3: unknown key "promt"`},
		{[]string{"convert", bad}, exitUsage, "", `voidbox convert: ` + bad + `:4:3: unknown key "promt"`},
		{[]string{"run", "--file", kernel}, exitUsage, "", "voidbox run: " + kernel + ":5:11: sandbox.kernel: the mock sandbox boots no VM, so it cannot use it; remove it, or run in a microVM (mode: auto)"},
		{[]string{"run", "--file", "spec/testdata/workflow.yaml", "--input", "@" + filepath.Join(dir, "missing")}, exitUsage, "", "voidbox run: --input: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]string{"run", "spec/testdata/workflow.yaml"}, exitUsage, "", "voidbox run: want --file SPEC and no other arguments"},
		{[]string{"run", "--file", failing}, exitFailed, "", "failed in"},
		{[]string{"run", "--file", "spec/testdata/sandbox.yaml", "--input", "@" + input, "--sandbox", "mock"}, exitOK, "from a filescratch\n", ""},
		{[]string{"validate", "spec/testdata/pipeline.yaml"}, exitOK, "spec/testdata/pipeline.yaml: ok (kind pipeline, 3 stages)\n", ""},
		{[]string{"inspect", "spec/testdata/diamond.yaml"}, exitOK, "  d  cmd=", ""},
	}
	for _, c := range cases {
		r := voidbox(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("voidbox %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
		}
	}
}
