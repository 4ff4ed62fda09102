package proto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// Version is the protocol version spoken after the handshake. Bump it on any
// incompatible change to frames or requests; both sides refuse a mismatch by name.
// 2: exec requests carry stats_ms and the guest answers with stats frames.
const Version = 2

// Handshake magics: the host and the guest each prove who is speaking.
const (
	hostMagic  = "voidbox-host"
	guestMagic = "voidbox-agent"
)

// SerialPortName is the virtio-serial port name the agent listens on; VsockPort is
// the AF_VSOCK port it listens on when the VMM provides vsock.
const (
	SerialPortName = "voidbox.agent"
	VsockPort      = 1024
)

// ErrAuth means the peer did not prove knowledge of the per-VM secret.
var ErrAuth = errors.New("agent handshake: authentication failed (wrong per-VM secret)")

// Hello is one handshake message. The exchange, host speaking first so no guest
// bytes are lost on a transport the host has not connected yet:
//
//	host  → guest: {magic: voidbox-host, version, nonce}
//	guest → host:  {magic: voidbox-agent, version, nonce}   (or error, then close)
//	host  → guest: {proof: HMAC(secret, "host" | hostNonce | guestNonce)}
//	guest → host:  {ok, proof: HMAC(secret, "guest" | hostNonce | guestNonce)} (or error, then close)
type Hello struct {
	Magic   string `json:"magic,omitempty"`
	Version int    `json:"version,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
	Proof   string `json:"proof,omitempty"`
	OK      bool   `json:"ok,omitempty"`
	Error   string `json:"error,omitempty"`
}

// WriteHello writes one length-prefixed handshake message.
func WriteHello(w io.Writer, h Hello) error {
	b := marshal(h)
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err := w.Write(buf)
	return err
}

// ReadHello reads one length-prefixed handshake message, bounded by MaxHello.
func ReadHello(r io.Reader) (Hello, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return Hello{}, fmt.Errorf("read handshake: %w", err)
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > MaxHello {
		return Hello{}, fmt.Errorf("handshake message announces %d bytes, at most %d allowed (is the peer a voidbox agent?)", n, MaxHello)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return Hello{}, fmt.Errorf("read handshake: %w", noEOF(err))
	}
	var h Hello
	if err := strictUnmarshal(b, &h); err != nil {
		return Hello{}, fmt.Errorf("decode handshake: %w", err)
	}
	return h, nil
}

func newNonce() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("proto: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

func proof(secret []byte, role, hostNonce, guestNonce string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role + "\x00" + hostNonce + "\x00" + guestNonce))
	return hex.EncodeToString(m.Sum(nil))
}

func checkNonce(n string) error {
	if b, err := hex.DecodeString(n); err != nil || len(b) != 16 {
		return fmt.Errorf("handshake nonce must be 32 hex digits, got %q", textfmt.Clip(n, 40, "..."))
	}
	return nil
}

func versionMismatch(local, remote int, localName string) string {
	return fmt.Sprintf("protocol version mismatch: %s speaks version %d, peer speaks %d; rebuild the guest image with this voidbox", localName, local, remote)
}

// ServerHandshake runs the guest side of the handshake on rw. It returns nil only
// when the host proved knowledge of secret; otherwise it has already told the host
// why (where that is safe) and the caller must close the transport.
func ServerHandshake(rw io.ReadWriter, secret string) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	h, err := ReadHello(rw)
	if err != nil {
		return err
	}
	if h.Magic != hostMagic {
		return fmt.Errorf("handshake: peer magic %q, want %q", textfmt.Clip(h.Magic, 40, "..."), hostMagic)
	}
	if h.Version != Version {
		msg := versionMismatch(Version, h.Version, "guest agent")
		_ = WriteHello(rw, Hello{Magic: guestMagic, Version: Version, Error: msg})
		return errors.New(msg)
	}
	if err := checkNonce(h.Nonce); err != nil {
		return err
	}
	guestNonce := newNonce()
	if err := WriteHello(rw, Hello{Magic: guestMagic, Version: Version, Nonce: guestNonce}); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	p, err := ReadHello(rw)
	if err != nil {
		return err
	}
	want := proof(key, "host", h.Nonce, guestNonce)
	if !hmac.Equal([]byte(p.Proof), []byte(want)) {
		_ = WriteHello(rw, Hello{Error: "authentication failed"})
		return ErrAuth
	}
	if err := WriteHello(rw, Hello{OK: true, Proof: proof(key, "guest", h.Nonce, guestNonce)}); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	return nil
}

// ClientHandshake runs the host side of the handshake on rw.
func ClientHandshake(rw io.ReadWriter, secret string) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	hostNonce := newNonce()
	if err := WriteHello(rw, Hello{Magic: hostMagic, Version: Version, Nonce: hostNonce}); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	g, err := ReadHello(rw)
	if err != nil {
		return err
	}
	if g.Magic != guestMagic {
		return fmt.Errorf("handshake: peer magic %q, want %q (is the guest running voidbox-agent?)", textfmt.Clip(g.Magic, 40, "..."), guestMagic)
	}
	if g.Error != "" {
		return fmt.Errorf("guest agent refused the handshake: %s", textfmt.Clip(g.Error, 400, "..."))
	}
	if g.Version != Version {
		return errors.New(versionMismatch(Version, g.Version, "host"))
	}
	if err := checkNonce(g.Nonce); err != nil {
		return err
	}
	if err := WriteHello(rw, Hello{Proof: proof(key, "host", hostNonce, g.Nonce)}); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	r, err := ReadHello(rw)
	if err != nil {
		return err
	}
	if !r.OK {
		if r.Error == "authentication failed" {
			return ErrAuth
		}
		return fmt.Errorf("guest agent refused the handshake: %s", textfmt.Clip(r.Error, 400, "..."))
	}
	// Mutual: a process that merely sits on the transport cannot impersonate the agent.
	if !hmac.Equal([]byte(r.Proof), []byte(proof(key, "guest", hostNonce, g.Nonce))) {
		return errors.New("agent handshake: the guest did not prove knowledge of the per-VM secret")
	}
	return nil
}
