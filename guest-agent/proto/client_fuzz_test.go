package proto

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// FuzzClientAgainstHostileGuest: an authenticated but hostile (or buggy) guest answers
// a request with arbitrary bytes; the host's Client must return, never panic.
func FuzzClientAgainstHostileGuest(f *testing.F) {
	var ok, exec, data bytes.Buffer
	_ = WriteJSON(&ok, FrameOK, Response{Info: &FileInfo{Name: "x", Size: 1}})
	_ = WriteFrame(&exec, FrameStdout, []byte("out"))
	_ = WriteJSON(&exec, FrameExit, ExitStatus{ExitCode: 2})
	_ = WriteFrame(&data, FrameData, []byte("abc"))
	_ = WriteJSON(&data, FrameError, RemoteError{Code: CodeIO, Message: "boom"})
	for i, b := range [][]byte{ok.Bytes(), exec.Bytes(), data.Bytes(), {byte(FrameExit), 0, 0, 0, 1, '{'}} {
		f.Add(byte(i), b)
	}
	secret, _ := NewSecret()
	f.Fuzz(func(t *testing.T, op byte, reply []byte) {
		h, g := net.Pipe()
		go fakeGuest(g, secret, reply)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := Connect(ctx, h, secret)
		if err != nil {
			t.Fatalf("connect to the fake guest: %v", err)
		}
		defer c.Close()
		switch op % 5 {
		case 0:
			_, _ = c.Exec(ctx, ExecRequest{Args: []string{"x"}, Stdout: io.Discard, Stderr: io.Discard})
		case 1:
			_, _ = c.ReadFile(ctx, "/workspace/x")
		case 2:
			_, _ = c.Stat(ctx, "/workspace/x")
		case 3:
			_ = c.WriteFile(ctx, "/workspace/x", []byte("data"), 0o644)
		case 4:
			_ = c.Ping(ctx)
		}
		if ctx.Err() != nil {
			t.Fatal("the client hung on a hostile reply")
		}
	})
}

// fakeGuest authenticates, then answers the first stream with reply and closes it.
func fakeGuest(conn net.Conn, secret string, reply []byte) {
	defer conn.Close()
	if ServerHandshake(conn, secret) != nil {
		return
	}
	sess, err := yamux.Server(conn, YamuxConfig())
	if err != nil {
		return
	}
	defer sess.Close()
	st, err := sess.AcceptStream()
	if err != nil {
		return
	}
	_ = st.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = ReadFrame(st)
	_, _ = st.Write(reply)
	st.Close()
	// Keep the session up until the host has read the reply and closed it.
	<-sess.CloseChan()
}
