package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// warmServer serves a warm agent whose re-key is recorded, not applied to this host.
func warmServer(t *testing.T, applied chan<- proto.Rekey) (*Server, string) {
	t.Helper()
	old, _ := proto.NewSecret()
	var logs strings.Builder
	srv, err := NewServer(Options{Secret: old, Roots: []string{t.TempDir()}, Unconfined: true, Warm: true,
		HandshakeTimeout: 5 * time.Second,
		ApplyRekey:       func(r proto.Rekey) error { applied <- r; return nil },
		Logf:             func(f string, a ...any) { logs.WriteString(f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, old
}

func newRekey(t *testing.T) proto.Rekey {
	s, _ := proto.NewSecret()
	return proto.Rekey{Secret: s, Entropy: bytes.Repeat([]byte{1}, 32), UnixNano: time.Now().UnixNano(), Hostname: "h", Allow: []string{"true"}}
}

func TestWarmAgentRekeysThenServesTheNewSecretOnly(t *testing.T) {
	applied := make(chan proto.Rekey, 1)
	srv, old := warmServer(t, applied)
	h, g := socketPair(t)
	defer h.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), g) }()
	r := newRekey(t)
	c, err := proto.ConnectRekeyed(ctxT(t), h, old, r)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-applied; got.Secret != r.Secret || got.Hostname != "h" {
		t.Fatalf("applied %+v, want the host's re-key", got)
	}
	if err := c.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The re-key's allow list is the policy now.
	if _, err := c.Exec(ctxT(t), proto.ExecRequest{Args: []string{"echo", "x"}}); err == nil || !strings.Contains(err.Error(), "not allowed") && !strings.Contains(err.Error(), "allow") {
		t.Fatalf("exec of a command outside the re-key's allow list = %v, want a refusal", err)
	}

	// A second peer holding the snapshot's secret gets nothing, by re-key or handshake.
	for name, try := range map[string]func(h2 io.ReadWriter) error{
		"re-key":    func(h2 io.ReadWriter) error { return proto.ClientRekey(h2, old, newRekey(t)) },
		"handshake": func(h2 io.ReadWriter) error { return proto.ClientHandshake(h2, old) },
	} {
		h2, g2 := socketPair(t)
		served2 := make(chan error, 1)
		go func() { served2 <- srv.Serve(context.Background(), g2) }()
		_ = h2.SetDeadline(time.Now().Add(5 * time.Second))
		if err := try(h2); err == nil {
			t.Errorf("%s with the snapshot's secret after the re-key succeeded", name)
		}
		if err := <-served2; !errors.Is(err, ErrHandshake) {
			t.Errorf("%s: Serve = %v, want ErrHandshake", name, err)
		}
		h2.Close()
	}
	c.Close()
	<-served
}

func TestWarmAgentRefusesHandshakeBeforeRekey(t *testing.T) {
	applied := make(chan proto.Rekey, 1)
	srv, old := warmServer(t, applied)
	h, g := socketPair(t)
	defer h.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), g) }()
	if _, err := proto.Connect(ctxT(t), h, old); err == nil {
		t.Fatal("a warm agent took an ordinary handshake with the snapshot's secret")
	}
	if err := <-served; !errors.Is(err, ErrHandshake) || !errors.Is(err, proto.ErrNotRekey) {
		t.Fatalf("Serve = %v, want ErrHandshake wrapping ErrNotRekey", err)
	}
	if srv.Established() {
		t.Fatal("a refused peer established the session")
	}
	select {
	case r := <-applied:
		t.Fatalf("re-key %+v applied without one", r)
	default:
	}
}

func TestWarmAgentApplyFailureRefusesTheSession(t *testing.T) {
	old, _ := proto.NewSecret()
	srv, err := NewServer(Options{Secret: old, Roots: []string{t.TempDir()}, Unconfined: true, Warm: true, HandshakeTimeout: 5 * time.Second,
		ApplyRekey: func(proto.Rekey) error { return errors.New("RNDADDENTROPY: operation not permitted") }})
	if err != nil {
		t.Fatal(err)
	}
	h, g := socketPair(t)
	defer h.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), g) }()
	r := newRekey(t)
	if _, err := proto.ConnectRekeyed(ctxT(t), h, old, r); err == nil {
		t.Fatal("the session opened though the re-key could not be applied")
	}
	if err := <-served; err == nil || !strings.Contains(err.Error(), "RNDADDENTROPY") {
		t.Fatalf("Serve = %v, want the apply error", err)
	}
}
