package proto

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

func TestForwardsValidate(t *testing.T) {
	secret, _ := NewSecret()
	ok := BootConfig{Secret: secret, Forwards: []Forward{{"llm", 4000}, {"a-0", 65535}, {strings.Repeat("x", 32), 1}}}
	js, err := ok.JSON()
	if err != nil {
		t.Fatalf("valid forwards refused: %v", err)
	}
	got, err := ParseBootJSON(js)
	if err != nil || len(got.Forwards) != 3 || got.Forwards[0] != (Forward{"llm", 4000}) {
		t.Fatalf("forwards round trip = %+v, %v", got.Forwards, err)
	}
	nine := make([]Forward, 9)
	for i := range nine {
		nine[i] = Forward{string(rune('a' + i)), uint16(4000 + i)}
	}
	for _, c := range []struct {
		fs   []Forward
		want string
	}{
		{[]Forward{{"", 4000}}, `forward 0: forward name "" must be 1 to 32`},
		{[]Forward{{strings.Repeat("x", 33), 4000}}, "must be 1 to 32"},
		{[]Forward{{"LLM", 4000}}, `"LLM": only lower-case letters`},
		{[]Forward{{"l_m", 4000}}, "only lower-case letters"},
		{[]Forward{{"llm", 0}}, "forward 0 (llm): port 0, want 1 to 65535"},
		{[]Forward{{"llm", VsockPort}}, "port 1024 is one of the agent's own"},
		{[]Forward{{"llm", NetVsockPort}}, "port 1025 is one of the agent's own"},
		{[]Forward{{"llm", 4000}, {"llm", 4001}}, `forward 1: name "llm" is used twice`},
		{[]Forward{{"llm", 4000}, {"mcp", 4000}}, "forward 1 (mcp): port 4000 is used twice"},
		{nine, "9 forwards, at most 8"},
	} {
		err := BootConfig{Secret: secret, Forwards: c.fs}.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("forwards %v: got %v, want an error containing %q", c.fs, err, c.want)
		}
	}
}

// fwdEnv is a host Client and the guest's yamux session over an in-process pipe.
type fwdEnv struct {
	host   *Client
	guest  *yamux.Session
	served chan error // ServeForwards' result
	cancel context.CancelFunc
}

func newFwdEnv(t *testing.T, limit int, openTimeout time.Duration) *fwdEnv {
	t.Helper()
	h, g := net.Pipe()
	hs, err := yamux.Client(h, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	gs, err := yamux.Server(g, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &fwdEnv{host: newClient(hs, limit, openTimeout), guest: gs, cancel: func() {}}
	t.Cleanup(e.close)
	return e
}

// close ends ServeForwards and both sessions, and waits for ServeForwards.
func (e *fwdEnv) close() {
	e.cancel()
	e.host.Close()
	e.guest.Close()
	if e.served != nil {
		<-e.served
		e.served = nil
	}
}

// serve starts ServeForwards and waits until its dialers are installed.
func (e *fwdEnv) serve(t *testing.T, dial map[string]Dialer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.served = make(chan error, 1)
	go func() { e.served <- e.host.ServeForwards(ctx, dial) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		e.host.fwd.mu.Lock()
		up := e.host.fwd.serving != nil
		e.host.fwd.mu.Unlock()
		if up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("ServeForwards did not install its dialers")
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection (they have CloseWrite).
func tcpPair() (client, server *net.TCPConn, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c.(*net.TCPConn), s.(*net.TCPConn), nil
}

// guestConn is what the guest agent does for one accepted connection: it returns
// the local client's end and the guest splice's result.
func (e *fwdEnv) guestConn(t *testing.T, name string) (*net.TCPConn, chan error) {
	t.Helper()
	client, accepted, err := tcpPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	st, err := OpenForward(e.guest, name)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- Splice(context.Background(), accepted, st) }()
	return client, res
}

// upstream is the host service a Dialer reaches: handler gets the service's end of
// each connection.
func upstream(dials *atomic.Int64, handler func(*net.TCPConn)) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		c, s, err := tcpPair()
		if err != nil {
			return nil, err
		}
		go handler(s)
		return c, nil
	}
}

// checkStats compares the host's counts with want, and the dials made with the
// streams that got as far as a dial.
func checkStats(t *testing.T, e *fwdEnv, dials *atomic.Int64, want ForwardStats) {
	t.Helper()
	if s := e.host.ForwardStats(); s != want || dials.Load() != want.Served+want.DialFailed {
		t.Errorf("stats %+v after %d dials, want %+v", s, dials.Load(), want)
	}
}

func waitResult(t *testing.T, res chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's splice did not end")
		return nil
	}
}

