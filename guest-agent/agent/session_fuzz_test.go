package agent

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/voidbox/voidbox/guest-agent/proto"
)

// FuzzServerStream: after a valid handshake, arbitrary bytes on a request stream must
// not panic the agent or wedge it (Serve returns once the host leaves).
func FuzzServerStream(f *testing.F) {
	var b bytes.Buffer
	_ = proto.WriteJSON(&b, proto.FrameRequest, proto.Request{Op: proto.OpWriteFile, Path: "f", Size: 3})
	_ = proto.WriteFrame(&b, proto.FrameData, []byte("abc"))
	_ = proto.WriteFrame(&b, proto.FrameEnd, nil)
	f.Add(b.Bytes())
	b.Reset()
	_ = proto.WriteJSON(&b, proto.FrameRequest, proto.Request{Op: proto.OpExec, Args: []string{"true"}})
	_ = proto.WriteFrame(&b, proto.FrameStdinEOF, nil)
	f.Add(b.Bytes())
	f.Add([]byte(`{"op":"stat","path":"x"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		secret, _ := proto.NewSecret()
		root := t.TempDir()
		srv, err := NewServer(Options{Secret: secret, Roots: []string{root}, Unconfined: true, Allow: []string{"true"}})
		if err != nil {
			t.Fatal(err)
		}
		h, g := socketPair(t)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(context.Background(), g) }()
		_ = h.SetDeadline(time.Now().Add(10 * time.Second))
		if err := proto.ClientHandshake(h, secret); err != nil {
			t.Fatal(err)
		}
		sess, err := yamux.Client(h, proto.YamuxConfig())
		if err != nil {
			t.Fatal(err)
		}
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write(in)
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		_ = st.Close()
		_, _ = io.Copy(io.Discard, st)
		sess.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after the host left")
		}
	})
}
