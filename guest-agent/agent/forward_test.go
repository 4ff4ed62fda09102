package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// logBuf collects a Server's console lines.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loopbackForward listens for a forward on a free loopback port.
func loopbackForward(t *testing.T, name string) ForwardListener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return ForwardListener{Forward: proto.Forward{Name: name, Port: uint16(l.Addr().(*net.TCPAddr).Port)}, Listener: l}
}

// hostService listens on the host's loopback and gives handler each connection; its
// Dialer counts its dials.
func hostService(t *testing.T, dials *atomic.Int64, handler func(*net.TCPConn)) proto.Dialer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handler(c.(*net.TCPConn))
		}
	}()
	return func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp4", l.Addr().String())
	}
}

func echo(s *net.TCPConn) {
	defer s.Close()
	b, _ := io.ReadAll(s)
	_, _ = s.Write(append([]byte("pong:"), b...))
}

// exchange connects to a forward's guest port, sends msg, half-closes and returns
// everything read back.
func exchange(t *testing.T, f ForwardListener, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp4", f.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write([]byte(msg))
	_ = c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	return string(b)
}

// serveForwards runs the host's ServeForwards with dial, which must serve ready with
// echo, and returns once a connection on ready went through (ServeForwards is up).
func serveForwards(t *testing.T, e *env, ready ForwardListener, dial map[string]proto.Dialer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.client.ServeForwards(ctx, dial) }()
	for deadline := time.Now().Add(10 * time.Second); exchange(t, ready, "up?") != "pong:up?"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ready forward never answered")
		}
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// endSession closes the host's end and waits for Serve, leaving its result for
// start's cleanup.
func endSession(t *testing.T, e *env) {
	t.Helper()
	e.client.Close()
	select {
	case err := <-e.served:
		e.served <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the host closed the session")
	}
}

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the session:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	}
}

// A guest loopback connection reaches the host's service through the session, both
// ways with a half-close; a name the host does not serve dials nothing; the
// listeners close with the session, and nothing of it stays behind.
func TestForwardThroughSession(t *testing.T) {
	ready, llm, other := loopbackForward(t, "ready"), loopbackForward(t, "llm"), loopbackForward(t, "other")
	var dials, readyDials atomic.Int64
	dial := map[string]proto.Dialer{"llm": hostService(t, &dials, echo), "ready": hostService(t, &readyDials, echo)}
	base := runtime.NumGoroutine()
	var logs logBuf
	e := start(t, Options{Unconfined: true, Forwards: []ForwardListener{ready, llm, other}, Logf: logs.logf})
	stop := serveForwards(t, e, ready, dial)

	if got := exchange(t, llm, "ping"); got != "pong:ping" {
		t.Errorf("through the llm forward: %q, want pong:ping", got)
	}
	// The ready probe may have been refused before ServeForwards was up.
	before := e.client.ForwardStats()
	if got := exchange(t, other, "GET / HTTP/1.0\r\n\r\n"); got != "" {
		t.Errorf("a forward the host does not serve answered %q", got)
	}
	if dials.Load() != 1 {
		t.Errorf("the host dialled llm's service %d times for one llm connection (and one for an unserved name)", dials.Load())
	}
	if s := e.client.ForwardStats(); s.Refused != before.Refused+1 || s.DialFailed != 0 {
		t.Errorf("host stats %+v, want the unserved name refused", s)
	}
	endSession(t, e)
	if err := stop(); err != nil {
		t.Errorf("ServeForwards after the session ended = %v, want nil", err)
	}
	for _, f := range []ForwardListener{ready, llm, other} {
		if c, err := net.Dial("tcp4", f.Listener.Addr().String()); err == nil {
			c.Close()
			t.Errorf("forward %s still listens after the session ended", f.Name)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("forward llm (127.0.0.1:%d): 1 connection(s), 0 closed over the limit of %d, 0 ended with an error", llm.Port, proto.MaxForwardConns),
		`forward other: refused by the host: forward "other" is not served by the host (it serves llm, ready)`,
		fmt.Sprintf("forward other (127.0.0.1:%d): 1 connection(s), 0 closed over the limit of %d, 1 ended with an error (first: ", other.Port, proto.MaxForwardConns),
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, logs.String())
		}
	}
	waitGoroutines(t, base)
}

