package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// timedWriter records when each chunk arrived.
type timedWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	chunks []time.Time
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = append(w.chunks, time.Now())
	return w.buf.Write(p)
}

func (w *timedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestExecStreamsBeforeExit(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var out, errw timedWriter
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args:   []string{"sh", "-c", "echo first; echo oops >&2; sleep 0.5; echo second; exit 3"},
		Stdout: &out, Stderr: &errw,
	})
	done := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Signal != "" || res.TimedOut {
		t.Errorf("result = %+v, want exit 3", res)
	}
	if out.String() != "first\nsecond\n" || errw.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errw.String())
	}
	if len(out.chunks) < 2 {
		t.Fatalf("stdout arrived in %d chunk(s), want at least 2 (streamed)", len(out.chunks))
	}
	if lead := done.Sub(out.chunks[0]); lead < 300*time.Millisecond {
		t.Errorf("first stdout chunk arrived only %v before exit: output is not streamed", lead)
	}
}

func TestExecStdinEnvDir(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var out bytes.Buffer
	stdin := strings.NewReader(strings.Repeat("x", 300000) + "\nend")
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args:  []string{"sh", "-c", `wc -c; echo "$GREETING $HOME"; pwd`},
		Env:   map[string]string{"GREETING": "hi"},
		Dir:   e.tmp,
		Stdin: stdin, Stdout: &out,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	want := fmt.Sprintf("300004\nhi %s\n%s\n", e.ws, e.tmp)
	if got := strings.Join(strings.Fields(out.String()), "\n") + "\n"; got != strings.Join(strings.Fields(want), "\n")+"\n" {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestExecConcurrent(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "sleep 0.2; echo $N; exit $N"},
				Env: map[string]string{"N": strconv.Itoa(i)}, Stdout: &out})
			if err != nil {
				errs <- err
				return
			}
			if res.ExitCode != i || out.String() != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("exec %d: result %+v output %q", i, res, out.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestExecSignalAndNotFound(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "kill -TERM $$"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != -1 || res.Signal != "SIGTERM" {
		t.Errorf("result %+v, want signal SIGTERM", res)
	}
	_, err = e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"no-such-program-xyz"}})
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != proto.CodeNotFound {
		t.Errorf("err = %v, want not_found", err)
	}
}

// grandchildGone waits until pid no longer runs (gone or a zombie awaiting its reaper).
func grandchildGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var out timedWriter
	begin := time.Now()
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args:   []string{"sh", "-c", "sleep 100 & echo $!; wait"},
		Stdout: &out, Timeout: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Signal != "SIGKILL" || res.ExitCode != -1 {
		t.Errorf("result %+v, want timed out by SIGKILL", res)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("timed-out exec took %v", d)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("grandchild pid from %q: %v", out.String(), err)
	}
	if !grandchildGone(pid, 3*time.Second) {
		t.Errorf("grandchild %d still running after the timeout", pid)
	}
}

func TestExecCancelKillsGroup(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	ctx, cancel := context.WithCancel(ctxT(t))
	pr := &pidReader{ready: make(chan int, 1), cancel: cancel}
	begin := time.Now()
	_, err := e.client.Exec(ctx, proto.ExecRequest{Args: []string{"sh", "-c", "sleep 100 & echo $!; wait"}, Stdout: pr})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("cancelled exec took %v", d)
	}
	if pid := <-pr.ready; !grandchildGone(pid, 3*time.Second) {
		t.Errorf("grandchild %d still running after cancel", pid)
	}
	if err := e.client.Ping(ctxT(t)); err != nil {
		t.Errorf("session unusable after a cancelled exec: %v", err)
	}
}

// pidReader cancels the exec once the grandchild's pid was printed.
type pidReader struct {
	ready  chan int
	cancel func()
}

func (p *pidReader) Write(b []byte) (int, error) {
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		p.ready <- pid
		p.cancel()
	}
	return len(b), nil
}

func TestExecAllowList(t *testing.T) {
	e := start(t, Options{Unconfined: true, Allow: []string{"sh", "cat"}})
	_, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"curl", "http://x"}})
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != proto.CodeNotAllowed {
		t.Fatalf("err = %v, want not_allowed", err)
	}
	if want := `command "curl" is not allowed by this box's allow list [sh cat]`; re.Message != want {
		t.Errorf("message %q, want %q", re.Message, want)
	}
	// A copy of an allowed program outside the system directories does not pass by name.
	if err := os.WriteFile(filepath.Join(e.ws, "sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"./sh"}}); !errors.As(err, &re) || re.Code != proto.CodeNotAllowed {
		t.Errorf("./sh: err = %v, want not_allowed", err)
	}
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"/bin/sh", "-c", "exit 0"}})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("/bin/sh allowed by base name: %+v %v", res, err)
	}
}

func TestExecLargeStdoutIntact(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	if err := os.WriteFile(filepath.Join(e.ws, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	begin := time.Now()
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"cat", "big"}, Stdout: h})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Error("64 MiB stdout arrived corrupted")
	}
	t.Logf("64 MiB stdout in %v", time.Since(begin))
}

func BenchmarkExecStdout64MiB(b *testing.B) {
	e := start(b, Options{Unconfined: true})
	if err := os.WriteFile(filepath.Join(e.ws, "big"), make([]byte, 64<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 20)
	for b.Loop() {
		var n countWriter
		if _, err := e.client.Exec(context.Background(), proto.ExecRequest{Args: []string{"cat", "big"}, Stdout: &n}); err != nil || n != 64<<20 {
			b.Fatalf("exec: %v, %d bytes", err, n)
		}
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestExecStdoutWriterFailureKillsProcess(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	begin := time.Now()
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "while true; do echo x; done"}, Stdout: failWriter{}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the writer's error", err)
	}
	if res.Signal != "SIGKILL" {
		t.Errorf("result %+v, want the process killed", res)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestExecBadRequests(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	_, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"true"}, Dir: "relative"})
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != proto.CodeBadPath {
		t.Errorf("relative dir: %v", err)
	}
	if _, err := e.client.Exec(ctxT(t), proto.ExecRequest{}); err == nil {
		t.Error("empty Args accepted")
	}
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"pwd"}, Dir: filepath.Join(e.ws, "missing")})
	if err == nil {
		t.Errorf("missing workdir: %+v, want an exec_failed error", res)
	}
}

func TestExecBackgroundChildDoesNotHoldExec(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var out bytes.Buffer
	begin := time.Now()
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sh", "-c", "sleep 30 & echo started"}, Stdout: &out,
		Stdin: strings.NewReader(strings.Repeat("unread stdin ", 100000))})
	if err != nil || res.ExitCode != 0 || out.String() != "started\n" {
		t.Fatalf("exec: %+v %v %q", res, err, out.String())
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("exec waited %v for a background child holding its stdout", d)
	}
}

func TestExecOversizedRequest(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	_, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"true"}, Env: map[string]string{"BIG": strings.Repeat("x", proto.MaxHeader)}})
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != proto.CodeTooLarge || !strings.Contains(re.Message, "at most 65536") {
		t.Errorf("oversized exec request: %v", err)
	}
	if err := e.client.Ping(ctxT(t)); err != nil {
		t.Errorf("session broken by an oversized request: %v", err)
	}
}
