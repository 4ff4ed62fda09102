package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/voidbox/voidbox/guest-agent/proto"
)

// ForwardListener is one forward's listening socket on the guest's loopback
// (BootConfig.Forwards): each connection accepted on it is carried to the host over
// the session (proto.OpenForward, proto.Splice).
type ForwardListener struct {
	proto.Forward
	Listener net.Listener
}

// ListenForwards listens on 127.0.0.1:Port for each forward. The agent does it at
// boot, before any stage runs, so no stage can take a forward's port first.
func ListenForwards(fs []proto.Forward) ([]ForwardListener, error) {
	var ls []ForwardListener
	for _, f := range fs {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(f.Port)))
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			for _, o := range ls {
				o.Listener.Close()
			}
			return nil, fmt.Errorf("forward %s: listen on %s: %w", f.Name, addr, err)
		}
		ls = append(ls, ForwardListener{Forward: f, Listener: l})
	}
	return ls, nil
}

// acceptRetry paces Accept after an error that is not the listener's end (e.g. the
// agent is out of file descriptors), so the loop neither spins nor gives up.
const acceptRetry = 100 * time.Millisecond

// forwardCounts are one forward's connections, logged when the session ends.
type forwardCounts struct {
	conns, overLimit, failed atomic.Int64
	firstFailure             atomic.Pointer[string]
}

// startForwards serves the forward listeners on the session: each accepted
// connection becomes a stream to the host, at most Options.ForwardConns at once per forward
// (more are closed at once). The returned stop closes the listeners, ends their
// connections and waits for them; Serve calls it when the session ends.
func (s *Server) startForwards(ctx context.Context, sess *yamux.Session) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	counts := make([]forwardCounts, len(s.opts.Forwards))
	for i, f := range s.opts.Forwards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acceptForward(ctx, sess, f, &counts[i], &wg)
		}()
	}
	return func() {
		cancel()
		for _, f := range s.opts.Forwards {
			f.Listener.Close()
		}
		wg.Wait()
		for i, f := range s.opts.Forwards {
			c := &counts[i]
			msg := fmt.Sprintf("forward %s (127.0.0.1:%d): %d connection(s), %d closed over the limit of %d, %d ended with an error",
				f.Name, f.Port, c.conns.Load(), c.overLimit.Load(), s.opts.ForwardConns, c.failed.Load())
			if first := c.firstFailure.Load(); first != nil {
				msg += " (first: " + *first + ")"
			}
			s.opts.Logf("%s", msg)
		}
	}
}

// acceptForward accepts f's connections until its listener is closed.
func (s *Server) acceptForward(ctx context.Context, sess *yamux.Session, f ForwardListener, c *forwardCounts, wg *sync.WaitGroup) {
	slots := make(chan struct{}, s.opts.ForwardConns)
	for {
		conn, err := f.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.opts.Logf("forward %s: accept: %v", f.Name, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(acceptRetry):
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			if c.overLimit.Add(1) == 1 {
				s.opts.Logf("forward %s: %d connections open, closing more until one ends", f.Name, s.opts.ForwardConns)
			}
			conn.Close()
			continue
		}
		c.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			err := s.forwardConn(ctx, sess, f.Name, conn)
			if err == nil || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return // done, or cut by the session's end
			}
			c.failed.Add(1)
			msg := err.Error()
			if c.firstFailure.CompareAndSwap(nil, &msg) || s.opts.Debug {
				s.opts.Logf("forward %s: %s", f.Name, msg)
			}
		}()
	}
}

// forwardConn carries one accepted connection to the host.
func (s *Server) forwardConn(ctx context.Context, sess *yamux.Session, name string, conn net.Conn) error {
	st, err := proto.OpenForward(sess, name)
	if err != nil {
		conn.Close()
		return err
	}
	return proto.Splice(ctx, conn, st)
}
