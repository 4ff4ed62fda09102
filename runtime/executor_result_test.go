package runtime_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// exitOf renders a stage's exit_code/signal pair for comparison: "3", "nil" or
// "nil SIGKILL".
func exitOf(sr *runtime.StageResult) string {
	s := "nil"
	if sr.ExitCode != nil {
		s = strconv.Itoa(*sr.ExitCode)
	}
	if sr.Signal != "" {
		s += " " + sr.Signal
	}
	return s
}

// A stage's exit code is reported only when its process exited: a process that never
// ran (the sandbox failed, the stage was skipped) or that a signal killed has none,
// and a killed one names its signal. Under the old int field every one of these read
// as exit code 0 or -1.
func TestExitCodeOnlyWhenExited(t *testing.T) {
	p := mock.New(mock.Script{
		"zero":   {{Stdout: "fine"}},
		"three":  {{ExitCode: 3}},
		"killed": {{Stderr: "Killed\n", Signal: "SIGKILL"}},
		"broken": {{Err: "the guest agent went away"}},
		"slow":   {{Delay: time.Minute}},
		"agent":  {{Signal: "SIGTERM"}},
	})
	var branches []runtime.Node
	for _, n := range []string{"zero", "three", "killed", "broken", "slow"} {
		s := cmd(n)
		s.OnFailure = runtime.FailContinue
		if n == "slow" {
			s.Timeout = 50 * time.Millisecond
		}
		branches = append(branches, s)
	}
	agent := &runtime.Stage{Name: "agent", Prompt: "p", OnFailure: runtime.FailStop}
	res := run(t, &runtime.Executor{Provider: p, MaxParallel: 8}, pipe(fanOut(branches...), agent, cmd("never")))
	want := map[string]string{
		"zero":   "0",
		"three":  "3",
		"killed": "nil SIGKILL",
		"broken": "nil",
		"slow":   "nil SIGKILL", // the timeout kills it
		"agent":  "nil SIGTERM",
		"never":  "nil", // skipped
	}
	for name, w := range want {
		sr := res.Stages[name]
		if sr == nil {
			t.Errorf("%s: no result", name)
			continue
		}
		if got := exitOf(sr); got != w {
			t.Errorf("%s: exit_code/signal %s, want %s (status %s, error %q)", name, got, w, sr.Status, sr.Error)
		}
	}
	if got, w := res.Stages["killed"].Error, "killed by SIGKILL: Killed"; got != w {
		t.Errorf("killed: error %q, want %q", got, w)
	}
	if got, w := res.Error, "stage agent: killed by SIGTERM"; got != w {
		t.Errorf("run error %q, want %q", got, w)
	}
}
