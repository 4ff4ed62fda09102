package proto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// ExecRequest describes one process to run in the guest. It has the same fields as
// runtime.ExecRequest, so the host glue can convert between them directly.
type ExecRequest struct {
	Args    []string
	Env     map[string]string
	Dir     string    // default /workspace
	Stdin   io.Reader // nil means empty
	Stdout  io.Writer // nil discards
	Stderr  io.Writer // nil discards
	Timeout time.Duration
	// StatsInterval asks the guest for a resource sample (stats.go) this often while
	// the process runs, and once when it ends; each is passed to OnStats. Zero, or a
	// nil OnStats, samples nothing. It is clamped to MinStatsInterval..MaxStatsInterval.
	StatsInterval time.Duration
	OnStats       func(Stats)
}

// ExecResult is how a guest process ended (same fields as runtime.ExecResult).
type ExecResult struct {
	ExitCode int    // -1 when killed by a signal
	Signal   string // e.g. "SIGKILL"
	TimedOut bool
	// OOM: the kernel's OOM killer killed a process of this exec (the stage cgroup
	// was at its memory limit), which is why it ended.
	OOM bool
}

// cancelGrace is how long Exec waits for the guest to report the exit of a process
// it was told to kill before giving up on the stream.
const cancelGrace = 5 * time.Second

// YamuxConfig is the session configuration both sides use. Keepalives are off: under
// software emulation a guest can stall for seconds, and the transport's EOF already
// tells each side when the other went away.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.MaxStreamWindowSize = 1 << 20
	c.ConnectionWriteTimeout = 60 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = nil
	c.Logger = log.New(io.Discard, "", 0)
	return c
}

// Client is the host's end of an authenticated session with one guest agent.
// Its methods are safe for concurrent use; each call is one yamux stream.
type Client struct {
	sess *yamux.Session
	fwd  *hostForwards // the streams the guest opens (forward.go)
}

// newClient starts serving the guest-opened streams of sess: at most fwdLimit at
// once, each closed unless its open message arrives within openTimeout.
func newClient(sess *yamux.Session, fwdLimit int, openTimeout time.Duration) *Client {
	c := &Client{sess: sess, fwd: newHostForwards(fwdLimit, openTimeout)}
	go c.acceptForwards()
	return c
}

// Connect runs the handshake on conn and starts the multiplexed session. The ctx
// deadline and cancellation bound the handshake; conn is closed on failure.
func Connect(ctx context.Context, conn net.Conn, secret string) (*Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err := ClientHandshake(conn, secret)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent handshake: %w (%v)", ctx.Err(), err)
		}
		// The conn deadline can fire a moment before ctx notices its own.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return nil, fmt.Errorf("agent handshake: %w (%v)", context.DeadlineExceeded, err)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	sess, err := yamux.Client(conn, YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start agent session: %w", err)
	}
	return newClient(sess, MaxHostForwardConns, ForwardOpenTimeout), nil
}

// Close ends the session; the guest treats that as "host went away" and powers off.
func (c *Client) Close() error { return c.sess.Close() }

// Done is closed when the session ends for any reason.
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// open starts a stream for one request and arranges for ctx to abort blocked I/O.
func (c *Client) open(ctx context.Context, req Request) (*yamux.Stream, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, nil, fmt.Errorf("open agent stream for %s: %w", req.Op, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	done := func() { stop(); st.Close() }
	if err := writeRequest(st, req); err != nil {
		done()
		return nil, nil, c.ioErr(ctx, req.Op, err)
	}
	return st, done, nil
}

func (c *Client) ioErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("agent %s: %w", op, ctx.Err())
	}
	if c.sess.IsClosed() {
		return fmt.Errorf("agent %s: session closed (guest exited or was shut down): %w", op, err)
	}
	return fmt.Errorf("agent %s: %w", op, err)
}

// writeRequest sends the request frame, refusing locally what the guest would refuse.
func writeRequest(w io.Writer, req Request) error {
	b := marshal(req)
	if len(b) > MaxHeader {
		return &RemoteError{Code: CodeTooLarge, Message: fmt.Sprintf("%s request is %d bytes (arguments, environment, path), at most %d allowed", req.Op, len(b), MaxHeader)}
	}
	return WriteFrame(w, FrameRequest, b)
}

