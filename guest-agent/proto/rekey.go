package proto

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// Re-keying a VM restored from a snapshot (warm start). Every VM restored from one
// snapshot starts as the same guest: the same agent secret (the snapshot's), the same
// kernel RNG state, a clock stopped when the snapshot was taken. Before anything else
// the host sends it a Rekey, authenticated with the snapshot's secret: a fresh session
// secret, fresh entropy for the kernel RNG, the current time, and the per-stage part of
// the boot config that a cold boot reads from fw_cfg. An agent booted with
// BootConfig.Warm accepts nothing but a re-key as its first exchange, and after it only
// the new secret: the host then runs the ordinary handshake with that secret on the
// same connection. The exchange:
//
//	host  → guest: Hello{magic: voidbox-rekey, version, nonce}
//	guest → host:  Hello{magic: voidbox-agent, version, nonce}          (or error, then close)
//	host  → guest: FrameRequest rekeyMessage{rekey: JSON, proof: HMAC(old, "rekey" | hostNonce | guestNonce | JSON)}
//	guest → host:  Hello{ok, proof: HMAC(old, "rekeyed" | hostNonce | guestNonce | JSON)} (or error, then close)
//
// The guest's nonce comes from a kernel RNG every restored VM shares until the re-key,
// so it does not stop a replay to another VM of the same snapshot; what does is that
// the channel is private to the host (a unix socket in a 0700 state directory), and a
// replayed re-key would only hand that VM a secret its attacker already knows.

// rekeyMagic opens a re-key instead of a handshake.
const rekeyMagic = "voidbox-rekey"

// WarmIdleMarker is what a warm agent logs on the console when it starts waiting for
// the re-key: the point where the host takes the snapshot.
const WarmIdleMarker = "waiting for the host's re-key (warm snapshot point)"

// Entropy bounds of a Rekey, in bytes.
const (
	MinRekeyEntropy = 32
	MaxRekeyEntropy = 512
)

// Rekey is what a restored guest takes over from the host before its first exec.
type Rekey struct {
	Secret   string `json:"s"` // the new session secret (NewSecret)
	Entropy  []byte `json:"e"` // mixed into the kernel RNG, which is then reseeded
	UnixNano int64  `json:"t"` // the host's wall clock, to set the guest's from
	// The per-stage boot config (BootConfig's fields of the same names).
	Hostname string   `json:"h,omitempty"`
	Allow    []string `json:"a,omitempty"`
	Debug    bool     `json:"d,omitempty"`
}

// Validate reports the first field a guest must not take.
func (r Rekey) Validate() error {
	if len(r.Entropy) < MinRekeyEntropy || len(r.Entropy) > MaxRekeyEntropy {
		return fmt.Errorf("re-key entropy is %d bytes, want %d to %d", len(r.Entropy), MinRekeyEntropy, MaxRekeyEntropy)
	}
	if r.UnixNano <= 0 {
		return fmt.Errorf("re-key time %d is not a wall clock time", r.UnixNano)
	}
	// The fields it shares with the boot config follow the boot config's rules.
	c := BootConfig{Version: BootVersion, Secret: r.Secret, Hostname: r.Hostname, Allow: r.Allow}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("re-key: %w", err)
	}
	return nil
}

// rekeyMessage is the host's re-key on the wire.
type rekeyMessage struct {
	Rekey []byte `json:"rekey"` // Rekey as JSON: the proof covers these exact bytes
	Proof string `json:"proof"`
}

