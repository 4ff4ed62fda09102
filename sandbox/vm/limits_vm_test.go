package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// memoryHog allocates anonymous memory without end: busybox awk doubles a string.
var memoryHog = []string{"awk", `BEGIN { s = "x"; while (1) s = s s }`}

// A hostile stage meets the limits derived from its box, fails with a clear error
// within its timeout, and leaves an agent that still runs the next command. One VM
// serves every check: each boot costs seconds under TCG.
func TestStageLimits(t *testing.T) {
	const boxMB = 256
	s := open(t, runtime.SandboxSpec{Name: "limits", MemoryMB: boxMB})
	lim, rl := proto.LimitsForBox(boxMB)

	t.Run("rlimits, tmpfs sizes and cgroup", func(t *testing.T) {
		out, errOut, res := run(t, s, "", "sh", "-c", `ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu; ulimit -Sc; ulimit -Hc; ulimit -f
df -m /workspace /tmp | awk 'NR > 1 { print $6, $2 }'
cat /proc/self/cgroup
cat /sys/fs/cgroup/cgroup.subtree_control
cd /sys/fs/cgroup/voidbox-stage && cat memory.max pids.max
touch /rootfs-write 2>&1 || true`)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d: %s", res.ExitCode, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			fmt.Sprint(rl.NOFILE), fmt.Sprint(rl.NOFILE), fmt.Sprint(rl.NPROC), fmt.Sprint(rl.NPROC), "0", "0",
			fmt.Sprint(rl.FSIZE / 512), // busybox counts 512-byte blocks
			fmt.Sprintf("/workspace %d", lim.WorkspaceMB), fmt.Sprintf("/tmp %d", lim.TmpMB),
			"0::/voidbox-stage/exec-", // the exec's own cgroup; its number varies
			"cpu memory pids",         // cpu: the stage weighs as one agent thread
			fmt.Sprint(lim.MemoryMB << 20), fmt.Sprint(lim.Pids),
			"touch: /rootfs-write: Permission denied",
		}
		if len(lines) != len(want) {
			t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) || (i != 9 && lines[i] != w) {
				t.Errorf("line %d: got %q, want %q", i+1, lines[i], w)
			}
		}
	})

	t.Run("processes that left the process group end with the exec", func(t *testing.T) {
		for _, c := range []struct {
			cmd     string
			timeout time.Duration
		}{
			{"setsid sleep 301 & echo started", time.Minute},            // the command exits
			{"setsid sleep 302 & echo started; sleep 600", time.Second}, // the command times out
		} {
			res, _, err := execTimed(t, s, c.timeout, "sh", "-c", c.cmd)
			if err != nil || res.stdout != "started\n" {
				t.Fatalf("%s: %+v %v", c.cmd, res, err)
			}
		}
		out, _, _ := run(t, s, "", "sh", "-c", "ps -o args | grep -c '^sleep 30[12]' || true")
		if strings.TrimSpace(out) != "0" {
			t.Errorf("%s sleep processes outlived their exec", strings.TrimSpace(out))
		}
	})

	t.Run("memory hog fails out of memory", func(t *testing.T) {
		res, took, err := execTimed(t, s, 2*time.Minute, memoryHog...)
		want := fmt.Sprintf("out of memory: the stage used its %d MiB limit", lim.MemoryMB)
		if !errors.Is(err, ErrOutOfMemory) || err.Error() != want {
			t.Fatalf("memory hog: result %+v, error %v after %v; want %q", res, err, took, want)
		}
		alive(t, s)
	})

	t.Run("fork bomb stops at the process limit", func(t *testing.T) {
		const timeout = 10 * time.Second
		res, took, err := execTimed(t, s, timeout, "sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 600")
		if err != nil || !(res.TimedOut || res.ExitCode != 0) {
			t.Fatalf("fork bomb: result %+v, error %v; want a timeout or a failed exit", res, err)
		}
		if took > timeout+15*time.Second {
			t.Errorf("fork bomb took %v to end, timeout %v", took, timeout)
		}
		// It met the process limit (RLIMIT_NPROC, checked before pids.max: both are
		// the box's process limit) and kept failing to fork until the timeout.
		if !strings.Contains(res.stderr, "can't fork: Resource temporarily unavailable") {
			t.Errorf("the bomb never met the process limit; its stderr ends %q", lastBytes(res.stderr, 200))
		}
		// The bomb is gone (its killed processes are reaped within a few seconds):
		// left is the checking command itself.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			out, _, _ := run(t, s, "", "cat", "/sys/fs/cgroup/voidbox-stage/pids.current")
			if n, err := strconv.Atoi(strings.TrimSpace(out)); err == nil && n <= 1 {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("pids.current %q 15s after the bomb ended, want the checking command alone", out)
			}
		}
		alive(t, s)
	})

	t.Run("tmpfs fill gets ENOSPC", func(t *testing.T) {
		for dir, mb := range map[string]int{"/workspace": lim.WorkspaceMB, "/tmp": lim.TmpMB} {
			res, _, err := execTimed(t, s, 2*time.Minute, "sh", "-c", "dd if=/dev/zero of="+dir+"/fill bs=1M 2>&1; stat -c %s "+dir+"/fill")
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			out := res.stdout
			if res.ExitCode != 0 || !strings.Contains(out, "No space left on device") {
				t.Errorf("%s: exit %d, output %q; want dd to fail with ENOSPC", dir, res.ExitCode, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			size, _ := strconv.Atoi(lines[len(lines)-1])
			if size > mb<<20 || size < (mb-1)<<20 {
				t.Errorf("%s: the fill reached %d bytes; the tmpfs holds %d MiB", dir, size, mb)
			}
			run(t, s, "", "rm", dir+"/fill")
		}
		if err := s.WriteFile(context.Background(), "/workspace/after", []byte("ok"), 0o644); err != nil {
			t.Errorf("write after the fill: %v", err)
		}
		alive(t, s)
	})
}

// The smallest box keeps room for its agent: a memory hog fails its stage with the
// clear error, through the executor as a user sees it.
func TestSmallestBoxOutOfMemory(t *testing.T) {
	img := vmtest.Image(t)
	boxMB := runtime.MinMemoryMB
	if img.KernelKind == guestimage.KernelDebian {
		boxMB = runtime.MinMemoryMBDebianKernel
	}
	p, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		t.Fatal(err)
	}
	const timeout = time.Minute
	hog := &runtime.Stage{Name: "hog", Cmd: memoryHog, MemoryMB: boxMB, VCPUs: 1, Timeout: timeout, OnFailure: runtime.FailContinue}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := (&runtime.Executor{Provider: p, MaxParallel: 1}).Run(ctx, hog)
	if err != nil {
		t.Fatal(err)
	}
	lim, _ := proto.LimitsForBox(boxMB)
	got := res.Stages["hog"]
	want := fmt.Sprintf("exec awk: out of memory: the stage used its %d MiB limit", lim.MemoryMB)
	if got.Status != runtime.StatusFailed || got.Error != want {
		t.Fatalf("hog: status %s, error %q; want %q", got.Status, got.Error, want)
	}
	if time.Duration(got.DurationMS)*time.Millisecond > runtime.BootTimeout+timeout {
		t.Errorf("hog took %dms", got.DurationMS)
	}
}

type timedResult struct {
	runtime.ExecResult
	stdout, stderr string
}

// execTimed runs args with a timeout and reports how long the exec took.
func execTimed(t *testing.T, s *Sandbox, timeout time.Duration, args ...string) (timedResult, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	start := time.Now()
	res, err := s.Exec(ctx, runtime.ExecRequest{Args: args, Stdout: &out, Stderr: &errOut, Timeout: timeout})
	return timedResult{res, out.String(), errOut.String()}, time.Since(start), err
}

func lastBytes(s string, n int) string { return s[max(0, len(s)-n):] }

// alive fails the test unless the agent still runs a command.
func alive(t *testing.T, s *Sandbox) {
	t.Helper()
	if out, _, res := run(t, s, "", "echo", "alive"); out != "alive\n" || res.ExitCode != 0 {
		t.Fatalf("the agent no longer runs commands: %q %+v", out, res)
	}
}
