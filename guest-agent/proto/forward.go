package proto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/voidbox/voidbox/internal/termsafe"
)

// Forwards: a TCP port on the guest's loopback that the agent carries to the host
// over the agent session, so a box with no network can still reach one service the
// host offers it (the LLM credential proxy) and nothing else. The guest opens a
// yamux stream per accepted connection, names the forward in a FrameOpen message,
// and both ends then exchange FrameData chunks, a FrameEnd for a half-close, and
// close the stream when both directions are done. The name is all the guest says:
// what the host dials for it is the host's registered Dialer, nothing else.

// Forward bounds.
const (
	// MaxForwards bounds the forwards a boot config may carry.
	MaxForwards = 8
	// MaxForwardConns bounds the connections the guest carries at once per forward;
	// more are closed as soon as they are accepted.
	MaxForwardConns = 64
	// MaxHostForwardConns bounds the guest-opened streams the host handles at once
	// (every forward at its limit); more wait to be accepted, in yamux's accept
	// backlog, which the guest cannot overrun (its unacknowledged opens are bounded).
	MaxHostForwardConns = MaxForwards * MaxForwardConns
	// ForwardOpenTimeout bounds how long the host waits for a guest-opened stream's
	// open message before closing it.
	ForwardOpenTimeout = 5 * time.Second
	// forwardDialTimeout bounds the host's dial for one forwarded connection.
	forwardDialTimeout = 30 * time.Second
	// forwardChunk is the largest FrameData payload a splice writes.
	forwardChunk   = 32 << 10
	maxForwardName = 32
)

// Forward is one guest loopback port (127.0.0.1:Port) that the agent forwards to the
// host's Dialer registered under Name (Client.ServeForwards).
type Forward struct {
	Name string `json:"n"`
	Port uint16 `json:"p"`
}

// CheckForwardName reports what is wrong with name as a forward's name: 1 to 32
// lower-case letters, digits and '-'.
func CheckForwardName(name string) error {
	if name == "" || len(name) > maxForwardName {
		return fmt.Errorf("forward name %q must be 1 to %d characters", name, maxForwardName)
	}
	for _, r := range name {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
			return fmt.Errorf("forward name %q: only lower-case letters, digits and '-' are allowed", name)
		}
	}
	return nil
}

// validateForwards checks a boot config's forwards: few, named, each name and port
// once, and no port that is one of the agent's own channel ports (VsockPort,
// NetVsockPort): those are vsock, not TCP, but a console or a VMM map that shows
// the same number for two things misleads whoever debugs it.
func validateForwards(fs []Forward) error {
	if len(fs) > MaxForwards {
		return fmt.Errorf("boot config has %d forwards, at most %d", len(fs), MaxForwards)
	}
	names := map[string]bool{}
	ports := map[uint16]bool{}
	for i, f := range fs {
		if err := CheckForwardName(f.Name); err != nil {
			return fmt.Errorf("boot config forward %d: %w", i, err)
		}
		switch f.Port {
		case 0:
			return fmt.Errorf("boot config forward %d (%s): port 0, want 1 to 65535", i, f.Name)
		case VsockPort, NetVsockPort:
			return fmt.Errorf("boot config forward %d (%s): port %d is one of the agent's own channel ports (%d, %d); pick another", i, f.Name, f.Port, VsockPort, NetVsockPort)
		}
		if names[f.Name] {
			return fmt.Errorf("boot config forward %d: name %q is used twice", i, f.Name)
		}
		if ports[f.Port] {
			return fmt.Errorf("boot config forward %d (%s): port %d is used twice", i, f.Name, f.Port)
		}
		names[f.Name], ports[f.Port] = true, true
	}
	return nil
}

// ForwardOpen is the payload of FrameOpen, the first frame of a guest-opened stream.
type ForwardOpen struct {
	Name string `json:"name"`
}

// OpenForward opens a stream to the host on the guest's session for one accepted
// connection of the forward name, and sends its open message.
func OpenForward(sess *yamux.Session, name string) (*yamux.Stream, error) {
	st, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("forward %s: open a stream to the host: %w", name, err)
	}
	if err := WriteJSON(st, FrameOpen, ForwardOpen{Name: name}); err != nil {
		st.Close()
		return nil, fmt.Errorf("forward %s: send the open message: %w", name, err)
	}
	return st, nil
}

// readForwardOpen reads and validates a guest-opened stream's open message, waiting
// at most timeout for it.
func readForwardOpen(st net.Conn, timeout time.Duration) (string, error) {
	_ = st.SetReadDeadline(time.Now().Add(timeout))
	f, err := ReadFrame(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		return "", fmt.Errorf("read the forward open message (within %v): %w", timeout, noEOF(err))
	}
	if f.Type != FrameOpen {
		return "", fmt.Errorf("first frame on a guest-opened stream must be %s, got %s", FrameOpen, f.Type)
	}
	var o ForwardOpen
	if err := DecodeJSON(f.Payload, &o); err != nil {
		return "", fmt.Errorf("decode the forward open message: %w", err)
	}
	if err := CheckForwardName(o.Name); err != nil {
		return "", err
	}
	return o.Name, nil
}

