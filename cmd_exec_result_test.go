package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// exitCases is one fan_out whose branches end every way a stage can: exited 0,
// exited 3, killed by a signal, refused by the allow list, not found. Every branch
// may fail without stopping the others.
const exitCases = `
def b(name, cmd, allow = []):
    return box(name = name, cmd = cmd, allow = allow, on_failure = "continue")

graph = fan_out(
    b("zero", ["true"]),
    b("three", ["sh", "-c", "exit 3"]),
    b("killed", ["sh", "-c", "kill -KILL $$"]),
    b("refused", ["sh", "-c", "exit 0"], allow = ["cat"]),
    b("missing", ["voidbox-no-such-command"]),
)
`

// wantExits is what exitCases reports per stage: exit_code (nil for null) and signal.
var wantExits = map[string]struct {
	code   any
	signal any
}{
	"zero":    {0.0, nil},
	"three":   {3.0, nil},
	"killed":  {nil, "SIGKILL"},
	"refused": {nil, nil},
	"missing": {nil, nil},
}

// checkExitFields checks each stage of a --json document against wantExits: exit_code
// and signal are both present, as a number, a string or null.
func checkExitFields(t *testing.T, stdout string) {
	t.Helper()
	var doc struct {
		Stages map[string]map[string]any `json:"stages"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("stdout is not a JSON document: %v\n%s", err, stdout)
	}
	for name, w := range wantExits {
		st, ok := doc.Stages[name]
		if !ok {
			t.Errorf("stage %s missing:\n%s", name, stdout)
			continue
		}
		code, hasCode := st["exit_code"]
		sig, hasSig := st["signal"]
		if !hasCode || !hasSig || code != w.code || sig != w.signal {
			t.Errorf("stage %s: exit_code %v (present %v), signal %v (present %v); want %v and %v\nerror: %v", name, code, hasCode, sig, hasSig, w.code, w.signal, st["error"])
		}
	}
}

// --json says exit_code only for a process that exited: null for one the allow list
// refused, one that does not exist and one a signal killed, which names its signal.
func TestExecJSONExitCodeAndSignalLocal(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "exits.star", exitCases+"pipeline = graph\n")
	r := voidbox(t, "exec", "--sandbox", "local", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d (the failures are on_failure = \"continue\")\nstderr: %s", r.code, r.stderr)
	}
	checkExitFields(t, r.stdout)
}

// run()'s stage structs carry the same: exit_code an int or None, signal a string or None.
func TestRunResultExitCodeAndSignalLocal(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "exits.star", exitCases+`
r = run(graph)
for name in ["zero", "three", "killed", "refused", "missing"]:
    s = r.stages[name]
    print("%s %r %r %s" % (name, s.exit_code, s.signal, s.status))
`)
	r := voidbox(t, "exec", "--sandbox", "local", prog)
	want := "zero 0 None ok\nthree 3 None failed\nkilled None \"SIGKILL\" failed\nrefused None None failed\nmissing None None failed\n"
	if r.code != exitOK || r.stdout != want {
		t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
}

// A mock script says a process was killed with "signal"; --json reports it as the real
// sandboxes' kills are reported.
func TestExecJSONMockSignal(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envMockScript, writeFile(t, dir, "script.json", `{"k": [{"stderr": "Killed\n", "signal": "SIGKILL"}], "e": [{"exit_code": 2}], "f": [{"err": "vm lost"}]}`))
	prog := writeFile(t, dir, "p.star", `pipeline = fan_out(
    box(name = "k", cmd = ["x"], on_failure = "continue"),
    box(name = "e", cmd = ["x"], on_failure = "continue"),
    box(name = "f", cmd = ["x"], on_failure = "continue"),
)
`)
	r := voidbox(t, "exec", "--sandbox", "mock", "--json", prog)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for name, want := range map[string]string{
		"k": `"exit_code": null, "signal": "SIGKILL", "error": "killed by SIGKILL: Killed"`,
		"e": `"exit_code": 2, "signal": null, "error": "exit code 2"`,
		"f": `"exit_code": null, "signal": null, "error": "exec x: mock sandbox f: vm lost"`,
	} {
		var doc struct {
			Stages map[string]struct {
				ExitCode json.RawMessage `json:"exit_code"`
				Signal   json.RawMessage `json:"signal"`
				Error    string          `json:"error"`
			} `json:"stages"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		s := doc.Stages[name]
		got := `"exit_code": ` + string(s.ExitCode) + `, "signal": ` + string(s.Signal) + `, "error": "` + s.Error + `"`
		if got != want {
			t.Errorf("stage %s: %s, want %s", name, got, want)
		}
	}
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("stderr: %s", r.stderr)
	}
}
