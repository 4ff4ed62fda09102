package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// voidboxBin is the binary built once for the tests that run voidbox as a process.
var voidboxBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "voidbox-cli-test-")
	if err != nil {
		panic(err)
	}
	voidboxBin = filepath.Join(dir, "voidbox")
	if out, err := exec.Command("go", "build", "-o", voidboxBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic("build voidbox: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// voidbox runs the CLI in-process with the given args.
func voidbox(t *testing.T, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(args, &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return cliResult{code, out.String(), errb.String()}
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	ok := writeFile(t, dir, "ok.star", `pipeline = box(name = "a", cmd = ["echo", "hi"])`+"\n")
	fail := writeFile(t, dir, "fail.star", `pipeline = box(name = "a", cmd = ["sh", "-c", "exit 4"])`+"\n")
	bad := writeFile(t, dir, "bad.star", "x = 1\npipeline = box(name = \"a\", cmd = [\"true\"], memory_mb = \"big\")\n")
	syntax := writeFile(t, dir, "syntax.star", "def (:\n")
	empty := writeFile(t, dir, "empty.star", "x = 1\n")
	cases := []struct {
		name string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"no args", nil, exitUsage, "Usage: voidbox COMMAND"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"help", []string{"--help"}, exitOK, "Commands:"},
		{"exec help", []string{"exec", "--help"}, exitOK, "--max-parallel"},
		{"bad flag", []string{"exec", "--nope", ok}, exitUsage, "unknown flag: --nope"},
		{"missing file arg", []string{"exec"}, exitUsage, "want exactly one FILE.star"},
		{"bad sandbox", []string{"exec", "--sandbox", "docker", ok}, exitUsage, `--sandbox must be auto, vm, local or mock, got "docker"`},
		{"bad set", []string{"exec", "--sandbox", "mock", "--set", "novalue", ok}, exitUsage, `--set "novalue": want key=value`},
		{"ok", []string{"exec", "--sandbox", "local", ok}, exitOK, "hi"},
		{"stage fails", []string{"exec", "--sandbox", "local", fail}, exitFailed, "failed"},
		{"bad program", []string{"exec", "--sandbox", "mock", bad}, exitUsage, "bad.star:2:15: box: memory_mb must be an int, got string"},
		{"syntax error", []string{"exec", "--sandbox", "mock", syntax}, exitUsage, "syntax.star:1:6: syntax error"},
		{"no pipeline", []string{"exec", "--sandbox", "mock", empty}, exitUsage, "calls no run() and defines no global `pipeline`"},
		{"missing file", []string{"exec", "--sandbox", "mock", filepath.Join(dir, "nope.star")}, exitUsage, "nope.star"},
		{"version", []string{"version"}, exitOK, "voidbox " + versionText},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := voidbox(t, c.args...)
			if r.code != c.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, c.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, c.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", c.want, r.stdout, r.stderr)
			}
		})
	}
}

func TestExecJSONShape(t *testing.T) {
	dir := t.TempDir()
	prog := writeFile(t, dir, "p.star", `
a = box(name = "a", cmd = ["echo", "x"])
b = box(name = "b", cmd = ["cat"])
c = box(name = "c", cmd = ["cat"])
print("printed goes to stderr with --json")
pipeline = pipe(a, fan_out(b, c))
`)
	script := writeFile(t, dir, "script.json", `{"a": [{"stdout": "from-a\n"}], "c": [{"stdout": "", "exit_code": 0}]}`)
	t.Setenv(envMockScript, script)
	r := voidbox(t, "exec", "--sandbox", "mock", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var res struct {
		OK     bool     `json:"ok"`
		Output string   `json:"output"`
		Order  []string `json:"order"`
		Stages map[string]struct {
			Status     string `json:"status"`
			ExitCode   *int   `json:"exit_code"`
			Stdout     string `json:"stdout"`
			Output     string `json:"output"`
			Attempts   int    `json:"attempts"`
			DurationMS *int64 `json:"duration_ms"`
		} `json:"stages"`
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r.stdout)
	}
	if !res.OK || strings.Join(res.Order, ",") != "a,b,c" {
		t.Fatalf("ok=%v order=%v", res.OK, res.Order)
	}
	if a := res.Stages["a"]; a.Output != "from-a\n" || a.Attempts != 1 || a.DurationMS == nil || a.ExitCode == nil || *a.ExitCode != 0 {
		t.Fatalf("stage a = %+v", res.Stages["a"])
	}
	// The mock echoes its input then its name when unscripted: b got a's output.
	var out []string
	if err := json.Unmarshal([]byte(res.Output), &out); err != nil || len(out) != 2 || out[0] != "from-a\nb\n" || out[1] != "" {
		t.Fatalf("fan_out output = %q (%v)", res.Output, err)
	}
	if !strings.Contains(r.stderr, "printed goes to stderr") {
		t.Fatalf("print() output not on stderr: %q", r.stderr)
	}
}

func TestCheckPrintsGraphAndRunsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	prog := writeFile(t, dir, "p.star", `
a = box(name = "a", cmd = ["touch", "`+marker+`"], memory_mb = 256)
res = run(pipe(a, fan_out(box(name = "b", cmd = ["cat"]), box(name = "c", cmd = ["cat"]))))
print(res.stages["a"].status)
`)
	r := voidbox(t, "check", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"# run() call 1: 3 stages", "├─ a  cmd=[\"touch\"", "memory=256MiB", "a -> b", "a -> c", "p.star: ok"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, prog+":4:10: check stops here: this line uses the result of the run() at "+prog+":3:10,") {
		t.Errorf("check should stop where the result is used, stdout: %s", r.stdout)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("check ran a stage")
	}
	dup := writeFile(t, dir, "dup.star", "a = box(name = \"a\", cmd = [\"true\"])\npipeline = pipe(a, a)\n")
	if r := voidbox(t, "check", dup); r.code != exitUsage || !strings.Contains(r.stderr, `box "a" (declared at `) {
		t.Fatalf("duplicate box: exit %d, stderr %s", r.code, r.stderr)
	}
}

func TestFmtCheck(t *testing.T) {
	dir := t.TempDir()
	ugly := writeFile(t, dir, "ugly.star", "x=box(name='a',cmd=['true'])\n")
	if r := voidbox(t, "fmt", "--check", ugly); r.code != exitFailed || !strings.Contains(r.stdout, "ugly.star") {
		t.Fatalf("fmt --check on unformatted file: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := voidbox(t, "fmt", ugly); r.code != exitOK {
		t.Fatalf("fmt: exit %d: %s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(ugly)
	if string(got) != "x = box(name = \"a\", cmd = [\"true\"])\n" {
		t.Fatalf("formatted = %q", got)
	}
	if r := voidbox(t, "fmt", "--check", ugly); r.code != exitOK {
		t.Fatalf("fmt --check on formatted file: exit %d", r.code)
	}
	for _, f := range mustGlob(t, "examples/*.star") {
		if r := voidbox(t, "fmt", "--check", f); r.code != exitOK {
			t.Errorf("%s is not formatted: %s", f, r.stdout)
		}
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("glob %s: %v (%d files)", pattern, err, len(files))
	}
	return files
}

// Every example runs to success on the local sandbox (the VM suite runs them in microVMs).
func TestExamplesRunLocally(t *testing.T) {
	for _, f := range mustGlob(t, "examples/*.star") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := voidbox(t, "exec", "--sandbox", "local", f)
			// What the local sandbox refuses rather than ignores: image=, agent stages.
			if refusal, ok := map[string]string{
				"python.star": "the local sandbox runs host processes and has no root file system to replace",
				"agent.star":  "agent stages (prompt=) are not supported by the local sandbox",
			}[filepath.Base(f)]; ok {
				if r.code != exitFailed || !strings.Contains(r.stderr+r.stdout, refusal) {
					t.Fatalf("exit %d, want the refusal %q\nstdout: %s\nstderr: %s", r.code, refusal, r.stdout, r.stderr)
				}
				return
			}
			if r.code != exitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if strings.TrimSpace(r.stdout) == "" {
				t.Fatalf("no output on stdout; stderr: %s", r.stderr)
			}
		})
	}
}

func TestExamplesCheck(t *testing.T) {
	for _, f := range mustGlob(t, "examples/*.star") {
		if r := voidbox(t, "check", f); r.code != exitOK || !strings.Contains(r.stdout, f+": ok") {
			t.Errorf("check %s: exit %d\nstdout: %s\nstderr: %s", f, r.code, r.stdout, r.stderr)
		}
	}
}

func TestLocalSandboxWarnsOnceFirst(t *testing.T) {
	r := voidbox(t, "exec", "--sandbox", "local", "examples/fan_out.star")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "voidbox: warning: --sandbox local runs stages as host processes with no isolation\n") || strings.Count(r.stderr, "warning") != 1 {
		t.Fatalf("want exactly one warning, first; stderr:\n%s", r.stderr)
	}
	if r := voidbox(t, "exec", "--sandbox", "mock", "examples/hello.star"); strings.Contains(r.stderr, "warning") {
		t.Fatalf("mock sandbox warned: %s", r.stderr)
	}
}

func TestExecSetAndRunTimeout(t *testing.T) {
	dir := t.TempDir()
	prog := writeFile(t, dir, "args.star", `
print("who=%s n=%s" % (args["who"], args.get("n", "unset")))
pipeline = box(name = "a", cmd = ["echo", args["who"]])
`)
	r := voidbox(t, "exec", "--sandbox", "local", "--set", "who=world", "--set", "n=2", prog)
	if r.code != exitOK || r.stdout != "who=world n=2\nworld\n" {
		t.Fatalf("--set: exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	frozen := writeFile(t, dir, "frozen.star", "args[\"x\"] = \"y\"\n")
	if r := voidbox(t, "exec", "--sandbox", "mock", frozen); r.code != exitUsage || !strings.Contains(r.stderr, "frozen") {
		t.Fatalf("mutating args: exit %d stderr %s", r.code, r.stderr)
	}

	slow := writeFile(t, dir, "slow.star", `pipeline = box(name = "slow", cmd = ["sleep", "30"])`+"\n")
	start := time.Now()
	r = voidbox(t, "exec", "--sandbox", "local", "--timeout", "1s", slow)
	if r.code != exitFailed || !strings.Contains(r.stderr, "canceled") {
		t.Fatalf("--timeout: exit %d stderr %s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("--timeout 1s took %s", d)
	}
}
