package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// serveAnother serves one more connection on e's server and returns the host end
// and Serve's result.
func serveAnother(t *testing.T, e *env) (net.Conn, chan error) {
	t.Helper()
	h, g := socketPair(t)
	t.Cleanup(func() { h.Close() })
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(context.Background(), g) }()
	return h, served
}

func TestSecondSessionRefused(t *testing.T) {
	var logMu sync.Mutex
	var logs []string
	e := start(t, Options{Unconfined: true, Logf: func(f string, a ...any) {
		logMu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		logMu.Unlock()
	}})
	if err := e.client.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// A second peer, even one that knows the secret, gets no session while the first is open.
	h, served := serveAnother(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := proto.Connect(ctx, h, e.srv.opts.Secret); err == nil {
		c.Close()
		t.Fatal("a second connection with the right secret got a session while the first was open")
	}
	if err := <-served; !errors.Is(err, ErrSessionTaken) || !errors.Is(err, ErrHandshake) {
		t.Errorf("Serve of the second connection = %v, want ErrHandshake and ErrSessionTaken", err)
	}
	if err := e.client.Ping(ctxT(t)); err != nil {
		t.Fatalf("the first session broke when a second peer was refused: %v", err)
	}
	logMu.Lock()
	logged := strings.Join(logs, "\n")
	logMu.Unlock()
	if !strings.Contains(logged, "refused a connection") {
		t.Errorf("the refusal was not logged; log:\n%s", logged)
	}

	// Nor after the first ended: a boot serves one session.
	e.client.Close()
	if err := <-e.served; err != nil {
		t.Fatalf("first session ended with %v", err)
	}
	e.served <- nil // for start's cleanup
	h, served = serveAnother(t, e)
	if c, err := proto.Connect(ctx, h, e.srv.opts.Secret); err == nil {
		c.Close()
		t.Fatal("a connection after the session ended got a new session")
	}
	if err := <-served; !errors.Is(err, ErrSessionTaken) {
		t.Errorf("Serve after the session ended = %v, want ErrSessionTaken", err)
	}
}

// Several peers that know the secret handshake at once: exactly one gets a session.
func TestConcurrentHandshakesOneSession(t *testing.T) {
	secret, _ := proto.NewSecret()
	srv, err := NewServer(Options{Secret: secret, Roots: []string{t.TempDir()}, Unconfined: true})
	if err != nil {
		t.Fatal(err)
	}
	const peers = 4
	var working int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range peers {
		h, g := socketPair(t)
		go func() { _ = srv.Serve(context.Background(), g) }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer h.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := proto.Connect(ctx, h, secret)
			if err != nil {
				return
			}
			defer c.Close()
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			if c.Ping(pctx) == nil {
				mu.Lock()
				working++
				mu.Unlock()
				time.Sleep(time.Second) // hold the session while the others finish
			}
		}()
	}
	wg.Wait()
	if working != 1 {
		t.Fatalf("%d of %d concurrent peers got a working session, want exactly 1", working, peers)
	}
}

func TestSessionEndKillsItsProcesses(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	pr, pw := io.Pipe()
	go func() {
		_, _ = e.client.Exec(context.Background(), proto.ExecRequest{
			Args:   []string{"sh", "-c", "echo $$; exec sleep 60"},
			Stdin:  blockingReader{}, // stdin stays open: only the session's end stops it
			Stdout: pw,
		})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q: %v", line, err)
	}
	endSession(t, e)
	// Serve returns only after the session's execs were reaped.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Fatalf("process %d of the ended session still runs: %s", pid, st)
	}
}

// blockingReader never returns: a stdin the host keeps open.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }
