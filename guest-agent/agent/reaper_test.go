package agent

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// startAsSubreaper makes this test process a child subreaper, standing in for PID 1,
// and starts a server whose children a Reaper collects.
func startAsSubreaper(t *testing.T) (*env, *Reaper) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	r := NewReaper()
	t.Cleanup(r.Close)
	return start(t, Options{Unconfined: true, Reaper: r}), r
}

// TestReaperCollectsOrphans runs execs with a Reaper while this test process is a
// child subreaper, standing in for PID 1: exit statuses must still reach the execs,
// and orphaned grandchildren must be reaped, not left as zombies.
func TestReaperCollectsOrphans(t *testing.T) {
	e, r := startAsSubreaper(t)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "exit " + strconv.Itoa(i)}})
			if err != nil || res.ExitCode != i {
				t.Errorf("exec %d through the reaper: %+v %v", i, res, err)
			}
		}()
	}
	wg.Wait()

	var out bytes.Buffer
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "sleep 0.2 >/dev/null 2>&1 & echo $!"}, Stdout: &out})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := unix.Getpgid(pid); err == unix.ESRCH {
			break // fully reaped: a zombie would still have a process group
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d was not reaped", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Strays() == 0 {
		t.Error("reaper reports no orphans reaped")
	}
}

// TestReaperExecTimeoutKillsGroup is the PID 1 path of a timeout: with a Reaper the
// agent releases its os.Process, and must still know the group to kill.
func TestReaperExecTimeoutKillsGroup(t *testing.T) {
	e, _ := startAsSubreaper(t)
	var out timedWriter
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args:   []string{"sh", "-c", "sleep 100 & echo $!; wait"},
		Stdout: &out, Timeout: 400 * time.Millisecond,
	})
	if err != nil || !res.TimedOut || res.Signal != "SIGKILL" {
		t.Fatalf("result %+v err %v, want timed out by SIGKILL", res, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("grandchild pid from %q: %v", out.String(), err)
	}
	if !grandchildGone(pid, 3*time.Second) {
		t.Errorf("grandchild %d still running after the timeout", pid)
	}
}
