package chv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// AgentPort is the vsock port the guest agent listens on. It equals
// proto.VsockPort in github.com/voidbox/voidbox/guest-agent/proto; it is
// repeated here so the driver does not depend on the wire-protocol package.
const AgentPort uint32 = 1024

// NetPort is the host vsock port the guest agent's TAP forwarder connects to
// (proto.NetVsockPort, repeated for the same reason as AgentPort). Cloud
// Hypervisor hands such a connection to the unix socket "<vsock socket>_1025".
const NetPort uint32 = 1025

// ErrPortRefused means the VMM accepted the hybrid-vsock connection but
// closed it instead of answering OK: nothing in the guest listens on the port
// (yet), or the guest is not up.
var ErrPortRefused = errors.New("guest refused the vsock port")

// maxHandshakeLine bounds the "OK <port>\n" answer; a longer line is not
// Cloud Hypervisor talking.
const maxHandshakeLine = 64

// DialHybrid opens a stream to a guest vsock port through Cloud Hypervisor's
// hybrid-vsock unix socket: it writes "CONNECT <port>\n" and expects
// "OK <hostport>\n". The returned connection is a *net.UnixConn (it supports
// CloseWrite). A refused port returns an error wrapping ErrPortRefused.
func DialHybrid(ctx context.Context, socket string, port uint32) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("chv: vsock dial %s: %w", socket, err)
	}
	// The handshake obeys ctx; the stream after it does not.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = handshake(c, port)
	if !stop() {
		// ctx ended during the handshake; whatever it read is moot.
		c.Close()
		return nil, fmt.Errorf("chv: vsock CONNECT %d on %s: %w", port, socket, ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("chv: vsock CONNECT %d on %s: %w", port, socket, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func handshake(c net.Conn, port uint32) error {
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// Read byte by byte: whatever follows the newline is guest data and must
	// stay in the connection, so no buffered reader may swallow it.
	var line []byte
	var b [1]byte
	for {
		n, err := c.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			if len(line) > maxHandshakeLine {
				return fmt.Errorf("answer longer than %d bytes: %q", maxHandshakeLine, line)
			}
			continue
		}
		if errors.Is(err, io.EOF) || isReset(err) {
			if len(line) == 0 {
				return ErrPortRefused
			}
			return fmt.Errorf("%w (connection closed after %q)", ErrPortRefused, line)
		}
		if err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
	}
	_, err := parseOK(string(line))
	return err
}

func isReset(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && (strings.Contains(se.Error(), "connection reset") || strings.Contains(se.Error(), "broken pipe"))
}

// parseOK parses the VMM's answer to CONNECT (without the newline):
// "OK <hostport>", where hostport is the host-side port number it assigned.
func parseOK(line string) (uint32, error) {
	rest, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return 0, fmt.Errorf("unexpected answer %q, want \"OK <port>\"", line)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("unexpected answer %q: port is not a number", line)
	}
	return uint32(n), nil
}

// GuestSocket is the unix socket on which connections a guest opens to the
// host (CID 2) port arrive: "<socket>_<port>".
func GuestSocket(socket string, port uint32) string {
	return socket + "_" + strconv.FormatUint(uint64(port), 10)
}

// ListenGuest listens for connections the guest opens to host port `port`.
// socket is the VM's hybrid-vsock socket; a stale socket file left by a
// previous VM at the same path is replaced.
func ListenGuest(socket string, port uint32) (net.Listener, error) {
	path := GuestSocket(socket, port)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("chv: listen for guest vsock port %d: %w", port, err)
	}
	return l, nil
}

// cidCounter hands out guest CIDs. It is seeded by the pid so two voidbox
// processes on one host are unlikely to pick the same CIDs; with hybrid vsock
// the CID is only an identifier, but it is kept unique anyway.
var cidCounter atomic.Uint64

func init() { cidCounter.Store(uint64(os.Getpid()) * 4096) }

// CIDs 0-2 are reserved (hypervisor, local, host) and 0xFFFFFFFF is "any".
const (
	minCID   = 3
	cidRange = 0xFFFFFFFF - minCID
)

func nextCID() uint64 { return cidOf(cidCounter.Add(1)) }

func cidOf(n uint64) uint64 { return minCID + n%cidRange }
