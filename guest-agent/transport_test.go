package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
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
	secret, _ := proto.NewSecret()
	srv, err := agent.NewServer(agent.Options{Secret: secret, Roots: []string{t.TempDir()}, Unconfined: true})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- serveListener(context.Background(), &console{out: devNull(t), start: time.Now()}, srv, l)
	}()

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
	if err := client.Ping(ctx); err != nil {
		t.Fatal(err)
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

func devNull(t *testing.T) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
