package proto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func testRekey(t testing.TB) Rekey {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return Rekey{Secret: s, Entropy: bytes.Repeat([]byte{7}, 32), UnixNano: time.Now().UnixNano(), Hostname: "stage-1", Allow: []string{"echo"}}
}

func TestRekeyRoundTrip(t *testing.T) {
	old, _ := NewSecret()
	want := testRekey(t)
	h, g := net.Pipe()
	defer h.Close()
	got := make(chan Rekey, 1)
	errc := make(chan error, 1)
	go func() {
		r, err := ServerRekey(g, old)
		got <- r
		errc <- err
	}()
	if err := ClientRekey(h, old, want); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Secret != want.Secret || !bytes.Equal(r.Entropy, want.Entropy) || r.UnixNano != want.UnixNano || r.Hostname != want.Hostname || strings.Join(r.Allow, ",") != "echo" {
		t.Fatalf("guest got %+v, want %+v", r, want)
	}
}

func TestRekeyWrongSecretRefused(t *testing.T) {
	old, _ := NewSecret()
	other, _ := NewSecret()
	h, g := net.Pipe()
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := ServerRekey(g, old)
		errc <- err
	}()
	if err := ClientRekey(h, other, testRekey(t)); !errors.Is(err, ErrAuth) {
		t.Fatalf("re-key with another secret = %v, want ErrAuth", err)
	}
	if err := <-errc; !errors.Is(err, ErrAuth) {
		t.Fatalf("guest side = %v, want ErrAuth", err)
	}
}

func TestRekeyRefusesAnOrdinaryHandshake(t *testing.T) {
	old, _ := NewSecret()
	h, g := net.Pipe()
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := ServerRekey(g, old)
		errc <- err
	}()
	// Whoever holds the snapshot's secret may not skip the re-key.
	if err := ClientHandshake(h, old); err == nil || !strings.Contains(err.Error(), "re-key") {
		t.Fatalf("handshake with the old secret = %v, want a refusal naming the re-key", err)
	}
	if err := <-errc; !errors.Is(err, ErrNotRekey) {
		t.Fatalf("guest side = %v, want ErrNotRekey", err)
	}
}

func TestRekeyValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Rekey)
		want string
	}{
		{func(r *Rekey) { r.Entropy = r.Entropy[:31] }, "entropy is 31 bytes"},
		{func(r *Rekey) { r.Entropy = make([]byte, MaxRekeyEntropy+1) }, "entropy is 513 bytes"},
		{func(r *Rekey) { r.UnixNano = 0 }, "time 0"},
		{func(r *Rekey) { r.Secret = "abc" }, "64 hex digits"},
		{func(r *Rekey) { r.Hostname = "a b" }, "hostname"},
		{func(r *Rekey) { r.Allow = []string{""} }, "allow entry"},
	} {
		r := testRekey(t)
		tc.mod(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error with %q", err, tc.want)
		}
	}
}

// FuzzDecodeRekey: any bytes decode to a valid Rekey or an error, never a panic, and a
// decoded Rekey round-trips.
func FuzzDecodeRekey(f *testing.F) {
	f.Add(marshal(testRekey(f)))
	f.Add([]byte(`{"s":"","e":"","t":1}`))
	f.Add([]byte(`{"s":1}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		r, err := DecodeRekey(js)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("DecodeRekey returned an invalid re-key: %v", err)
		}
		if _, err := DecodeRekey(marshal(r)); err != nil {
			t.Fatalf("a decoded re-key does not round-trip: %v", err)
		}
	})
}

// FuzzServerRekey: a hostile host's bytes end the re-key with an error, never a panic
// or a re-key the guest takes without the proof.
func FuzzServerRekey(f *testing.F) {
	var hello bytes.Buffer
	_ = WriteHello(&hello, Hello{Magic: rekeyMagic, Version: Version, Nonce: strings.Repeat("ab", 16)})
	f.Add(hello.Bytes())
	_ = WriteJSON(&hello, FrameRequest, rekeyMessage{Rekey: []byte("{}"), Proof: "x"})
	f.Add(hello.Bytes())
	old, _ := NewSecret()
	f.Fuzz(func(t *testing.T, in []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), io.Discard}
		if _, err := ServerRekey(rw, old); err == nil {
			t.Fatal("the guest took a re-key without its proof")
		}
	})
}