// remoteErr decodes a FrameError payload.
func remoteErr(p []byte) error {
	var e RemoteError
	if err := DecodeJSON(p, &e); err != nil {
		return fmt.Errorf("decode guest error: %w", err)
	}
	return &e
}

// finish reads the final frame of a simple request.
func (c *Client) finish(ctx context.Context, op string, st *yamux.Stream) (Response, error) {
	f, err := ReadFrame(st)
	if err != nil {
		return Response{}, c.ioErr(ctx, op, noEOF(err))
	}
	switch f.Type {
	case FrameOK:
		var r Response
		if err := DecodeJSON(f.Payload, &r); err != nil {
			return Response{}, fmt.Errorf("agent %s: decode response: %w", op, err)
		}
		return r, nil
	case FrameError:
		return Response{}, remoteErr(f.Payload)
	}
	return Response{}, fmt.Errorf("agent %s: unexpected %s frame", op, f.Type)
}

func (c *Client) simple(ctx context.Context, req Request) (Response, error) {
	st, done, err := c.open(ctx, req)
	if err != nil {
		return Response{}, err
	}
	defer done()
	return c.finish(ctx, req.Op, st)
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.simple(ctx, Request{Op: OpPing})
	return err
}

// Shutdown asks the guest to sync and power off. The session ends soon after.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.simple(ctx, Request{Op: OpShutdown})
	return err
}

// Stat describes a file inside the guest's allowed roots.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	r, err := c.simple(ctx, Request{Op: OpStat, Path: path})
	if err != nil {
		return FileInfo{}, err
	}
	if r.Info == nil {
		return FileInfo{}, errors.New("agent stat: guest sent no file info")
	}
	return *r.Info, nil
}

// Mkdir creates a directory and any missing parents inside the guest's allowed roots.
func (c *Client) Mkdir(ctx context.Context, path string, mode fs.FileMode) error {
	_, err := c.simple(ctx, Request{Op: OpMkdir, Path: path, Mode: uint32(mode.Perm())})
	return err
}

// WriteFile writes data to path (creating parent directories) inside the guest's
// allowed roots; the file is owned by the stage user.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if len(data) > MaxFileSize {
		return &RemoteError{Code: CodeTooLarge, Message: fmt.Sprintf("file %s is %d bytes, at most %d can be written", path, len(data), MaxFileSize)}
	}
	st, done, err := c.open(ctx, Request{Op: OpWriteFile, Path: path, Mode: uint32(mode.Perm()), Size: int64(len(data))})
	if err != nil {
		return err
	}
	defer done()
	// Send in the background so an early refusal (bad path) is read at once instead
	// of after pushing the whole file into a stream the guest no longer reads.
	sent := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); off += fileChunk {
			end := min(off+fileChunk, len(data))
			if err := WriteFrame(st, FrameData, data[off:end]); err != nil {
				sent <- err
				return
			}
		}
		sent <- WriteFrame(st, FrameEnd, nil)
	}()
	_, ferr := c.finish(ctx, OpWriteFile, st)
	if ferr != nil {
		_ = st.SetWriteDeadline(time.Unix(1, 0))
		<-sent
		return ferr
	}
	if err := <-sent; err != nil {
		return c.ioErr(ctx, OpWriteFile, err)
	}
	return nil
}

// ReadFile reads a file inside the guest's allowed roots (at most MaxFileSize bytes).
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	st, done, err := c.open(ctx, Request{Op: OpReadFile, Path: path})
	if err != nil {
		return nil, err
	}
	defer done()
	var out []byte
	for {
		f, err := ReadFrame(st)
		if err != nil {
			return nil, c.ioErr(ctx, OpReadFile, noEOF(err))
		}
		switch f.Type {
		case FrameData:
			if len(out)+len(f.Payload) > MaxFileSize {
				return nil, &RemoteError{Code: CodeTooLarge, Message: fmt.Sprintf("file %s exceeds %d bytes", path, MaxFileSize)}
			}
			out = append(out, f.Payload...)
		case FrameOK:
			if out == nil {
				out = []byte{}
			}
			return out, nil
		case FrameError:
			return nil, remoteErr(f.Payload)
		default:
			return nil, fmt.Errorf("agent read_file: unexpected %s frame", f.Type)
		}
	}
}

