package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/syncbuf"
)

// child is the built voidbox binary running as a separate process, so the tests can send
// it real signals and give it real file descriptors (a pipe, /dev/full) as stdout.
type child struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{}
	err    error
}

// startChild runs voidbox with args; tmp becomes its TMPDIR so the local sandbox's
// workspaces land where only this test looks. stdout may be nil (discarded).
func startChild(t *testing.T, tmp string, stdin io.Reader, stdout io.Writer, args ...string) *child {
	t.Helper()
	return startCommand(t, exec.Command(voidboxBin, args...), tmp, stdin, stdout)
}

func startCommand(t *testing.T, cmd *exec.Cmd, tmp string, stdin io.Reader, stdout io.Writer) *child {
	t.Helper()
	c := &child{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, c.stderr
	// A stage process voidbox failed to clean up holds stderr open; do not wait for it.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// waitStderr waits until the child's stderr contains want.
func (c *child) waitStderr(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(c.stderr.String(), want) {
		select {
		case <-c.done:
			t.Fatalf("voidbox exited (%v) before printing %q; stderr:\n%s", c.err, want, c.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stderr after %s; stderr:\n%s", want, d, c.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exitCode waits for the child to end and returns its exit code; it fails the test when
// the child was killed by a signal instead of exiting.
func (c *child) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		t.Fatalf("voidbox still running after %s; stderr:\n%s", d, c.stderr)
	}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("voidbox was killed by %v instead of exiting; stderr:\n%s", ws.Signal(), c.stderr)
	}
	return c.cmd.ProcessState.ExitCode()
}

var markerSeq atomic.Int64

// sleepMarker is a sleep duration, in seconds, no other process on the machine uses: its
// digits find the stage's processes in /proc. Whatever the test's outcome, no process
// with the marker outlives it.
func sleepMarker(t *testing.T) string {
	marker := strconv.FormatInt(7_000_000+int64(os.Getpid()%1000)*1000+markerSeq.Add(1), 10)
	t.Cleanup(func() { killProcesses(processesWith(marker)) })
	return marker
}

// killProcesses kills the processes processesWith listed.
func killProcesses(procs []string) {
	for _, p := range procs {
		if pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// processesWith lists live processes whose command line has arg as one of its arguments.
func processesWith(arg string) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 { // gone, or a zombie
			continue
		}
		for _, a := range bytes.Split(cmdline, []byte{0}) {
			if bytes.Contains(a, []byte(arg)) {
				found = append(found, e.Name()+": "+strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
				break
			}
		}
	}
	return found
}

// waitProcesses waits until some process has arg on its command line.
func waitProcesses(t *testing.T, c *child, arg string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(processesWith(arg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no process with %q appeared; stderr:\n%s", arg, c.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertNoLeftovers fails unless every stage process is gone (within a short grace for
// the kernel to reap) and no local workspace is left in tmp.
func assertNoLeftovers(t *testing.T, marker, tmp string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		procs := processesWith(marker)
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage processes left running: %v", procs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dirs, _ := filepath.Glob(filepath.Join(tmp, "voidbox-local-*")); len(dirs) > 0 {
		t.Fatalf("local workspaces left: %v", dirs)
	}
}

// slowProgram writes a program whose one stage runs a shell that sleeps for marker
// seconds (the shell stays, so a grandchild process must be cleaned up too).
func slowProgram(t *testing.T, dir, marker string) string {
	t.Helper()
	return writeFile(t, dir, "slow.star", fmt.Sprintf("pipeline = box(name = \"slow\", cmd = [\"sh\", \"-c\", \"sleep %s; echo woke\"])\n", marker))
}

// interrupt sends sig once the stage "slow" runs its marker process, and checks that
// voidbox exits with code 1 and says msg, the one line it prints as "voidbox ...:".
func interrupt(t *testing.T, c *child, sig syscall.Signal, marker, msg string) {
	t.Helper()
	c.waitStderr(t, "slow", 10*time.Second)
	waitProcesses(t, c, marker, 10*time.Second)
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if code := c.exitCode(t, 15*time.Second); code != exitFailed {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, c.stderr)
	}
	prefix, _, _ := strings.Cut(msg, ":")
	if got := c.stderr.String(); strings.Count(got, msg) != 1 || strings.Count(got, prefix+":") != 1 {
		t.Errorf("want %q once and no other %q message; stderr:\n%s", msg, prefix, got)
	}
}

var signalNames = map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP"}

// Each of the three signals a closed terminal, a kill or Ctrl-C sends cancels the run and
// cleans up under the local sandbox: no stage process, no workspace, exit code 1, and one
// message naming the signal.
func TestExecSignalsCleanUpLocal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(signalNames[sig], func(t *testing.T) {
			tmp := t.TempDir()
			marker := sleepMarker(t)
			c := startChild(t, tmp, nil, nil, "exec", "--sandbox", "local", slowProgram(t, t.TempDir(), marker))
			interrupt(t, c, sig, marker, "voidbox exec: run cancelled: received "+signalNames[sig]+"\n")
			assertNoLeftovers(t, marker, tmp)
		})
	}
}

// Under nohup (SIGHUP ignored when voidbox starts) a hangup must not cancel the run.
func TestExecKeepsIgnoredSIGHUPIgnored(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("needs nohup (coreutils)")
	}
	tmp := t.TempDir()
	prog := writeFile(t, t.TempDir(), "p.star", "pipeline = box(name = \"nap\", cmd = [\"sh\", \"-c\", \"sleep 2; echo rested\"])\n")
	var out syncbuf.Buffer
	c := startCommand(t, exec.Command(nohup, voidboxBin, "exec", "--sandbox", "local", prog), tmp, nil, &out)
	c.waitStderr(t, "nap", 10*time.Second)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := c.exitCode(t, 20*time.Second); code != exitOK || out.String() != "rested\n" {
		t.Fatalf("exit %d, stdout %q; stderr:\n%s", code, out.String(), c.stderr)
	}
}

// The REPL also cleans up a running statement's sandboxes on SIGTERM and SIGHUP.
func TestREPLSignalsCleanUp(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(signalNames[sig], func(t *testing.T) {
			tmp := t.TempDir()
			marker := sleepMarker(t)
			// An *os.File, so that exec hands it over as is rather than copying from it in
			// a goroutine that Wait would wait for.
			stdin, feed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer feed.Close()
			c := startChild(t, tmp, stdin, nil, "repl", "--sandbox", "local")
			stdin.Close()
			fmt.Fprintf(feed, "run(box(name = \"slow\", cmd = [\"sh\", \"-c\", \"sleep %s; echo woke\"]))\n", marker)
			interrupt(t, c, sig, marker, "voidbox repl: cancelled: received "+signalNames[sig]+"\n")
			assertNoLeftovers(t, marker, tmp)
		})
	}
}

// A reader that went away (`voidbox exec ... | head -1`) is a write error like any other,
// not a SIGPIPE death that would leave the stages running; and since the output has nowhere
// to go, the run stops there (the slow stage would otherwise run for days).
func TestExecBrokenPipeCleansUp(t *testing.T) {
	tmp := t.TempDir()
	marker := sleepMarker(t)
	prog := writeFile(t, t.TempDir(), "p.star", fmt.Sprintf(`
r = run(box(name = "first", cmd = ["echo", "one"]))
print(r.output)
r = run(box(name = "slow", cmd = ["sh", "-c", "sleep %s; echo woke"]))
print(r.ok)
`, marker))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close() // nobody reads: the first print() gets EPIPE
	c := startChild(t, tmp, nil, pw, "exec", "--sandbox", "local", prog)
	pw.Close()
	if code := c.exitCode(t, 20*time.Second); code != exitFailed {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, c.stderr)
	}
	if want := "voidbox exec: write stdout: broken pipe\n"; strings.Count(c.stderr.String(), want) != 1 {
		t.Errorf("want %q once; stderr:\n%s", want, c.stderr)
	}
	assertNoLeftovers(t, marker, tmp)
}

