package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/agent"
	"github.com/voidbox/voidbox/guest-agent/proto"
)

// flakyPort reads EOF a few times (host not connected yet), then data, then EOF.
type flakyPort struct {
	eofs int
	data *bytes.Reader
}

func (f *flakyPort) Read(p []byte) (int, error) {
	if f.eofs > 0 {
		f.eofs--
		return 0, io.EOF
	}
	return f.data.Read(p)
}
func (f *flakyPort) Write(p []byte) (int, error) { return len(p), nil }
func (f *flakyPort) Close() error                { return nil }

func TestSerialConnWaitsForHost(t *testing.T) {
	s := &serialConn{f: &flakyPort{eofs: 3, data: bytes.NewReader([]byte("hello"))}}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v: EOF before the host spoke must be retried, EOF after it is the end", got, err)
	}
}

func TestServeListenerKeepsListeningAfterBadHandshake(t *testing.T) {
	secret, sock, done := listenAgent(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wrong, _ := proto.NewSecret()
	conn, _ := net.Dial("unix", sock)
	if _, err := proto.Connect(ctx, conn, wrong); !errors.Is(err, proto.ErrAuth) {
		t.Fatalf("wrong secret: %v", err)
	}
	conn, _ = net.Dial("unix", sock)
	client, err := proto.Connect(ctx, conn, secret)
	if err != nil {
		t.Fatalf("the agent stopped listening after a rejected peer: %v", err)
	}
	endSession(ctx, t, client, done)
}

// endSession checks that the session on client still works and that
// serveListener still runs, then closes the session and expects serveListener to
// return nil.
func endSession(ctx context.Context, t *testing.T, client *proto.Client, done chan error) {
	t.Helper()
	if err := client.Ping(ctx); err != nil {
		t.Fatalf("ping in the session: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("serveListener returned during a session: %v", err)
	default:
	}
	client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveListener after the host left = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveListener did not return when the host closed the session")
	}
}

// testServer is an unconfined agent server with a fresh secret.
func testServer(t *testing.T) (*agent.Server, string) {
	t.Helper()
	secret, _ := proto.NewSecret()
	srv, err := agent.NewServer(agent.Options{Secret: secret, Roots: []string{t.TempDir()}, Unconfined: true})
	if err != nil {
		t.Fatal(err)
	}
	return srv, secret
}

// listenAgent serves a test server with serveListener on a unix socket and
// returns its secret, the socket path and serveListener's result.
func listenAgent(t *testing.T) (secret, sock string, done chan error) {
	t.Helper()
	srv, secret := testServer(t)
	sock = filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() {
		done <- serveListener(context.Background(), &console{out: devNull(t), start: time.Now()}, srv, l)
	}()
	return secret, sock, done
}

func devNull(t *testing.T) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestServeListenerRefusesSecondSession(t *testing.T) {
	secret, sock, done := listenAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _ := net.Dial("unix", sock)
	first, err := proto.Connect(ctx, conn, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Ping(ctx); err != nil { // the session is established once it answers
		t.Fatal(err)
	}
	conn, _ = net.Dial("unix", sock)
	if second, err := proto.Connect(ctx, conn, secret); err == nil {
		second.Close()
		t.Fatal("a second connection with the right secret got a session while the first was open")
	}
	endSession(ctx, t, first, done)
}

func TestServeWithinGivesUpWithoutSession(t *testing.T) {
	srv, secret := testServer(t)
	c := &console{out: devNull(t), start: time.Now()}
	never := func(ctx context.Context, _ *console, _ *agent.Server) error {
		select {} // a transport whose host never comes: a read that never returns
	}
	err := serveWithin(context.Background(), c, srv, 50*time.Millisecond, never)
	if err == nil || !strings.Contains(err.Error(), "no host session after 50ms") {
		t.Fatalf("serveWithin without a host = %v, want the no-session error", err)
	}

	// With a session under way the wait does not end it.
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	listen := func(ctx context.Context, c *console, srv *agent.Server) error { return serveListener(ctx, c, srv, l) }
	done := make(chan error, 1)
	go func() { done <- serveWithin(context.Background(), c, srv, 300*time.Millisecond, listen) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _ := net.Dial("unix", sock)
	client, err := proto.Connect(ctx, conn, secret)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := client.Ping(ctx); err != nil {
		t.Fatalf("the session did not outlive the wait: %v", err)
	}
	client.Close()
	if err := <-done; err != nil {
		t.Errorf("serveWithin after the host left = %v, want nil", err)
	}
}