func rekeyProof(key []byte, role, hostNonce, guestNonce string, payload []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role + "\x00" + hostNonce + "\x00" + guestNonce + "\x00"))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// DecodeRekey parses a Rekey strictly (bounded, no unknown fields) and validates it.
func DecodeRekey(js []byte) (Rekey, error) {
	var r Rekey
	if err := DecodeJSON(js, &r); err != nil {
		return Rekey{}, fmt.Errorf("decode re-key: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Rekey{}, err
	}
	return r, nil
}

// ErrNotRekey is wrapped by ServerRekey when the host opened with an ordinary
// handshake: a warm agent takes a re-key first.
var ErrNotRekey = errors.New("this agent was restored from a snapshot and takes a re-key before any handshake")

// ServerRekey runs the guest side of a re-key on rw, authenticated with the current
// secret old. It returns the Rekey only when the host proved knowledge of old; the
// caller applies it and then runs ServerHandshake with Rekey.Secret.
func ServerRekey(rw io.ReadWriter, old string) (Rekey, error) {
	key, err := decodeSecret(old)
	if err != nil {
		return Rekey{}, err
	}
	h, err := ReadHello(rw)
	if err != nil {
		return Rekey{}, err
	}
	if h.Magic != rekeyMagic {
		_ = WriteHello(rw, Hello{Magic: guestMagic, Version: Version, Error: ErrNotRekey.Error()})
		return Rekey{}, fmt.Errorf("%w (peer magic %q)", ErrNotRekey, textfmt.Clip(h.Magic, 40, "..."))
	}
	if h.Version != Version {
		msg := versionMismatch(Version, h.Version, "guest agent")
		_ = WriteHello(rw, Hello{Magic: guestMagic, Version: Version, Error: msg})
		return Rekey{}, errors.New(msg)
	}
	if err := checkNonce(h.Nonce); err != nil {
		return Rekey{}, err
	}
	guestNonce := newNonce()
	if err := WriteHello(rw, Hello{Magic: guestMagic, Version: Version, Nonce: guestNonce}); err != nil {
		return Rekey{}, fmt.Errorf("write re-key: %w", err)
	}
	f, err := ReadFrame(rw)
	if err != nil {
		return Rekey{}, fmt.Errorf("read re-key: %w", noEOF(err))
	}
	var msg rekeyMessage
	if f.Type != FrameRequest {
		return Rekey{}, fmt.Errorf("re-key: got a %s frame, want a request", f.Type)
	}
	if err := DecodeJSON(f.Payload, &msg); err != nil {
		return Rekey{}, fmt.Errorf("decode re-key message: %w", err)
	}
	if !hmac.Equal([]byte(msg.Proof), []byte(rekeyProof(key, "rekey", h.Nonce, guestNonce, msg.Rekey))) {
		_ = WriteHello(rw, Hello{Error: "authentication failed"})
		return Rekey{}, ErrAuth
	}
	r, err := DecodeRekey(msg.Rekey)
	if err != nil {
		_ = WriteHello(rw, Hello{Error: err.Error()})
		return Rekey{}, err
	}
	if err := WriteHello(rw, Hello{OK: true, Proof: rekeyProof(key, "rekeyed", h.Nonce, guestNonce, msg.Rekey)}); err != nil {
		return Rekey{}, fmt.Errorf("write re-key: %w", err)
	}
	return r, nil
}

// ClientRekey runs the host side of a re-key on rw: old is the secret the guest has
// (the snapshot's), r what it takes over.
func ClientRekey(rw io.ReadWriter, old string, r Rekey) error {
	key, err := decodeSecret(old)
	if err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	payload := marshal(r)
	hostNonce := newNonce()
	if err := WriteHello(rw, Hello{Magic: rekeyMagic, Version: Version, Nonce: hostNonce}); err != nil {
		return fmt.Errorf("write re-key: %w", err)
	}
	g, err := ReadHello(rw)
	if err != nil {
		return err
	}
	if g.Magic != guestMagic {
		return fmt.Errorf("re-key: peer magic %q, want %q (is the guest running voidbox-agent?)", textfmt.Clip(g.Magic, 40, "..."), guestMagic)
	}
	if g.Error != "" {
		return fmt.Errorf("guest agent refused the re-key: %s", textfmt.Clip(g.Error, 400, "..."))
	}
	if g.Version != Version {
		return errors.New(versionMismatch(Version, g.Version, "host"))
	}
	if err := checkNonce(g.Nonce); err != nil {
		return err
	}
	msg := rekeyMessage{Rekey: payload, Proof: rekeyProof(key, "rekey", hostNonce, g.Nonce, payload)}
	if err := WriteJSON(rw, FrameRequest, msg); err != nil {
		return fmt.Errorf("write re-key: %w", err)
	}
	ack, err := ReadHello(rw)
	if err != nil {
		return err
	}
	if !ack.OK {
		if ack.Error == "authentication failed" {
			return ErrAuth
		}
		return fmt.Errorf("guest agent refused the re-key: %s", textfmt.Clip(ack.Error, 400, "..."))
	}
	if !hmac.Equal([]byte(ack.Proof), []byte(rekeyProof(key, "rekeyed", hostNonce, g.Nonce, payload))) {
		return errors.New("re-key: the guest did not prove knowledge of the snapshot's secret")
	}
	return nil
}

// ConnectRekeyed re-keys the restored guest on conn (ClientRekey with old, the
// snapshot's secret) and then opens the session with the new secret (Connect). conn
// is closed on failure.
func ConnectRekeyed(ctx context.Context, conn net.Conn, old string, r Rekey) (*Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err := ClientRekey(conn, old, r)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent re-key: %w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("agent re-key: %w", err)
	}
	return Connect(ctx, conn, r.Secret)
}
