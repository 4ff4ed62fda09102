package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/local"
)

func sh(name, script string) *runtime.Stage {
	return &runtime.Stage{Name: name, Cmd: []string{"sh", "-c", script}, OnFailure: runtime.FailStop}
}

func provider(t *testing.T) *local.Provider {
	p := local.New(nil)
	p.BaseDir = t.TempDir()
	return p
}

// running lists live processes whose command line contains marker.
func running(t *testing.T, marker string) []string {
	t.Helper()
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		if stat, err := os.ReadFile(d + "/stat"); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue // dead, waiting for its reaper
			}
		}
		out = append(out, d+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(running(t, marker)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := running(t, marker); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}

func TestPipeThroughHostProcesses(t *testing.T) {
	var warn bytes.Buffer
	p := local.New(&warn)
	p.BaseDir = t.TempDir()
	e := &runtime.Executor{Provider: p}
	root := &runtime.Pipe{Nodes: []runtime.Node{
		sh("gen", "printf 'b\\na\\n'"),
		&runtime.FanOut{Nodes: []runtime.Node{
			sh("sort", "sort /workspace/input"),
			sh("upper", "tr a-z A-Z"),
		}},
	}}
	res, err := e.Run(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := `["a\nb\n","B\nA\n"]`; !res.OK || res.Output != want {
		t.Errorf("OK=%v Output=%q Error=%q, want %q", res.OK, res.Output, res.Error, want)
	}
	if strings.Count(warn.String(), "\n") != 1 {
		t.Errorf("warning printed %q, want exactly one line", warn.String())
	}
	if entries, _ := os.ReadDir(p.BaseDir); len(entries) != 0 {
		t.Errorf("workspaces left behind: %d", len(entries))
	}
}

func TestFanOutRunsConcurrently(t *testing.T) {
	var branches []runtime.Node
	for _, n := range []string{"a", "b", "c", "d"} {
		branches = append(branches, sh(n, "sleep 1"))
	}
	start := time.Now()
	res, err := (&runtime.Executor{Provider: provider(t), MaxParallel: 4}).Run(context.Background(), &runtime.FanOut{Nodes: branches})
	if err != nil || !res.OK {
		t.Fatalf("err=%v res=%+v", err, res)
	}
	// Sequential would take 4s; concurrent ~1s. 3s leaves room for a loaded machine.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("4 x sleep 1 took %v; branches are not running concurrently", d)
	}
}

func TestStageTimeoutKills(t *testing.T) {
	s := sh("slow", "sleep 30.101")
	s.Timeout = 200 * time.Millisecond
	start := time.Now()
	res, err := (&runtime.Executor{Provider: provider(t)}).Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %v with a 200ms timeout", d)
	}
	if want := "stage slow: timed out after 200ms"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	waitGone(t, "30.101")
}

func TestCtrlCCleansUp(t *testing.T) {
	p := provider(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	root := &runtime.Pipe{Nodes: []runtime.Node{
		&runtime.FanOut{Nodes: []runtime.Node{
			sh("x", "sleep 30.202 & wait"),
			sh("y", "sleep 30.202"),
		}},
		sh("after", "true"),
	}}
	start := time.Now()
	res, err := (&runtime.Executor{Provider: p, MaxParallel: 2}).Run(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
	if res.OK || res.Error != "cancelled" {
		t.Errorf("OK=%v Error=%q", res.OK, res.Error)
	}
	for name, want := range map[string]runtime.StageStatus{"x": runtime.StatusCanceled, "y": runtime.StatusCanceled, "after": runtime.StatusSkipped} {
		if got := res.Stages[name].Status; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	waitGone(t, "30.202")
	if entries, _ := os.ReadDir(p.BaseDir); len(entries) != 0 {
		t.Errorf("workspaces left behind: %d", len(entries))
	}
}

func TestRunawayOutputStopped(t *testing.T) {
	s := sh("chatty", "exec yes voidbox-runaway-303")
	start := time.Now()
	res, err := (&runtime.Executor{Provider: provider(t)}).Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Minute { // generous: -race on a busy 2-core machine is slow
		t.Errorf("run took %v", d)
	}
	if want := "stage chatty: output exceeds 64 MiB (stdout and stderr are each capped)"; res.Error != want {
		t.Errorf("Error = %q, want %q", res.Error, want)
	}
	if n := len(res.Stages["chatty"].Stdout); n != runtime.MaxOutputBytes {
		t.Errorf("kept %d bytes of stdout, want the first %d", n, runtime.MaxOutputBytes)
	}
	waitGone(t, "voidbox-runaway-303")
}

// A missing command is reported once, with the search path named, not dumped: the
// executor names the command, the sandbox says why.
func TestMissingCommandMessage(t *testing.T) {
	e := &runtime.Executor{Provider: provider(t)}
	for _, tc := range []struct{ cmd, want string }{
		{"no-such-binary-voidbox", "stage nocmd: exec no-such-binary-voidbox: executable file not found in the host's $PATH"},
		{"/workspace/missing.sh", "stage nocmd: exec /workspace/missing.sh: executable file not found: stat "},
	} {
		s := &runtime.Stage{Name: "nocmd", Cmd: []string{tc.cmd}, OnFailure: runtime.FailStop}
		res, err := e.Run(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(res.Error, tc.want) || strings.Count(res.Error, tc.cmd) != 1 || strings.Contains(res.Error, "local sandbox") {
			t.Errorf("Error = %q, want %q... naming the command once", res.Error, tc.want)
		}
	}
}
