package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

func TestPingShutdownAndSessionEnd(t *testing.T) {
	shut := make(chan struct{}, 1)
	e := start(t, Options{Unconfined: true, OnShutdown: func() { shut <- struct{}{} }})
	if err := e.client.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-shut:
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown callback not called")
	}
	e.client.Close()
	select {
	case err := <-e.served:
		if err != nil {
			t.Errorf("Serve after the host closed the session = %v, want nil", err)
		}
		e.served <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when the host closed the session")
	}
}

// serveRaw serves on one end of a socket pair and returns the host end, unconnected.
func serveRaw(t *testing.T) (net.Conn, chan error) {
	secret, _ := proto.NewSecret()
	srv, err := NewServer(Options{Secret: secret, Roots: []string{t.TempDir()}, Unconfined: true, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, g := socketPair(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), g) }()
	t.Cleanup(func() { h.Close() })
	return h, served
}

func TestBadSecretRejected(t *testing.T) {
	h, served := serveRaw(t)
	other, _ := proto.NewSecret()
	_, err := proto.Connect(ctxT(t), h, other)
	if !errors.Is(err, proto.ErrAuth) {
		t.Errorf("connect with a wrong secret: %v, want ErrAuth", err)
	}
	if err := <-served; !errors.Is(err, ErrHandshake) {
		t.Errorf("Serve = %v, want ErrHandshake", err)
	}
}

func TestNothingServedBeforeHandshake(t *testing.T) {
	h, served := serveRaw(t)
	// A request frame instead of a hello: the agent must answer nothing useful and close.
	if err := proto.WriteJSON(h, proto.FrameRequest, proto.Request{Op: proto.OpPing}); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrHandshake) {
		t.Errorf("Serve = %v, want ErrHandshake", err)
	}
	_ = h.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(h)
	if len(rest) != 0 {
		t.Errorf("agent sent %q to an unauthenticated peer", rest)
	}
}

func TestVersionMismatch(t *testing.T) {
	h, served := serveRaw(t)
	if err := proto.WriteHello(h, proto.Hello{Magic: "voidbox-host", Version: proto.Version + 1, Nonce: strings.Repeat("ab", 16)}); err != nil {
		t.Fatal(err)
	}
	reply, err := proto.ReadHello(h)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reply.Error, "protocol version mismatch") || !strings.Contains(reply.Error, fmt.Sprint(proto.Version+1)) {
		t.Errorf("guest reply %+v does not name the version mismatch", reply)
	}
	if err := <-served; !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "version") {
		t.Errorf("Serve = %v, want a version handshake error", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	h, served := serveRaw(t)
	_ = h
	select {
	case err := <-served:
		if !errors.Is(err, ErrHandshake) {
			t.Errorf("Serve = %v, want ErrHandshake after the deadline", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a silent peer held the agent past the handshake timeout")
	}
}
