package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/voidbox/voidbox/guest-agent/agent"
	"github.com/voidbox/voidbox/guest-agent/proto"
)

// transportWait bounds how long the agent waits for its virtio device to appear
// after the modules loaded (virtio-serial ports are announced asynchronously).
const transportWait = 20 * time.Second

// pollInterval paces the boot-time waits for the agent port (its announcement and
// its device node). They are on the box's start-up path: each wait costs half an
// interval on average, and a check is only a few sysfs reads.
const pollInterval = 2 * time.Millisecond

// hostPollInterval paces the retries while no host is connected to the port. The
// voidbox host connects before the guest boots, so this wait is rarely taken;
// a longer interval keeps a late host from costing the guest CPU time.
const hostPollInterval = 20 * time.Millisecond

// Virtio device ids in /sys/bus/virtio/devices/*/device.
const (
	virtioConsoleID = "0x0003"
	virtioVsockID   = "0x0013"
)

// sessionWait bounds how long the agent waits for the host's session. The host
// connects as soon as the VMM runs and gives up after runtime.BootTimeout (2
// minutes); a guest still without a session long after that was abandoned (its
// voidbox died before connecting: a VMM that dropped privileges no longer dies
// with voidbox) and powers itself off instead of running until the next sweep.
const sessionWait = 5 * time.Minute

// serve finds the agent transport and serves the host until the session ends,
// or until sessionWait passes without one.
func serve(ctx context.Context, c *console, srv *agent.Server) error {
	return serveWithin(ctx, c, srv, sessionWait, serveTransport)
}

// serveWithin runs serveFn, giving up when no session was established within wait.
func serveWithin(ctx context.Context, c *console, srv *agent.Server, wait time.Duration,
	serveFn func(context.Context, *console, *agent.Server) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serveFn(ctx, c, srv) }()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-served:
		return err
	case <-timer.C:
		if !srv.Established() {
			// A transport read may still be blocked; powering off ends it.
			return fmt.Errorf("no host session after %v: the host is gone", wait)
		}
		return <-served
	}
}

// serveTransport finds the agent transport and serves the host there.
func serveTransport(ctx context.Context, c *console, srv *agent.Server) error {
	deadline := time.Now().Add(transportWait)
	for {
		if port, ok := findSerialPort(); ok {
			c.logf("serving on virtio-serial %s", port)
			c.endBatch()
			return serveSerial(ctx, c, srv, port)
		}
		if hasVirtioDevice(virtioVsockID) && !hasVirtioDevice(virtioConsoleID) {
			c.logf("serving on vsock port %d", proto.VsockPort)
			c.endBatch()
			return serveVsock(ctx, c, srv)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no agent transport after %v: no virtio-serial port named %q in /sys/class/virtio-ports and no virtio-vsock device (check the VMM devices and that virtio_console or vmw_vsock_virtio_transport is in /etc/voidbox/modules)", transportWait, proto.SerialPortName)
		}
		time.Sleep(pollInterval)
	}
}

func hasVirtioDevice(id string) bool {
	ids, _ := filepath.Glob("/sys/bus/virtio/devices/*/device")
	for _, p := range ids {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == id {
			return true
		}
	}
	return false
}

// findSerialPort returns /dev/vportNpM for the port named proto.SerialPortName
// (there is no udev, so no /dev/virtio-ports symlink).
func findSerialPort() (string, bool) { return findPort(proto.SerialPortName) }

func serveSerial(ctx context.Context, c *console, srv *agent.Server, dev string) error {
	f, err := openPort(dev)
	if err != nil {
		return fmt.Errorf("open agent port: %w", err)
	}
	err = srv.Serve(ctx, &serialConn{f: f})
	if errors.Is(err, agent.ErrHandshake) {
		return err // only one host end exists: a failed handshake ends the VM
	}
	c.logf("host closed the session")
	return err
}

// serialConn adapts a virtio-serial port. Until the host first sends something,
// reads return EOF whenever no host is connected; that means "not yet", so they are
// retried. After the first byte, EOF means the host went away.
type serialConn struct {
	f    io.ReadWriteCloser
	mu   sync.Mutex
	seen bool
}

func (s *serialConn) Read(p []byte) (int, error) {
	for {
		n, err := s.f.Read(p)
		s.mu.Lock()
		if n > 0 {
			s.seen = true
		}
		seen := s.seen
		s.mu.Unlock()
		if n > 0 || seen || err != io.EOF {
			return n, err
		}
		time.Sleep(hostPollInterval)
	}
}

func (s *serialConn) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s *serialConn) Close() error                { return s.f.Close() }

// serveVsock listens on the agent's vsock port and serves the host there.
func serveVsock(ctx context.Context, c *console, srv *agent.Server) error {
	l, err := vsock.Listen(proto.VsockPort, nil)
	if err != nil {
		return fmt.Errorf("listen on vsock port %d: %w", proto.VsockPort, err)
	}
	return serveListener(ctx, c, srv, l)
}

// serveListener accepts host connections on l: an unauthenticated one is dropped
// and the agent keeps listening; so is every connection after the boot's one
// authenticated session (the Server refuses and logs those); the end of that
// session (the host went away) ends serveListener, which powers the VM off.
func serveListener(ctx context.Context, c *console, srv *agent.Server, l net.Listener) error {
	defer l.Close()
	ended := make(chan error, 1)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				select {
				case ended <- fmt.Errorf("accept agent connection: %w", err):
				default:
				}
				return
			}
			go func() {
				err := srv.Serve(ctx, conn)
				if errors.Is(err, agent.ErrSessionTaken) {
					return // the Server logged the refusal
				}
				if errors.Is(err, agent.ErrHandshake) {
					c.logf("rejected connection from %s: %v", conn.RemoteAddr(), err)
					return
				}
				c.logf("host closed the session")
				select {
				case ended <- err:
				default:
				}
			}()
		}
	}()
	return <-ended
}