// Whatever stdout carries (the pipeline's output, print() lines, the JSON document), a
// failed write is exit code 1 with one message, never a silent success.
func TestExecWriteErrorOnStdout(t *testing.T) {
	dir := t.TempDir()
	pipeline := writeFile(t, dir, "pipeline.star", "pipeline = box(name = \"a\", cmd = [\"echo\", \"hi\"])\n")
	printed := writeFile(t, dir, "printed.star", "r = run(box(name = \"a\", cmd = [\"echo\", \"hi\"]))\nprint(r.output)\n")
	cases := map[string][]string{
		"pipeline output": {"exec", "--sandbox", "mock", pipeline},
		"print":           {"exec", "--sandbox", "mock", printed},
		"json":            {"exec", "--sandbox", "mock", "--json", pipeline},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
			if err != nil {
				t.Skipf("needs /dev/full: %v", err)
			}
			defer full.Close()
			c := startChild(t, t.TempDir(), nil, full, args...)
			if code := c.exitCode(t, 20*time.Second); code != exitFailed {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, c.stderr)
			}
			if want := "voidbox exec: write stdout: no space left on device\n"; strings.Count(c.stderr.String(), want) != 1 {
				t.Errorf("want %q once; stderr:\n%s", want, c.stderr)
			}
		})
	}
}
