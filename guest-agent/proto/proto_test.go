package proto

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestBootConfigRoundTrip(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	in := BootConfig{Secret: secret, Hostname: "stage-1", Allow: []string{"sh", "cat"}, Rlimits: Rlimits{NOFILE: 1024, CPU: 30}, UnixTime: 1700000000}
	arg, err := in.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKernelCmdline("console=ttyS0 quiet " + arg + " panic=-1\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != secret || got.UID != DefaultUID || got.GID != DefaultGID || got.Hostname != "stage-1" ||
		strings.Join(got.Allow, ",") != "sh,cat" || got.Rlimits.NOFILE != 1024 || got.UnixTime != 1700000000 {
		t.Errorf("round trip = %+v", got)
	}
}

func TestBootConfigErrors(t *testing.T) {
	secret, _ := NewSecret()
	big := BootConfig{Secret: secret, Allow: []string{strings.Repeat("x", 2000)}}
	if _, err := big.KernelArg(); err == nil || !strings.Contains(err.Error(), "at most 1536") {
		t.Errorf("oversized boot config: %v", err)
	}
	if _, err := (BootConfig{Secret: "abc"}).KernelArg(); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("bad secret: %v", err)
	}
	for _, cmdline := range []string{
		"console=ttyS0",
		"voidbox.boot=!!!",
		"voidbox.boot=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"s":"`+secret+`","zz":1}`)),
		"voidbox.boot=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":2,"s":"`+secret+`"}`)),
		"voidbox.boot=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"s":"`+secret+`","h":"a b"}`)),
	} {
		if _, err := ParseKernelCmdline(cmdline); err == nil {
			t.Errorf("ParseKernelCmdline(%q) accepted", cmdline)
		}
	}
}

func TestFrameBounds(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, FrameStdout, make([]byte, MaxFrame+1)); err == nil {
		t.Error("oversized frame written")
	}
	// A header announcing a huge payload is refused before allocating it.
	_, err := ReadFrame(bytes.NewReader([]byte{byte(FrameStdout), 0xff, 0xff, 0xff, 0xff}))
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("huge frame: %v", err)
	}
	_, err = ReadFrame(bytes.NewReader([]byte{byte(FrameRequest), 0, 1, 0, 1}))
	if err == nil {
		t.Error("request frame over MaxHeader accepted")
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{99, 0, 0, 0, 0})); err == nil {
		t.Error("unknown frame type accepted")
	}
	if _, err := ReadFrame(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("clean end: %v, want io.EOF", err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{byte(FrameStdout), 0, 0, 0, 4, 'a'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated payload: %v, want ErrUnexpectedEOF", err)
	}
}

func TestHandshakeBothSides(t *testing.T) {
	secret, _ := NewSecret()
	other, _ := NewSecret()
	for _, tc := range []struct {
		name          string
		host, guest   string
		wantHost      error
		wantGuestFail bool
	}{
		{"ok", secret, secret, nil, false},
		{"wrong secret", other, secret, ErrAuth, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, g := net.Pipe()
			defer h.Close()
			gerr := make(chan error, 1)
			go func() { gerr <- ServerHandshake(g, tc.guest); g.Close() }()
			err := ClientHandshake(h, tc.host)
			if !errors.Is(err, tc.wantHost) && (err != nil || tc.wantHost != nil) {
				t.Errorf("host: %v, want %v", err, tc.wantHost)
			}
			if err := <-gerr; (err != nil) != tc.wantGuestFail {
				t.Errorf("guest: %v", err)
			}
		})
	}
}

func TestHostSeesGuestVersionMismatch(t *testing.T) {
	secret, _ := NewSecret()
	h, g := net.Pipe()
	defer h.Close()
	go func() {
		_, _ = ReadHello(g)
		_ = WriteHello(g, Hello{Magic: guestMagic, Version: Version + 7, Nonce: strings.Repeat("0", 32)})
		g.Close()
	}()
	err := ClientHandshake(h, secret)
	if err == nil || !strings.Contains(err.Error(), "protocol version mismatch") {
		t.Errorf("host error %v, want a version mismatch", err)
	}
}

func TestDecodeRequestValidates(t *testing.T) {
	for _, p := range []string{
		`{"op":"exec"}`, `{"op":"exec","args":[""]}`, `{"op":"exec","args":["a"],"timeout_ms":-1}`,
		`{"op":"exec","args":["a"],"env":{"A=B":"c"}}`, `{"op":"read_file"}`, `{"op":"nope"}`,
		`{"op":"ping","extra":1}`, `{"op":"ping"} {}`, `{"op":"write_file","path":"x","size":-1}`,
	} {
		if _, err := DecodeRequest([]byte(p)); err == nil {
			t.Errorf("DecodeRequest(%s) accepted", p)
		}
	}
	if r, err := DecodeRequest([]byte(`{"op":"exec","args":["sh","-c","true"],"env":{"A":"b"}}`)); err != nil || r.Args[0] != "sh" {
		t.Errorf("valid exec request: %+v %v", r, err)
	}
}

func TestConnectHonoursDeadline(t *testing.T) {
	h, g := net.Pipe()
	defer g.Close()
	go func() { _, _ = io.Copy(io.Discard, g) }() // a peer that never answers
	secret, _ := NewSecret()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := Connect(ctx, h, secret)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect to a silent peer: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Connect took %v past a 200ms deadline", d)
	}
}

func TestRemoteErrorIsTerminalSafe(t *testing.T) {
	e := &RemoteError{Code: CodeIO, Message: "no such file\x1b[2J\x1b]0;title\x07"}
	if got := e.Error(); strings.ContainsAny(got, "\x1b\x07") || !strings.HasPrefix(got, "guest agent: no such file") {
		t.Fatalf("Error() = %q; want the guest's text without control sequences", got)
	}
}