// Exec runs a process in the guest, streaming stdin to it and its stdout/stderr to
// req.Stdout/req.Stderr chunk by chunk as the guest produces them. A non-zero exit is
// a result, not an error. Cancelling ctx kills the remote process group and returns
// ctx's error with the result the guest reported.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	if len(req.Args) == 0 || req.Args[0] == "" {
		return ExecResult{}, errors.New("agent exec: ExecRequest.Args must name a program in Args[0]")
	}
	wire := Request{Op: OpExec, Args: req.Args, Env: req.Env, Dir: req.Dir}
	if req.Timeout > 0 {
		wire.TimeoutMS = max(1, req.Timeout.Milliseconds())
	}
	var stats statsGate
	if req.OnStats != nil {
		wire.StatsMS = statsMS(req.StatsInterval)
		stats.interval = time.Duration(wire.StatsMS) * time.Millisecond
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return ExecResult{}, fmt.Errorf("open agent stream for exec: %w", err)
	}
	defer st.Close()
	if err := writeRequest(st, wire); err != nil {
		return ExecResult{}, c.ioErr(ctx, OpExec, err)
	}
	go pumpStdin(st, req.Stdin)

	// On cancellation, ask the guest (on a fresh stream) to kill the group, then give
	// it a grace period to report the exit before abandoning the stream.
	var cancelOnce sync.Once
	cancelRemote := func() {
		cancelOnce.Do(func() {
			go func() {
				cctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
				defer cancel()
				_, _ = c.simple(cctx, Request{Op: OpCancel, Stream: st.StreamID()})
			}()
			_ = st.SetReadDeadline(time.Now().Add(cancelGrace))
		})
	}
	stop := context.AfterFunc(ctx, cancelRemote)
	defer stop()

	var werr error
	for {
		f, err := ReadFrame(st)
		if err != nil {
			return ExecResult{}, c.ioErr(ctx, OpExec, noEOF(err))
		}
		switch f.Type {
		case FrameStdout, FrameStderr:
			w := req.Stdout
			if f.Type == FrameStderr {
				w = req.Stderr
			}
			if w == nil || werr != nil {
				continue
			}
			if _, err := w.Write(f.Payload); err != nil {
				werr = fmt.Errorf("agent exec %s: write %s: %w", req.Args[0], f.Type, err)
				cancelRemote()
			}
		case FrameExit:
			var s ExitStatus
			if err := DecodeJSON(f.Payload, &s); err != nil {
				return ExecResult{}, fmt.Errorf("agent exec: decode exit status: %w", err)
			}
			res := ExecResult(s)
			if werr != nil {
				return res, werr
			}
			if ctx.Err() != nil {
				return res, fmt.Errorf("agent exec %s: %w", req.Args[0], ctx.Err())
			}
			return res, nil
		case FrameStats:
			s, err := DecodeStats(f.Payload)
			if err == nil {
				err = stats.check(s)
			}
			if err != nil {
				cancelRemote()
				return ExecResult{}, fmt.Errorf("agent exec %s: %w", req.Args[0], err)
			}
			req.OnStats(s)
		case FrameError:
			return ExecResult{}, remoteErr(f.Payload)
		default:
			return ExecResult{}, fmt.Errorf("agent exec: unexpected %s frame", f.Type)
		}
	}
}

// pumpStdin copies r to the stream as stdin frames, then signals EOF. It stops at
// the first write error (the exec ended and the stream closed). A Stdin reader that
// never returns keeps this goroutine alive until it does.
func pumpStdin(st *yamux.Stream, r io.Reader) {
	if r != nil {
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if WriteFrame(st, FrameStdin, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = WriteFrame(st, FrameStdinEOF, nil)
}