// Beyond Options.ForwardConns a forward's connection is closed at once; the others
// carry on.
func TestForwardGuestLimit(t *testing.T) {
	ready, llm := loopbackForward(t, "ready"), loopbackForward(t, "llm")
	var logs logBuf
	e := start(t, Options{Unconfined: true, Forwards: []ForwardListener{ready, llm}, ForwardConns: 2, Logf: logs.logf})
	var dials atomic.Int64
	release := make(chan struct{})
	held := make(chan struct{}, 2)
	var readyDials atomic.Int64
	serveForwards(t, e, ready, map[string]proto.Dialer{"ready": hostService(t, &readyDials, echo), "llm": hostService(t, &dials, func(s *net.TCPConn) {
		defer s.Close()
		held <- struct{}{}
		<-release
		_, _ = s.Write([]byte("ok"))
	})})
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp4", llm.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
		select {
		case <-held:
		case <-time.After(10 * time.Second):
			t.Fatal("a connection within the limit did not reach the host's service")
		}
	}
	extra, err := net.Dial("tcp4", llm.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(extra); len(b) != 0 || isTimeout(err) {
		t.Errorf("the connection over the limit read %q, %v; want it closed at once", b, err)
	}
	close(release)
	for i, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); string(b) != "ok" {
			t.Errorf("connection %d within the limit read %q, %v", i, b, err)
		}
	}
	if dials.Load() != 2 {
		t.Errorf("%d dials for 2 connections within the limit", dials.Load())
	}
	endSession(t, e)
	if want := "forward llm (127.0.0.1:" + fmt.Sprint(llm.Port) + "): 2 connection(s), 1 closed over the limit of 2"; !strings.Contains(logs.String(), want) {
		t.Errorf("console lacks %q:\n%s", want, logs.String())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestListenForwards(t *testing.T) {
	taken := loopbackForward(t, "taken")
	free := loopbackForward(t, "free")
	freePort := free.Port
	free.Listener.Close()
	_, err := ListenForwards([]proto.Forward{{Name: "first", Port: freePort}, {Name: "llm", Port: taken.Port}})
	if want := fmt.Sprintf("forward llm: listen on 127.0.0.1:%d: ", taken.Port); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("ListenForwards on a taken port = %v, want an error containing %q", err, want)
	}
	// The forward opened before the failure was closed again.
	ls, err := ListenForwards([]proto.Forward{{Name: "first", Port: freePort}})
	if err != nil {
		t.Fatalf("the first forward's port is still held after the failure: %v", err)
	}
	defer ls[0].Listener.Close()
	if ls[0].Name != "first" || ls[0].Listener.Addr().String() != fmt.Sprintf("127.0.0.1:%d", freePort) {
		t.Errorf("listener %+v on %s", ls[0].Forward, ls[0].Listener.Addr())
	}
}

func TestNewServerForwardOptions(t *testing.T) {
	l := loopbackForward(t, "llm")
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Forwards: []ForwardListener{{Forward: proto.Forward{Name: "LLM", Port: 1}, Listener: l.Listener}}}, `"LLM": only lower-case`},
		{Options{Forwards: []ForwardListener{{Forward: proto.Forward{Name: "llm", Port: 1}}}}, `forward "llm" has no listener`},
		{Options{ForwardConns: proto.MaxForwardConns + 1}, "ForwardConns 65 out of range"},
	} {
		c.opts.Roots, c.opts.Unconfined = []string{t.TempDir()}, true
		if _, err := NewServer(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewServer: %v, want an error containing %q", err, c.want)
		}
	}
}
