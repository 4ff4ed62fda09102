package chv

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/chv/internal/fakechv"
)

// startMuxer serves a fake hybrid-vsock muxer on a fresh socket.
func startMuxer(t *testing.T, mux *fakechv.Muxer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vsock.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { mux.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return sock
}

type halfCloser interface{ CloseWrite() error }

func TestDialHybridEcho(t *testing.T) {
	mux := fakechv.NewMuxer()
	mux.Handle(1024, func(c net.Conn) {
		defer c.Close()
		// Greet before reading: bytes right after "OK n\n" must reach the client.
		c.Write([]byte("hello\n"))
		io.Copy(c, c)
	})
	sock := startMuxer(t, mux)
	c, err := DialHybrid(context.Background(), sock, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != "hello\n" {
		t.Fatalf("greeting %q (lost after the handshake?)", line)
	}
	c.Write([]byte("abc\n"))
	if line, _ := r.ReadString('\n'); line != "abc\n" {
		t.Fatalf("echo %q", line)
	}
}

func TestDialHybridRefusedPort(t *testing.T) {
	sock := startMuxer(t, fakechv.NewMuxer())
	_, err := DialHybrid(context.Background(), sock, 5000)
	if !errors.Is(err, ErrPortRefused) || !strings.Contains(err.Error(), "CONNECT 5000") {
		t.Fatalf("err %v, want ErrPortRefused naming the port", err)
	}
}

func TestDialHybridNoSocket(t *testing.T) {
	_, err := DialHybrid(context.Background(), filepath.Join(t.TempDir(), "none.sock"), 1)
	if err == nil || errors.Is(err, ErrPortRefused) {
		t.Fatalf("err %v", err)
	}
}

// A peer that never answers the CONNECT must not hold DialHybrid past ctx.
func TestDialHybridSilentPeer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = DialHybrid(ctx, sock, 1)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

// Half-close both ways: the guest sees EOF after the host's CloseWrite and
// can still answer; the host then sees the guest's EOF.
func TestDialHybridHalfClose(t *testing.T) {
	mux := fakechv.NewMuxer()
	mux.Handle(7, func(c net.Conn) {
		defer c.Close()
		in, err := io.ReadAll(c) // until the host's CloseWrite
		if err != nil {
			return
		}
		c.Write([]byte(strings.ToUpper(string(in))))
		c.(halfCloser).CloseWrite()
		io.Copy(io.Discard, c)
	})
	sock := startMuxer(t, mux)
	c, err := DialHybrid(context.Background(), sock, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("stdin data"))
	if err := c.(halfCloser).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "STDIN DATA" {
		t.Fatalf("read %q, %v", out, err)
	}
}

func TestListenGuest(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vsock.sock")
	// A stale socket from an earlier VM must not block the listener.
	stale, err := net.Listen("unix", GuestSocket(sock, 9000))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := ListenGuest(sock, 9000)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != sock+"_9000" {
		t.Errorf("listening on %s", got)
	}
	go func() {
		// What Cloud Hypervisor does for a guest connecting to CID 2 port 9000.
		c, err := net.Dial("unix", sock+"_9000")
		if err == nil {
			c.Write([]byte("from guest"))
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	if string(got) != "from guest" {
		t.Errorf("got %q", got)
	}
}

func TestParseOK(t *testing.T) {
	if p, err := parseOK("OK 1073741824"); err != nil || p != 1073741824 {
		t.Errorf("parseOK = %d, %v", p, err)
	}
	for _, s := range []string{"", "OK", "OK x", "ok 1", "ERR 1", "OK 99999999999", "OK -1"} {
		if _, err := parseOK(s); err == nil {
			t.Errorf("parseOK(%q) accepted", s)
		}
	}
}

func FuzzParseOK(f *testing.F) {
	for _, s := range []string{"OK 1", "OK 4294967295", "OK", "", "OK  7", "OK 1 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := parseOK(s); err == nil && !strings.HasPrefix(s, "OK ") {
			t.Fatalf("accepted %q as port %d", s, p)
		}
	})
}

// FuzzHandshake feeds arbitrary VMM answers to the CONNECT handshake: it must
// end (no hang, no panic), and succeed only on a well-formed OK line.
func FuzzHandshake(f *testing.F) {
	for _, s := range []string{"OK 5\n", "OK 5\nguest data", "", "NO\n", "OK 5", strings.Repeat("A", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		host, vmm := net.Pipe()
		defer host.Close()
		go func() {
			defer vmm.Close()
			buf := make([]byte, 64)
			vmm.Read(buf) // the CONNECT line
			vmm.Write(answer)
		}()
		host.SetDeadline(time.Now().Add(5 * time.Second))
		err := handshake(host, 1024)
		line, _, found := strings.Cut(string(answer), "\n")
		_, perr := parseOK(line)
		if wantOK := found && perr == nil && len(line) <= maxHandshakeLine; (err == nil) != wantOK {
			t.Fatalf("answer %q: handshake err %v, want ok=%v", answer, err, wantOK)
		}
	})
}