// noLeak waits for the goroutine count to fall back to base.
func noLeak(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the test:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestForwardBothWaysAndHalfClose(t *testing.T) {
	base := runtime.NumGoroutine()
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	var dials atomic.Int64
	late := make(chan string, 1)
	e.serve(t, map[string]Dialer{
		// The client half-closes after its request; the server answers after EOF.
		"echo": upstream(&dials, func(s *net.TCPConn) {
			defer s.Close()
			b, _ := io.ReadAll(s)
			_, _ = s.Write(append([]byte("pong:"), b...))
		}),
		// The server half-closes first and still reads what the client sends after.
		"greet": upstream(&dials, func(s *net.TCPConn) {
			defer s.Close()
			_, _ = s.Write([]byte("hello"))
			_ = s.CloseWrite()
			b, _ := io.ReadAll(s)
			late <- string(b)
		}),
	})

	c, res := e.guestConn(t, "echo")
	_, _ = c.Write([]byte("ping"))
	_ = c.CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "pong:ping" {
		t.Errorf("echo through the forward = %q, %v; want pong:ping", b, err)
	}
	if err := waitResult(t, res); err != nil {
		t.Errorf("guest splice after a clean exchange: %v", err)
	}

	c, res = e.guestConn(t, "greet")
	if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
		t.Errorf("greeting read to EOF = %q, %v; want hello", b, err)
	}
	_, _ = c.Write([]byte("after your half-close"))
	_ = c.CloseWrite()
	select {
	case got := <-late:
		if got != "after your half-close" {
			t.Errorf("server read %q after its half-close", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never got the client's bytes sent after its half-close")
	}
	if err := waitResult(t, res); err != nil {
		t.Errorf("guest splice: %v", err)
	}
	checkStats(t, e, &dials, ForwardStats{Served: 2})
	e.cancel()
	if err := <-e.served; !errors.Is(err, context.Canceled) {
		t.Errorf("ServeForwards after its ctx was cancelled = %v", err)
	}
	e.served = nil
	e.close()
	noLeak(t, base)
}

// Megabytes both ways at once: chunking and yamux's flow control.
func TestForwardBulkBothWays(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	up, down := make([]byte, 3<<20+7), make([]byte, 2<<20+3)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	got := make(chan []byte, 1)
	var dials atomic.Int64
	e.serve(t, map[string]Dialer{"bulk": upstream(&dials, func(s *net.TCPConn) {
		defer s.Close()
		go func() { _, _ = s.Write(down); _ = s.CloseWrite() }()
		b, _ := io.ReadAll(s)
		got <- b
	})})
	c, res := e.guestConn(t, "bulk")
	go func() { _, _ = c.Write(up); _ = c.CloseWrite() }()
	b, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(b, down) {
		t.Errorf("guest read %d bytes (%v), want the server's %d", len(b), err, len(down))
	}
	if b := <-got; !bytes.Equal(b, up) {
		t.Errorf("server read %d bytes, want the client's %d", len(b), len(up))
	}
	if err := waitResult(t, res); err != nil {
		t.Errorf("guest splice: %v", err)
	}
}

// A guest that names another forward gets nothing dialled: not the registered one,
// not anything derived from what it sent.
func TestForwardUnknownNameNeverDials(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	var dials atomic.Int64
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) { s.Close() })})
	c, res := e.guestConn(t, "127-0-0-1-22")
	var re *ForwardRefused
	if err := waitResult(t, res); !errors.As(err, &re) || re.Code != CodeNotFound || !strings.Contains(re.Message, `"127-0-0-1-22" is not served by the host (it serves llm)`) {
		t.Errorf("guest splice for an unknown forward = %v, want the host's refusal", err)
	}
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("client of a refused forward read %q", b)
	}
	checkStats(t, e, &dials, ForwardStats{Refused: 1})
}

// Without ServeForwards the host still accepts the guest's streams (yamux ends a
// session whose opened streams are not accepted) and refuses them.
func TestForwardWithoutServeIsRefused(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	_, res := e.guestConn(t, "llm")
	var re *ForwardRefused
	if err := waitResult(t, res); !errors.As(err, &re) || !strings.Contains(re.Message, "serves no forwards") {
		t.Errorf("forward before ServeForwards = %v", err)
	}
	if e.host.sess.IsClosed() || e.guest.IsClosed() {
		t.Error("a refused forward closed the session")
	}
	if s := e.host.ForwardStats(); s != (ForwardStats{Refused: 1}) {
		t.Errorf("stats %+v, want 1 refused", s)
	}
}

// A guest stream without a valid open message is refused, within the open timeout
// when it sends nothing.
func TestForwardBadOpen(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, 200*time.Millisecond)
	var dials atomic.Int64
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) { s.Close() })})
	for _, c := range []struct {
		name string
		send func(io.Writer)
		want string
	}{
		{"silent", func(io.Writer) {}, "within 200ms"},
		{"request first", func(w io.Writer) { _ = WriteJSON(w, FrameRequest, Request{Op: OpPing}) }, "must be open, got request"},
		{"unknown field", func(w io.Writer) { _ = WriteFrame(w, FrameOpen, []byte(`{"name":"llm","addr":"10.0.0.1:22"}`)) }, "unknown field"},
		{"bad name", func(w io.Writer) { _ = WriteJSON(w, FrameOpen, ForwardOpen{Name: "../llm"}) }, "only lower-case"},
		{"data first", func(w io.Writer) { _ = WriteFrame(w, FrameData, []byte("GET / HTTP/1.1\r\n")) }, "must be open, got data"},
	} {
		st, err := e.guest.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		c.send(st)
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := ReadFrame(st)
		var re *RemoteError
		if err != nil || f.Type != FrameError || !errors.As(remoteErr(f.Payload), &re) || re.Code != CodeBadRequest || !strings.Contains(re.Message, c.want) {
			t.Errorf("%s: host answered %s %q (%v), want a bad_request error containing %q", c.name, f.Type, f.Payload, err, c.want)
		}
		if _, err := ReadFrame(st); err != io.EOF {
			t.Errorf("%s: stream after the refusal: %v, want EOF", c.name, err)
		}
		if took := time.Since(begin); took > 3*time.Second {
			t.Errorf("%s: refused after %v", c.name, took)
		}
		st.Close()
	}
	checkStats(t, e, &dials, ForwardStats{Refused: 5})
}

func TestForwardDialFailure(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	e.serve(t, map[string]Dialer{"llm": func(ctx context.Context) (net.Conn, error) {
		return nil, errors.New("connection refused by the proxy")
	}})
	_, res := e.guestConn(t, "llm")
	var re *ForwardRefused
	if err := waitResult(t, res); !errors.As(err, &re) || re.Code != CodeIO || !strings.Contains(re.Message, "could not connect: connection refused by the proxy") {
		t.Errorf("guest splice when the dial fails = %v", err)
	}
	if s := e.host.ForwardStats(); s != (ForwardStats{DialFailed: 1}) {
		t.Errorf("stats %+v, want 1 failed dial", s)
	}
}

