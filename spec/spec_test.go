package spec

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/starfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./spec -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Every golden spec converts to the program in NAME.star and inspects as NAME.inspect;
// the program is as `voidbox fmt` writes it, and it is exactly the program Load ran
// (so error positions map onto what convert prints).
func TestGoldenSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) < 5 {
		t.Fatalf("want golden specs of every kind in testdata, found %v", files)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(base, func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			kinds[s.Kind] = true
			golden(t, base+".star", s.Program)
			golden(t, base+".inspect", Inspect(s))
			out, err := starfmt.Format(base+".star", []byte(s.Program))
			if err != nil || string(out) != s.Program {
				t.Errorf("the program is not formatted (%v):\n%s", err, out)
			}
			_, prog, err := decode(f, mustRead(t, f))
			if err != nil || prog.b.String() != s.Program {
				t.Errorf("the program run differs from the one printed (%v):\n%s", err, prog.b.String())
			}
		})
	}
	for _, k := range []string{KindAgent, KindPipeline, KindWorkflow, KindSandbox} {
		if !kinds[k] {
			t.Errorf("no golden spec of kind %s", k)
		}
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSettings(t *testing.T) {
	s, err := Load("testdata/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := s.Graph.Stages()
	if len(st) != 3 || st[2].Name != "critic" || st[2].MemoryMB != 2048 || st[2].Env["STRICT"] != "1" || st[0].MemoryMB != 512 || !st[0].Network {
		t.Errorf("pipeline stages: %+v", st)
	}
	if s.Mode != ModeMock || s.Pos("sandbox.mode") != "testdata/pipeline.yaml:7:9" {
		t.Errorf("mode %s at %s", s.Mode, s.Pos("sandbox.mode"))
	}
	dir, _ := filepath.Abs("testdata")
	s, err = Parse("testdata/k.yaml", []byte("kind: sandbox\nname: k\nsandbox:\n  kernel: vmlinux\n  mounts:\n    - {host: ., guest: /data}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "vmlinux"); s.Kernel != want {
		t.Errorf("kernel %q, want %q (relative to the spec)", s.Kernel, want)
	}
	if m := s.Graph.Stages()[0].Mounts; len(m) != 1 || m[0].Host != dir || m[0].Mode != "ro" {
		t.Errorf("mounts %+v, want the spec's directory", m)
	}
}

// Every malformed spec is refused with its exact message at its exact position.
func TestErrors(t *testing.T) {
	const wf = "kind: workflow\nname: w\nworkflow:\n  steps:\n"
	const pl = "kind: pipeline\nname: p\npipeline:\n  boxes:\n    - {name: a, prompt: x}\n    - {name: b, prompt: y}\n"
	cases := []struct{ name, src, want string }{
		{"empty", "", "s.yaml:1:1: the spec is empty; it needs at least api_version, kind and name"},
		{"not yaml", "kind: [agent\n", "s.yaml:1:1: not valid YAML: did not find expected ',' or ']'"},
		{"not a mapping", "- a\n", "s.yaml:1:1: the spec must be a mapping, got a list"},
		{"api_version", "api_version: v2\nkind: agent\n", `s.yaml:1:14: api_version "v2" is not supported; use v1`},
		{"unknown top key", "kind: agent\nname: a\nnmae: x\n", `s.yaml:3:1: unknown key "nmae" in the spec (known: api_version, kind, name, sandbox, llm, agent, pipeline, workflow)`},
		{"unknown kind", "kind: job\nname: a\n", `s.yaml:1:7: unknown kind "job" (known: agent, pipeline, workflow, sandbox)`},
		{"kind type", "kind: 3\n", `s.yaml:1:7: kind must be a string, got integer 3 (quote it: "3")`},
		{"missing kind", "name: a\n", `s.yaml:1:1: the spec: missing required key "kind"`},
		{"missing section", "kind: agent\nname: a\n", `s.yaml:1:1: the spec: missing required key "agent"`},
		{"foreign section", "kind: workflow\nname: a\nllm: {provider: claude}\n", `s.yaml:3:1: a spec of kind workflow takes no llm section (llm is for kinds agent and pipeline, whose boxes run a model)`},
		{"unknown agent key", "kind: agent\nname: a\nagent:\n  promt: hi\n", `s.yaml:4:3: unknown key "promt" in agent (known: prompt, skills, timeout_secs, output_file, mode)`},
		{"duplicate key", "kind: agent\nname: a\nagent:\n  prompt: hi\n  prompt: ho\n", `s.yaml:5:3: key "prompt" appears twice in agent`},
		{"wrong type int", "kind: agent\nname: a\nagent:\n  prompt: hi\n  timeout_secs: soon\n", `s.yaml:5:17: agent.timeout_secs must be an integer, got string "soon"`},
		{"wrong type bool", "kind: sandbox\nname: a\nsandbox:\n  network: yes please\n", `s.yaml:4:12: sandbox.network must be true or false, got string "yes please"`},
		{"wrong type list", "kind: agent\nname: a\nagent:\n  prompt: hi\n  skills: agent:claude-code\n", `s.yaml:5:11: agent.skills must be a list, got string "agent:claude-code"`},
		{"wrong type mapping", "kind: agent\nname: a\nagent: hi\n", `s.yaml:3:8: agent must be a mapping, got string "hi"`},
		{"timeout zero", "kind: agent\nname: a\nagent:\n  prompt: hi\n  timeout_secs: 0\n", `s.yaml:5:17: agent.timeout_secs must be a positive number of seconds, got 0`},
		{"mode", "kind: sandbox\nname: a\nsandbox:\n  mode: vm\n", `s.yaml:4:9: sandbox.mode must be auto, local or mock, got "vm"`},
		{"agent mode", "kind: agent\nname: a\nagent:\n  prompt: hi\n  mode: service\n", `s.yaml:5:9: agent.mode "service" is not supported: voidbox runs an agent as a task (mode: task) that ends with its answer`},
		{"provider", "kind: agent\nname: a\nllm:\n  provider: codex\nagent:\n  prompt: hi\n", `s.yaml:4:13: llm.provider "codex" is not supported (supported: claude, ollama, custom)`},
		{"alias", "kind: sandbox\nname: &n a\nsandbox:\n  env: {A: *n}\n", "s.yaml:4:12: YAML aliases (*n) are not supported in specs; write the value out"},
		// Values checked by the DSL's own builtins, reported at the spec's node.
		{"memory", "kind: sandbox\nname: a\nsandbox:\n  memory_mb: 32\n", "s.yaml:4:14: sandbox.memory_mb must be between 64 and 65536, got 32"},
		{"box name", "kind: sandbox\nname: Big Box\n", `s.yaml:2:7: name "Big Box" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)`},
		{"skill", "kind: agent\nname: a\nagent:\n  prompt: hi\n  skills: [\"foo:x\"]\n", `s.yaml:5:12: agent.skills[0]: skill: unknown skill kind "foo" in "foo:x"; valid prefixes are "file:", "agent:", "cli:", "mcp:", "remote:" (or the keyword forms skill(image=REF, mount=PATH) and skill(mcp=COMMAND, args=[...]))`},
		{"mount guest", "kind: sandbox\nname: a\nsandbox:\n  mounts:\n    - {host: ., guest: /proc/x}\n", `s.yaml:5:24: sandbox.mounts[0].guest: guest path "/proc/x" must not be or be under /proc, which the guest needs for itself`},
		{"output_file", "kind: agent\nname: a\nagent:\n  prompt: hi\n  output_file: out.md\n", `s.yaml:5:16: agent.output_file "out.md" must be a clean absolute path under /workspace/, e.g. "/workspace/report.md"`},
		// Pipelines.
		{"missing box", pl + "  stages:\n    - {type: box, name: a}\n    - {type: box, name: c}\n", `s.yaml:9:25: pipeline.stages[1].name: no box named "c" in pipeline.boxes (boxes: a, b)`},
		{"missing fan_out box", pl + "  stages:\n    - type: fan_out\n      boxes: [a, zz]\n", `s.yaml:9:18: pipeline.stages[0].boxes[1]: no box named "zz" in pipeline.boxes (boxes: a, b)`},
		{"box twice", pl + "  stages:\n    - {type: box, name: a}\n    - {type: fan_out, boxes: [b, a]}\n", `s.yaml:9:34: pipeline.stages[1].boxes[1]: box "a" already runs at pipeline.stages[0].name; a box runs once in a pipeline (declare another box to run it twice)`},
		{"stage type", pl + "  stages:\n    - {type: loop, name: a}\n", `s.yaml:8:14: pipeline.stages[0].type must be box or fan_out, got "loop"`},
		{"duplicate box", "kind: pipeline\nname: p\npipeline:\n  boxes:\n    - {name: a, prompt: x}\n    - {name: a, prompt: y}\n", `s.yaml:6:14: pipeline.boxes[1].name: box name "a" is used twice in pipeline.boxes; box names must be unique`},
		{"box override key", "kind: pipeline\nname: p\npipeline:\n  boxes:\n    - name: a\n      prompt: x\n      sandbox: {mode: local}\n", `s.yaml:7:17: unknown key "mode" in pipeline.boxes[0].sandbox (known: image, memory_mb, vcpus, network, env, mounts)`},
		{"no boxes", "kind: pipeline\nname: p\npipeline:\n  boxes: []\n", "s.yaml:4:10: pipeline.boxes must list at least one box"},
		// Workflows.
		{"cycle", wf + "    - {name: a, run: {program: x}, depends_on: [b]}\n    - {name: b, run: {program: x}, depends_on: [a]}\n", "s.yaml:6:49: workflow.steps[1].depends_on[0]: steps form a cycle through depends_on: a -> b -> a"},
		{"stdin not a dependency", wf + "    - {name: a, run: {program: x}}\n    - {name: b, run: {program: x, stdin_from: a}}\n", `s.yaml:6:47: workflow.steps[1].run.stdin_from: step "b" reads stdin from "a", which it does not depend on; add "a" to its depends_on`},
		{"unknown dependency", wf + "    - {name: a, run: {program: x}, depends_on: [zz]}\n", `s.yaml:5:49: workflow.steps[0].depends_on[0]: step "a" depends on "zz", which is not a step (steps: a)`},
		{"duplicate step", wf + "    - {name: a, run: {program: x}}\n    - {name: a, run: {program: x}}\n", `s.yaml:6:14: workflow.steps[1].name: step name "a" is used by steps 1 and 2; step names must be unique`},
		{"output_step", wf + "    - {name: a, run: {program: x}}\n  output_step: b\n", `s.yaml:6:16: workflow.output_step: output_step "b" is not a step (steps: a)`},
		{"no steps", wf + "    []\n", "s.yaml:5:5: workflow.steps: a workflow needs at least one step"},
		{"missing run", wf + "    - {name: a}\n", `s.yaml:5:7: workflow.steps[0]: missing required key "run"`},
		{"unknown run key", wf + "    - {name: a, run: {program: x, argv: [y]}}\n", `s.yaml:5:35: unknown key "argv" in workflow.steps[0].run (known: program, args, stdin_from)`},
		{"step name", wf + "    - {name: A, run: {program: x}}\n", `s.yaml:5:14: workflow.steps[0].name "A" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("error %T %v is not a spec.Error", err, err)
			}
			if err.Error() != c.want {
				t.Errorf("error\n got: %s\nwant: %s", err, c.want)
			}
		})
	}
}

// FuzzLoad: whatever the bytes, Parse returns a spec or an error, never panics, and a
// spec it returns has a graph and a program.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("kind: workflow\nname: w\nworkflow:\n  steps:\n    - {name: a, run: {program: x}, depends_on: [a]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("testdata/fuzz.yaml", data)
		if err != nil {
			if s != nil {
				t.Fatal("a spec and an error")
			}
			return
		}
		if s.Graph == nil || s.Program == "" {
			t.Fatalf("spec without graph or program: %+v", s)
		}
	})
}
