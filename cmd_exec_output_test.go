package main

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/voidbox/voidbox/runtime"
	"testing"
)

// --timeout cancels both kinds of program with one message that names the flag, and
// nothing else about the cancellation (no "context deadline exceeded", no Starlark
// "computation cancelled").
func TestExecTimeoutWording(t *testing.T) {
	dir := t.TempDir()
	progs := map[string]string{
		"pipeline": writeFile(t, dir, "pipeline.star", `pipeline = box(name = "slow", cmd = ["sleep", "30"])`+"\n"),
		"run":      writeFile(t, dir, "run.star", "r = run(box(name = \"slow\", cmd = [\"sleep\", \"30\"]))\nprint(r.ok)\n"),
		"busy":     writeFile(t, dir, "busy.star", "while True:\n    pass\n"),
	}
	for name, prog := range progs {
		t.Run(name, func(t *testing.T) {
			r := voidbox(t, "exec", "--sandbox", "local", "--timeout", "1s", prog)
			if r.code != exitFailed {
				t.Errorf("exit code %d, want %d", r.code, exitFailed)
			}
			const want = "voidbox exec: run cancelled: --timeout 1s expired\n"
			if !strings.HasSuffix(r.stderr, want) || strings.Count(r.stderr, "voidbox exec:") != 1 || strings.Contains(r.stderr, "deadline") || strings.Contains(r.stderr, "computation cancelled") {
				t.Errorf("want stderr to end with %q, with no other cancellation message:\n%s", want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// With --json a cancelled run prints its JSON document too, whether the program called
// run() or defined `pipeline`, or was cancelled before any run() started.
func TestExecJSONWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	progs := map[string]struct {
		src    string
		stages int
	}{
		"pipeline": {`pipeline = box(name = "slow", cmd = ["sleep", "30"])` + "\n", 1},
		"run":      {"r = run(box(name = \"slow\", cmd = [\"sleep\", \"30\"]))\nprint(r.ok)\n", 1},
		"no run":   {"r = run(box(name = \"fast\", cmd = [\"true\"]))\nwhile True:\n    pass\n", 0},
	}
	for name, p := range progs {
		t.Run(name, func(t *testing.T) {
			prog := writeFile(t, dir, strings.ReplaceAll(name, " ", "_")+".star", p.src)
			r := voidbox(t, "exec", "--sandbox", "local", "--json", "--timeout", "1s", prog)
			if r.code != exitFailed {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, exitFailed, r.stderr)
			}
			var doc struct {
				OK     *bool                      `json:"ok"`
				Error  string                     `json:"error"`
				Stages map[string]json.RawMessage `json:"stages"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("stdout is not a JSON document: %v\n%q\nstderr:\n%s", err, r.stdout, r.stderr)
			}
			if doc.OK == nil || *doc.OK || doc.Error != "cancelled: --timeout 1s expired" || len(doc.Stages) != p.stages {
				t.Errorf("ok %v, error %q, %d stages; want ok false, error %q, %d stages:\n%s", doc.OK, doc.Error, len(doc.Stages), "cancelled: --timeout 1s expired", p.stages, r.stdout)
			}
		})
	}
}

func TestExecRejectsNegativeTimeout(t *testing.T) {
	r := voidbox(t, "exec", "--sandbox", "mock", "--timeout", "-1s", "examples/hello.star")
	if r.code != exitUsage || r.stderr != "voidbox exec: --timeout must be 0 (no limit) or more, got -1s\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// Output that is not UTF-8 survives --json byte for byte: such a field moves to
// NAME_base64, for stdout, stderr and output alike, for stages and for the run.
func TestExecJSONCarriesBinaryOutput(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "bin.star", `
bin = box(name = "bin", cmd = ["sh", "-c", "printf '\\377\\376ab'; printf 'err\\377' >&2"])
text = box(name = "text", cmd = ["echo", "héllo"])
pipeline = pipe(text, bin)
`)
	r := voidbox(t, "exec", "--sandbox", "local", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	stages := doc["stages"].(map[string]any)
	bin, text := stages["bin"].(map[string]any), stages["text"].(map[string]any)
	checks := []struct {
		obj       map[string]any
		what, key string
		want      any // nil: the key must be absent
	}{
		{doc, "run", "output_base64", b64("\xff\xfeab")},
		{doc, "run", "output", nil},
		{bin, "bin", "stdout_base64", b64("\xff\xfeab")},
		{bin, "bin", "stdout", nil},
		{bin, "bin", "output_base64", b64("\xff\xfeab")},
		{bin, "bin", "stderr_base64", b64("err\xff")},
		{bin, "bin", "stderr", nil},
		{text, "text", "stdout", "héllo\n"},
		{text, "text", "stdout_base64", nil},
		{text, "text", "stderr", ""},
	}
	for _, c := range checks {
		got, ok := c.obj[c.key]
		if c.want == nil && ok {
			t.Errorf("%s: %s = %v, want it absent", c.what, c.key, got)
		}
		if c.want != nil && got != c.want {
			t.Errorf("%s: %s = %v, want %v", c.what, c.key, got, c.want)
		}
	}
	if strings.Contains(r.stdout, `\u003c`) || strings.Contains(r.stdout, "\ufffd") {
		t.Errorf("the document escapes or replaces characters:\n%s", r.stdout)
	}
}

// The live view's timestamps have one format: milliseconds, right-aligned; a stage
// that was cancelled says so once.
func TestLiveViewFormat(t *testing.T) {
	dir := t.TempDir()
	script := writeFile(t, dir, "script.json", `{"b": [{"stdout": "x\n", "delay": "1200ms"}]}`)
	t.Setenv(envMockScript, script)
	prog := writeFile(t, dir, "p.star", "pipeline = pipe(box(name = \"a\", cmd = [\"true\"]), box(name = \"b\", cmd = [\"true\"]))\n")
	r := voidbox(t, "exec", "--sandbox", "mock", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	line := regexp.MustCompile(`^\[ {3}[0-9]\.[0-9]{3}s\] [a-z]+ +(start|ok in [0-9.]+m?s)$`)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines:\n%s", r.stderr)
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("line %q does not match %s", l, line)
		}
	}
	if !regexp.MustCompile(`ok in [1-9]\.[0-9]{3}s$`).MatchString(lines[3]) {
		t.Errorf("duration of b not in milliseconds: %q", lines[3])
	}

	slow := writeFile(t, dir, "slow.star", `pipeline = box(name = "slow", cmd = ["sleep", "30"])`+"\n")
	r = voidbox(t, "exec", "--sandbox", "local", "--timeout", "1s", slow)
	if !regexp.MustCompile(`\] slow +canceled in [0-9.]+m?s: the run was cancelled\n`).MatchString(r.stderr) || strings.Contains(r.stderr, "canceled: ") {
		t.Errorf("want the stage line to say canceled once:\n%s", r.stderr)
	}
}

// A program that defines `pipeline` and also calls run() gets one warning that its
// pipeline is not run.
func TestExecWarnsWhenPipelineIsNotRun(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "both.star", "r = run(box(name = \"a\", cmd = [\"true\"]))\npipeline = box(name = \"p\", cmd = [\"true\"])\n")
	r := voidbox(t, "exec", "--sandbox", "mock", prog)
	want := "voidbox exec: " + prog + " defines pipeline but also calls run(); pipeline is not run (it runs only when the program makes no run() call)\n"
	if r.code != exitOK || strings.Count(r.stderr, want) != 1 || strings.Contains(r.stderr, " p ") {
		t.Fatalf("exit %d, want %q once and stage p not run; stderr:\n%s", r.code, want, r.stderr)
	}
	if r := voidbox(t, "exec", "--sandbox", "mock", "examples/hello.star"); strings.Contains(r.stderr, "defines pipeline") {
		t.Fatalf("warned for a program without pipeline: %s", r.stderr)
	}
}

// Each error says each thing once: no "usage:" tag, no repeated prefixes.
func TestErrorsSayEachThingOnce(t *testing.T) {
	t.Setenv(envMockScript, "/nonexistent/script.json")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"exec", "--sandbox", "mock", "--set", "novalue", "x.star"}, exitUsage, "voidbox exec: --set \"novalue\": want key=value\n"},
		{[]string{"repl", "--sandbox", "docker"}, exitUsage, "voidbox repl: --sandbox must be auto, vm, local or mock, got \"docker\"\n"},
		{[]string{"exec", "--sandbox", "mock", "examples/hello.star"}, exitUsage, "voidbox exec: $VOIDBOX_MOCK_SCRIPT: "},
		{[]string{"exec", "--accel", "fast", "examples/hello.star"}, exitUsage, "voidbox exec: --accel must be auto, kvm or tcg, got \"fast\"\n"},
		{[]string{"repl", "--accel", "fast"}, exitUsage, "voidbox repl: --accel must be auto, kvm or tcg, got \"fast\"\n"},
		{[]string{"doctor", "--vmm", "firecracker"}, exitUsage, "voidbox doctor: --vmm must be auto, cloud-hypervisor or qemu, got \"firecracker\"\n"},
		{[]string{"exec", "--sandbox", "local", "--vmm", "firecracker", "examples/hello.star"}, exitUsage, "voidbox exec: --vmm must be auto, cloud-hypervisor or qemu, got \"firecracker\"\n"},
	}
	for _, c := range cases {
		r := voidbox(t, c.args...)
		if r.code != c.code || !strings.HasPrefix(r.stderr, c.want) || strings.Contains(r.stderr, "usage:") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and stderr starting %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	t.Setenv("VOIDBOX_ACCEL", "fast")
	if r := voidbox(t, "exec", "examples/hello.star"); r.code != exitUsage || r.stderr != "voidbox exec: $VOIDBOX_ACCEL must be auto, kvm or tcg, got \"fast\"\n" {
		t.Errorf("bad $VOIDBOX_ACCEL: exit %d, stderr %q", r.code, r.stderr)
	}
}

// doctor on a machine without QEMU names the fix once, and does not blame the guest image
// (which is there) for the KVM probe that could not run.
func TestDoctorWithoutQEMU(t *testing.T) {
	dir := t.TempDir()
	kernel, initramfs := writeFile(t, dir, "vmlinuz", "kernel"), writeFile(t, dir, "initramfs", "initramfs")
	t.Setenv("PATH", t.TempDir()) // no qemu-system-x86_64, no cloud-hypervisor
	r := voidbox(t, "doctor", "--kernel", kernel, "--initramfs", initramfs)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, exitFailed, r.stdout, r.stderr)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if name, _, ok := strings.Cut(line, " "); ok {
			rows[name] = line
		}
	}
	if q := rows["qemu"]; !strings.Contains(q, "MISSING") || strings.Count(q, "apt-get install qemu-system-x86") != 1 {
		t.Errorf("qemu row %q: want MISSING and the fix once", q)
	}
	if k := rows["kvm"]; strings.Contains(k, "guest image") {
		t.Errorf("kvm row %q blames the guest image, which is there", k)
	}
}

func TestDescribeToolEvent(t *testing.T) {
	e := runtime.Event{Kind: runtime.EventTool, Tool: &runtime.ToolCall{Name: "Bash\x1b[2J", Input: "{\"command\":\n\"" + strings.Repeat("x", 100) + "\"}"}}
	got := describeEvent(e)
	if strings.Contains(got, "\x1b") || strings.Contains(got, "\n") || !strings.HasPrefix(got, "tool Bash") || !strings.HasSuffix(got, "...") {
		t.Errorf("describeEvent = %q: want one clean line, cut", got)
	}
}