// Splice carries one forwarded connection: conn's bytes go to st as FrameData, its
// EOF as FrameEnd; st's FrameData is written to conn, and its FrameEnd half-closes
// conn (CloseWrite, when conn has it). It returns when both directions are done
// (nil), or at the first failure or ctx's end, which end both (the error). A
// FrameError from the peer (a refused forward) is returned as a *ForwardRefused.
// conn and st are closed on return.
func Splice(ctx context.Context, conn, st net.Conn) error {
	var once sync.Once
	cut := false // ctx's end, not a failure of either side, ended the connection
	end := func(byCtx bool) {
		once.Do(func() {
			cut = byCtx
			_ = conn.Close()
			// A yamux Close only half-closes: a read on st would wait for the peer.
			_ = st.SetDeadline(time.Unix(1, 0))
			_ = st.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() { end(true) })
	defer stop()
	errc := make(chan error, 1)
	go func() {
		err := spliceOut(st, conn)
		if err != nil {
			end(false) // spliceIn may be waiting on a peer that waits for us
		}
		errc <- err
	}()
	errs := [2]error{spliceIn(conn, st), nil}
	if errs[0] != nil {
		end(false)
	}
	errs[1] = <-errc
	end(false) // waits for an end ctx started, so cut is settled
	if cut {
		return fmt.Errorf("forwarded connection: %w", ctx.Err())
	}
	return errors.Join(errs[0], errs[1])
}

// spliceOut copies conn to st as FrameData chunks and ends with FrameEnd at conn's EOF.
func spliceOut(st io.Writer, conn io.Reader) error {
	buf := make([]byte, forwardChunk)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if werr := WriteFrame(st, FrameData, buf[:n]); werr != nil {
				return fmt.Errorf("forwarded connection: send to the peer: %w", werr)
			}
		}
		if err == io.EOF {
			if werr := WriteFrame(st, FrameEnd, nil); werr != nil {
				return fmt.Errorf("forwarded connection: send the half-close: %w", werr)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("forwarded connection: read: %w", err)
		}
	}
}

// spliceIn writes st's FrameData to conn until FrameEnd, which half-closes conn.
func spliceIn(conn net.Conn, st io.Reader) error {
	for {
		f, err := ReadFrame(st)
		if err != nil {
			return fmt.Errorf("forwarded connection: the peer's stream ended before its end frame: %w", noEOF(err))
		}
		switch f.Type {
		case FrameData:
			if _, err := conn.Write(f.Payload); err != nil {
				return fmt.Errorf("forwarded connection: write: %w", err)
			}
		case FrameEnd:
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					return fmt.Errorf("forwarded connection: half-close: %w", err)
				}
			}
			return nil
		case FrameError:
			var e RemoteError
			if err := DecodeJSON(f.Payload, &e); err != nil {
				return fmt.Errorf("forwarded connection: decode the peer's refusal: %w", err)
			}
			return &ForwardRefused{Code: e.Code, Message: e.Message}
		default:
			return fmt.Errorf("forwarded connection: unexpected %s frame", f.Type)
		}
	}
}

// ForwardRefused is the host's refusal of a forwarded connection (an unknown name,
// a failed dial), as the guest's Splice returns it.
type ForwardRefused struct {
	Code    string // a RemoteError code: CodeNotFound, CodeBadRequest, CodeIO
	Message string
}

func (e *ForwardRefused) Error() string { return "refused by the host: " + termsafe.Clean(e.Message) }

// Dialer connects the host end of one forwarded connection. ctx bounds the dial.
type Dialer func(ctx context.Context) (net.Conn, error)

// ForwardStats counts the guest-opened streams a Client saw.
type ForwardStats struct {
	Served     int64 // spliced to a registered Dialer
	Refused    int64 // no valid open message in time, an unknown name, or none served
	DialFailed int64 // the registered Dialer failed
}

// hostForwards is a Client's side of the guest's forwards. The Client accepts every
// stream the guest opens, served or not: yamux closes the whole session when a
// stream it opened is not accepted in time (StreamOpenTimeout). Only a guest that
// keeps MaxHostForwardConns streams busy and opens more waits that long, and then
// ends its own session.
type hostForwards struct {
	slots       chan struct{} // a token per stream being handled
	openTimeout time.Duration

	mu      sync.Mutex
	serving *forwardSet // nil when ServeForwards is not running

	served, refused, dialFailed atomic.Int64
}

// forwardSet is one ServeForwards call's dialers and the connections it carries.
type forwardSet struct {
	ctx  context.Context
	dial map[string]Dialer
	wg   sync.WaitGroup
}