// Beyond the host's limit a stream waits to be accepted; it is served when a slot
// frees, and the ones being served go on meanwhile.
func TestForwardHostLimit(t *testing.T) {
	base := runtime.NumGoroutine()
	e := newFwdEnv(t, 2, ForwardOpenTimeout)
	var dials atomic.Int64
	release := make(chan struct{})
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) {
		defer s.Close()
		b := make([]byte, 1)
		_, _ = io.ReadFull(s, b)
		<-release
		_, _ = s.Write(append([]byte("ok"), b...))
	})})
	var conns []*net.TCPConn
	var results []chan error
	for i := range 3 {
		c, r := e.guestConn(t, "llm")
		_, _ = c.Write([]byte{'1' + byte(i)})
		conns, results = append(conns, c), append(results, r)
		if i == 1 {
			for deadline := time.Now().Add(5 * time.Second); dials.Load() < 2; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d of 2 connections within the limit dialled", dials.Load())
				}
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials with a limit of 2 streams", n)
	}
	// The first two end; a slot freed serves the third.
	close(release)
	for i, c := range conns {
		_ = c.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); string(b) != fmt.Sprintf("ok%d", i+1) {
			t.Errorf("connection %d read %q, %v", i+1, b, err)
		}
		if err := waitResult(t, results[i]); err != nil {
			t.Errorf("guest splice %d: %v", i+1, err)
		}
	}
	checkStats(t, e, &dials, ForwardStats{Served: 3})
	e.close()
	noLeak(t, base)
}

// The session's end ends ServeForwards and every connection it carries.
func TestForwardSessionEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	var dials atomic.Int64
	held := make(chan *net.TCPConn, 1)
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) { held <- s })})
	c, res := e.guestConn(t, "llm")
	_, _ = c.Write([]byte("x"))
	s := <-held
	defer s.Close()
	e.host.Close()
	select {
	case err := <-e.served:
		if err != nil {
			t.Errorf("ServeForwards after the session ended = %v, want nil", err)
		}
		e.served = nil
	case <-time.After(10 * time.Second):
		t.Fatal("ServeForwards did not return when the session ended")
	}
	if err := waitResult(t, res); err == nil {
		t.Error("the guest's splice ended cleanly although the session went away")
	}
	// The upstream connection was closed by the host: its reader sees the end.
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(s); err != nil {
		t.Errorf("upstream after the session ended: read %q, %v; want EOF", b, err)
	}
	e.close()
	noLeak(t, base)
}

func TestServeForwardsArguments(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	ctx := context.Background()
	if err := e.host.ServeForwards(ctx, map[string]Dialer{"LLM": func(context.Context) (net.Conn, error) { return nil, nil }}); err == nil || !strings.Contains(err.Error(), `"LLM"`) {
		t.Errorf("bad name: %v", err)
	}
	if err := e.host.ServeForwards(ctx, map[string]Dialer{"llm": nil}); err == nil || !strings.Contains(err.Error(), "nil Dialer") {
		t.Errorf("nil dialer: %v", err)
	}
	e.serve(t, map[string]Dialer{})
	if err := e.host.ServeForwards(ctx, map[string]Dialer{}); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second ServeForwards: %v", err)
	}
}

// FuzzForwardOpen: whatever a hostile guest sends on a stream it opens, the host
// dials only when the stream starts with a valid open message naming a registered
// forward, and the stream ends (refused, or spliced and closed).
func FuzzForwardOpen(f *testing.F) {
	var ok, unknown, bad bytes.Buffer
	_ = WriteJSON(&ok, FrameOpen, ForwardOpen{Name: "llm"})
	_ = WriteFrame(&ok, FrameData, []byte("GET / HTTP/1.0\r\n\r\n"))
	_ = WriteFrame(&ok, FrameEnd, nil)
	_ = WriteJSON(&unknown, FrameOpen, ForwardOpen{Name: "ssh"})
	_ = WriteFrame(&bad, FrameOpen, []byte(`{"name":"llm","port":22}`))
	for _, b := range [][]byte{ok.Bytes(), unknown.Bytes(), bad.Bytes(), {byte(FrameOpen), 0xff, 0xff, 0xff, 0xff}, nil} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e := newFwdEnv(t, MaxHostForwardConns, 100*time.Millisecond)
		var dials atomic.Int64
		e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) { s.Close() })})
		st, err := e.guest.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		// A yamux Close is the guest's half-close: it has sent all it will.
		go func() { _, _ = st.Write(in); _ = st.Close() }()
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, st); err != nil {
			t.Fatalf("the host did not end the stream: %v", err)
		}
		fr, err := ReadFrame(bytes.NewReader(in))
		var o ForwardOpen
		valid := err == nil && fr.Type == FrameOpen && DecodeJSON(fr.Payload, &o) == nil && o.Name == "llm"
		if got := dials.Load(); got > 0 && !valid || got > 1 {
			t.Fatalf("the host dialled %d times for %q", got, in)
		}
	})
}

