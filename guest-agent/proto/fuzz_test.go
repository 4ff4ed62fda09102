package proto

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	_ = WriteFrame(&b, FrameStdout, []byte("hello"))
	_ = WriteJSON(&b, FrameExit, ExitStatus{ExitCode: 1})
	f.Add(b.Bytes())
	f.Add([]byte{1, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{4, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for range 64 {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(fr.Payload))
			}
			switch fr.Type {
			case FrameRequest:
				_, _ = DecodeRequest(fr.Payload)
			case FrameExit:
				var s ExitStatus
				_ = DecodeJSON(fr.Payload, &s)
			case FrameError:
				_ = remoteErr(fr.Payload)
			case FrameOK:
				var resp Response
				_ = DecodeJSON(fr.Payload, &resp)
			}
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"exec","args":["sh","-c","echo hi"],"env":{"A":"b"},"dir":"/workspace","timeout_ms":1000}`))
	f.Add([]byte(`{"op":"write_file","path":"/workspace/x","mode":420,"size":3}`))
	f.Add([]byte(`{"op":"cancel","stream":3}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeRequest(in)
		if err == nil && r.Op == OpExec && (len(r.Args) == 0 || r.Args[0] == "") {
			t.Fatal("exec request without a program accepted")
		}
	})
}

func FuzzReadHello(f *testing.F) {
	var b bytes.Buffer
	_ = WriteHello(&b, Hello{Magic: hostMagic, Version: Version, Nonce: newNonce()})
	f.Add(b.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = ReadHello(bytes.NewReader(in))
	})
}

// scripted is a transport whose peer says exactly in and ignores what it is told.
type scripted struct{ io.Reader }

func (scripted) Write(p []byte) (int, error) { return len(p), nil }

// FuzzServerHandshake feeds arbitrary bytes to the guest side of the handshake: it
// must never panic and never accept without the secret.
func FuzzServerHandshake(f *testing.F) {
	var b bytes.Buffer
	_ = WriteHello(&b, Hello{Magic: hostMagic, Version: Version, Nonce: newNonce()})
	_ = WriteHello(&b, Hello{Proof: "00"})
	f.Add(b.Bytes())
	secret, _ := NewSecret()
	f.Fuzz(func(t *testing.T, in []byte) {
		if err := ServerHandshake(scripted{bytes.NewReader(in)}, secret); err == nil {
			t.Fatal("handshake accepted without knowledge of the secret")
		}
	})
}

// FuzzClientHandshake: a hostile guest must not crash the host or pass as the agent.
func FuzzClientHandshake(f *testing.F) {
	var b bytes.Buffer
	_ = WriteHello(&b, Hello{Magic: guestMagic, Version: Version, Nonce: newNonce()})
	_ = WriteHello(&b, Hello{OK: true, Proof: "00"})
	f.Add(b.Bytes())
	secret, _ := NewSecret()
	f.Fuzz(func(t *testing.T, in []byte) {
		if err := ClientHandshake(scripted{bytes.NewReader(in)}, secret); err == nil {
			t.Fatal("host accepted a guest that does not know the secret")
		}
	})
}

func FuzzParseKernelCmdline(f *testing.F) {
	secret, _ := NewSecret()
	arg, _ := BootConfig{Secret: secret, Allow: []string{"sh"}}.KernelArg()
	f.Add("console=ttyS0 " + arg)
	f.Add("voidbox.boot=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1}`)))
	f.Add("voidbox.boot= voidbox.boot=")
	f.Fuzz(func(t *testing.T, cmdline string) {
		c, err := ParseKernelCmdline(cmdline)
		if err != nil {
			return
		}
		if c.UID == 0 || c.GID == 0 {
			t.Fatal("parsed config would run stages as root")
		}
		if _, err := decodeSecret(c.Secret); err != nil {
			t.Fatal("accepted config with an invalid secret")
		}
	})
}