func newHostForwards(limit int, openTimeout time.Duration) *hostForwards {
	return &hostForwards{slots: make(chan struct{}, limit), openTimeout: openTimeout}
}

// acceptForwards handles the guest's streams until the session ends, at most
// len(slots) at once: a stream is accepted when a slot is free.
func (c *Client) acceptForwards() {
	for {
		select {
		case c.fwd.slots <- struct{}{}:
		case <-c.sess.CloseChan():
			return
		}
		st, err := c.sess.AcceptStream()
		if err != nil {
			<-c.fwd.slots
			return
		}
		go c.handleForward(st)
	}
}

// handleForward serves one guest-opened stream, and holds its slot until the stream
// is gone (the guest's close, or yamux's StreamCloseTimeout), reading and dropping
// whatever still arrives: however fast a guest opens streams, none is left behind
// holding data.
func (c *Client) handleForward(st *yamux.Stream) {
	defer func() { <-c.fwd.slots }()
	c.serveForward(st)
	_ = st.Close()
	_ = st.SetReadDeadline(time.Time{})
	_, _ = io.Copy(io.Discard, st)
}

// serveForward reads a guest-opened stream's open message and splices the stream
// to the Dialer registered under its name, or refuses it.
func (c *Client) serveForward(st *yamux.Stream) {
	name, err := readForwardOpen(st, c.fwd.openTimeout)
	if err != nil {
		c.refuseForward(st, CodeBadRequest, err.Error())
		return
	}
	c.fwd.mu.Lock()
	set := c.fwd.serving
	if set != nil {
		set.wg.Add(1)
	}
	c.fwd.mu.Unlock()
	if set == nil {
		c.refuseForward(st, CodeNotFound, fmt.Sprintf("forward %q: the host serves no forwards", name))
		return
	}
	defer set.wg.Done()
	dial, ok := set.dial[name]
	if !ok {
		c.refuseForward(st, CodeNotFound, fmt.Sprintf("forward %q is not served by the host (it serves %s)", name, strings.Join(slices.Sorted(maps.Keys(set.dial)), ", ")))
		return
	}
	dctx, cancel := context.WithTimeout(set.ctx, forwardDialTimeout)
	conn, err := dial(dctx)
	cancel()
	if err != nil {
		c.fwd.dialFailed.Add(1)
		sendRefusal(st, CodeIO, fmt.Sprintf("forward %q: the host could not connect: %v", name, err))
		return
	}
	c.fwd.served.Add(1)
	_ = Splice(set.ctx, conn, st)
}

func (c *Client) refuseForward(st *yamux.Stream, code, msg string) {
	c.fwd.refused.Add(1)
	sendRefusal(st, code, msg)
}

// sendRefusal tells the guest why its stream ends (its console says so), then
// closes the stream; a guest that does not read cannot hold the write up.
func sendRefusal(st *yamux.Stream, code, msg string) {
	_ = st.SetWriteDeadline(time.Now().Add(ForwardOpenTimeout))
	_ = WriteJSON(st, FrameError, RemoteError{Code: code, Message: msg})
	_ = st.Close()
}

// ServeForwards carries the guest's forwarded connections (BootConfig.Forwards) to
// dial[name] until ctx ends or the session does, and then ends those connections
// and waits for them. A stream that names no forward in dial, or no valid one in
// ForwardOpenTimeout, is closed without dialing anything. One call at a time; it
// returns nil when the session ended, else ctx's error.
func (c *Client) ServeForwards(ctx context.Context, dial map[string]Dialer) error {
	for name, d := range dial {
		if err := CheckForwardName(name); err != nil {
			return fmt.Errorf("serve forwards: %w", err)
		}
		if d == nil {
			return fmt.Errorf("serve forwards: forward %q has a nil Dialer", name)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	set := &forwardSet{ctx: sctx, dial: maps.Clone(dial)}
	c.fwd.mu.Lock()
	if c.fwd.serving != nil {
		c.fwd.mu.Unlock()
		return errors.New("serve forwards: already serving this session's forwards")
	}
	c.fwd.serving = set
	c.fwd.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-c.sess.CloseChan():
	}
	sessionEnded := c.sess.IsClosed()
	c.fwd.mu.Lock()
	c.fwd.serving = nil
	c.fwd.mu.Unlock()
	cancel()
	set.wg.Wait()
	if !sessionEnded {
		return fmt.Errorf("serve forwards: %w", ctx.Err())
	}
	return nil
}

// ForwardStats returns the counts of the guest-opened streams so far.
func (c *Client) ForwardStats() ForwardStats {
	return ForwardStats{
		Served:     c.fwd.served.Load(),
		Refused:    c.fwd.refused.Load(),
		DialFailed: c.fwd.dialFailed.Load(),
	}
}
