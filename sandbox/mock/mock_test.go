package mock

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

func execOnce(t *testing.T, p *Provider, name, input string, timeout time.Duration) (runtime.ExecResult, string, error) {
	t.Helper()
	sb, err := p.Open(context.Background(), runtime.SandboxSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	var out bytes.Buffer
	res, err := sb.Exec(context.Background(), runtime.ExecRequest{Args: []string{"x"}, Stdin: strings.NewReader(input), Stdout: &out, Timeout: timeout})
	return res, out.String(), err
}

func TestRepliesPerAttempt(t *testing.T) {
	p := New(Script{"s": {{Stdout: "one", ExitCode: 1}, {Stdout: "two"}}})
	for i, want := range []string{"one", "two", "two"} {
		res, out, err := execOnce(t, p, "s", "", 0)
		if err != nil || out != want {
			t.Errorf("attempt %d: %q, %v; want %q", i+1, out, err, want)
		}
		if wantCode := map[bool]int{true: 1, false: 0}[i == 0]; res.ExitCode != wantCode {
			t.Errorf("attempt %d exit %d", i+1, res.ExitCode)
		}
	}
	if _, out, _ := execOnce(t, p, "other", "in\n", 0); out != "in\nother\n" {
		t.Errorf("unscripted stage echoed %q", out)
	}
	if p.OpenNow() != 0 || p.MaxConcurrent() != 1 || len(p.Opened()) != 4 {
		t.Errorf("open now %d, max %d, opened %v", p.OpenNow(), p.MaxConcurrent(), p.Opened())
	}
}

// A scripted signal is reported as the real sandboxes report a killed process, in Exec
// and in RunAgent alike.
func TestSignalReply(t *testing.T) {
	p := New(Script{"k": {{Stderr: "dying\n", ExitCode: 7, Signal: "SIGKILL"}}})
	res, _, err := execOnce(t, p, "k", "", 0)
	if err != nil || res.ExitCode != -1 || res.Signal != "SIGKILL" || res.TimedOut {
		t.Errorf("Exec = %+v, %v; want exit -1, SIGKILL, not timed out", res, err)
	}
	sb, err := p.Open(context.Background(), runtime.SandboxSpec{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ar, err := p.RunAgent(context.Background(), sb, &runtime.Stage{Name: "k", Prompt: "p"}, "")
	if err != nil || ar.ExitCode != -1 || ar.Signal != "SIGKILL" || ar.Stderr != "dying\n" {
		t.Errorf("RunAgent = %+v, %v; want exit -1, SIGKILL", ar, err)
	}
}

func TestDelayTimeoutAndCancel(t *testing.T) {
	p := New(Script{"slow": {{Delay: time.Minute}}})
	res, _, err := execOnce(t, p, "slow", "", 50*time.Millisecond)
	if err != nil || !res.TimedOut {
		t.Errorf("timeout: %+v, %v", res, err)
	}
	sb, _ := p.Open(context.Background(), runtime.SandboxSpec{Name: "slow"})
	defer sb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := sb.Exec(ctx, runtime.ExecRequest{Args: []string{"x"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
	if got := p.Canceled(); len(got) != 2 {
		t.Errorf("Canceled = %v, want both calls", got)
	}
}

func TestFilesConfined(t *testing.T) {
	sb, _ := New(nil).Open(context.Background(), runtime.SandboxSpec{Name: "f"})
	ctx := context.Background()
	if err := sb.WriteFile(ctx, "/workspace/input", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := sb.ReadFile(ctx, "/workspace/input"); err != nil || string(b) != "x" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	for _, p := range []string{"/etc/passwd", "/workspace/../x", "workspace/x"} {
		if err := sb.WriteFile(ctx, p, nil, 0o644); err == nil {
			t.Errorf("WriteFile(%q) succeeded", p)
		}
	}
	if _, err := sb.ReadFile(ctx, "/workspace/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadScript(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "script.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s, err := LoadScript(write(`{"a": [{"stdout": "x", "exit_code": 1, "delay": "2s"}, {"err": "boom", "stderr": "e"}, {"signal": "SIGKILL"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Reply{{Stdout: "x", ExitCode: 1, Delay: 2 * time.Second}, {Err: "boom", Stderr: "e"}, {Signal: "SIGKILL"}}
	if len(s["a"]) != 3 || s["a"][0] != want[0] || s["a"][1] != want[1] || s["a"][2] != want[2] {
		t.Errorf("script %+v, want %+v", s, want)
	}
	for body, wantErr := range map[string]string{
		`{"a": [{"stdot": "x"}]}`:                        `stage "a" reply 1: json: unknown field "stdot"`,
		`{"a": [{}, {"delay": "soon"}]}`:                 `stage "a" reply 2: field "delay": "soon" is not a duration`,
		`{"a": [{"delay": "-1s"}]}`:                      `field "delay": "-1s" is negative`,
		`{"a": [{"exit_code": "1"}]}`:                    `stage "a" reply 1: field "exit_code": want int, got JSON string`,
		`{"a": [{"signal": "KILL"}]}`:                    `stage "a" reply 1: field "signal": "KILL" is not a signal name; want one like "SIGKILL"`,
		`{"a": [{"exit_code": 0, "signal": "SIGKILL"}]}`: `fields "exit_code" and "signal": give at most one`,
		`{"a": [{"signal": "SIGTERM", "err": "x"}]}`:     `fields "signal" and "err": give at most one`,
		`{"a": [{"exit_code": 1, "err": "x"}]}`:          `fields "exit_code" and "err": give at most one`,
		`{"a": []}`:                                      `stage "a": empty reply list`,
		`{"a": [null]}`:                                  `reply 1: want an object, got null`,
		`{"a": [{}]} {}`:                                 `unexpected data after the JSON value`,
		`["a"]`:                                          `want an object {"stage name": [reply, ...]}`,
		`null`:                                           `got null`,
		`{"": [{}]}`:                                     `empty stage name`,
	} {
		_, err := LoadScript(write(body))
		if err == nil {
			t.Errorf("%s: no error", body)
			continue
		}
		if !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "script.json") {
			t.Errorf("%s: error %q, want it to name the file and say %q", body, err, wantErr)
		}
	}
	if _, err := LoadScript(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file error %v", err)
	}
}

func FuzzParseScript(f *testing.F) {
	for _, s := range []string{`{"a": [{"stdout": "x", "exit_code": 1, "delay": "2s"}]}`, `{"a": []}`, `null`, `{"a": [{"delay": "1h"}, {"err": "x"}]}`, `{"a": [{"signal": "SIGKILL"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScript(data)
		if err != nil {
			return
		}
		for name, rs := range s {
			if name == "" || len(rs) == 0 {
				t.Errorf("accepted stage %q with %d replies", name, len(rs))
			}
			for _, r := range rs {
				if r.Delay < 0 {
					t.Errorf("accepted negative delay %v", r.Delay)
				}
				if r.Signal != "" && r.Err != "" {
					t.Errorf("accepted a reply both killed and failed: %+v", r)
				}
			}
		}
	})
}