// A client that resets its connection ends both splices, also while the other side
// is silent.
func TestForwardClientReset(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	var dials atomic.Int64
	ended := make(chan error, 1)
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) {
		defer s.Close()
		_, err := io.ReadAll(s) // says nothing, waits for the client's end
		ended <- err
	})})
	c, res := e.guestConn(t, "llm")
	_, _ = c.Write([]byte("partial request"))
	time.Sleep(50 * time.Millisecond)
	_ = c.SetLinger(0)
	c.Close() // RST
	if err := waitResult(t, res); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("guest splice after the client's reset = %v, want the reset", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the host's service never saw the connection end")
	}
}

// Bytes go through as they come (an LLM's server-sent events): the client reads the
// first event before the server writes the second.
func TestForwardStreamsIncrementally(t *testing.T) {
	e := newFwdEnv(t, MaxHostForwardConns, ForwardOpenTimeout)
	var dials atomic.Int64
	next := make(chan struct{})
	first, second := "event: message_start\n\n", "event: message_stop\n\n"
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) {
		defer s.Close()
		_, _ = s.Write([]byte(first))
		select {
		case <-next:
			_, _ = s.Write([]byte(second))
		case <-time.After(10 * time.Second):
		}
	})})
	c, res := e.guestConn(t, "llm")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(first))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != first {
		t.Fatalf("first event: %q, %v (held back until the server's next write?)", buf, err)
	}
	close(next)
	_ = c.CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != second {
		t.Errorf("second event: %q, %v", b, err)
	}
	if err := waitResult(t, res); err != nil {
		t.Errorf("guest splice: %v", err)
	}
}

// A refused stream keeps its slot until the guest closes it, and what the guest
// still sends on it is read and dropped, not buffered.
func TestForwardRefusedStreamHeldUntilClosed(t *testing.T) {
	e := newFwdEnv(t, 1, ForwardOpenTimeout)
	var dials atomic.Int64
	e.serve(t, map[string]Dialer{"llm": upstream(&dials, func(s *net.TCPConn) {
		defer s.Close()
		_, _ = s.Write([]byte("ok"))
	})})
	bad, err := e.guest.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_ = WriteJSON(bad, FrameOpen, ForwardOpen{Name: "ssh"})
	if f, err := ReadFrame(bad); err != nil || f.Type != FrameError {
		t.Fatalf("refusal: %v %v", f.Type, err)
	}
	// Eight times yamux's initial window: only a host that reads lets it through.
	_ = bad.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := bad.Write(make([]byte, 2<<20)); err != nil {
		t.Errorf("the host does not read a refused stream to its end: %v", err)
	}
	c, res := e.guestConn(t, "llm")
	time.Sleep(100 * time.Millisecond)
	if dials.Load() != 0 {
		t.Fatal("a second stream was served while the refused one held the only slot")
	}
	bad.Close()
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); string(b) != "ok" {
		t.Errorf("the stream after the refused one read %q, %v", b, err)
	}
	if err := waitResult(t, res); err != nil {
		t.Errorf("guest splice: %v", err)
	}
	checkStats(t, e, &dials, ForwardStats{Served: 1, Refused: 1})
}
