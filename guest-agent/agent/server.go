// Package agent is the guest agent's server logic: the authenticated session on one
// transport connection, exec of stage processes under the box's policy, and file
// operations confined to the allowed roots. It runs on the host too (tests), without
// being PID 1 and, when Options.Unconfined is set, without root.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/voidbox/voidbox/guest-agent/proto"
)

// Options configure a Server. The production agent fills them from the BootConfig.
type Options struct {
	Secret  string        // per-VM handshake secret (hex)
	Roots   []string      // allowed file roots; Roots[0] is the default workdir and HOME
	Allow   []string      // command allowlist; empty allows any command
	UID     int           // stage user
	GID     int           // stage group
	Rlimits proto.Rlimits // limits applied to every stage process

	// StageRoot, when set, is the directory every confined exec sees as "/" (package
	// rootfs mounts it): the shim runs in a private mount namespace, moves it over "/"
	// and chroots into it before dropping privileges. Programs and the exec's Dir are
	// looked up inside it. The agent itself keeps its own root. Needs the shim: not
	// with Unconfined.
	StageRoot string

	// ShimPath is the binary re-executed as the confinement shim (argv[0]
	// "voidbox-shim"); default /proc/self/exe. Its main must call RunShimIfRequested.
	ShimPath string
	// Unconfined runs processes directly as the agent's own user, with no rlimits,
	// no_new_privs or seccomp, and leaves written files owned by the agent. Tests only:
	// the production agent never sets it.
	Unconfined bool
	// Reaper, when set, is the only place child exit statuses come from (PID 1 reaps
	// every orphan, so os.Process.Wait would race with it).
	Reaper *Reaper
	// StageCgroup, when set, is the VM's stage cgroup: each confined exec runs in a
	// child cgroup of its own under it (memory, pids, cpu limits; OOM detection).
	StageCgroup *StageCgroup

	// Forwards are the boot's forward listeners (ListenForwards): served while the
	// session is up, closed when it ends.
	Forwards []ForwardListener
	// ForwardConns bounds each forward's connections at once; more are closed as
	// soon as they are accepted. 0 means proto.MaxForwardConns.
	ForwardConns int

	// ProcRoot is where exec resource samples are read (stats.go); default /proc.
	ProcRoot string

	// Warm: the agent was booted to be snapshotted; its first exchange must be the
	// host's re-key (rekey.go), done with ApplyRekey (nil: the real one).
	Warm       bool
	ApplyRekey func(proto.Rekey) error

	Debug            bool                 // log every exec's start and end, not only failures
	HandshakeTimeout time.Duration        // default 30s; applies when the conn has deadlines
	OnShutdown       func()               // called after acknowledging a shutdown request
	Logf             func(string, ...any) // console log; default discards
}

// Server serves exactly one authenticated session under one policy: use one
// Server per VM boot. Once a peer has authenticated, every later connection is
// refused (closed unanswered, and logged), also after that session ended: the
// secret may have leaked by then, and the host never reconnects to a VM.
type Server struct {
	opts Options

	// established is set by the first connection that authenticates.
	established atomic.Bool

	// rekeyMu guards the warm agent's one re-key (rekey.go).
	rekeyMu             sync.Mutex
	rekeyed, idleLogged bool

	mu sync.Mutex
	// procs are the session's running execs by stream id, for OpCancel and for
	// the kill when the session ends. Stream ids are the session's own; with one
	// session per Server, the Server's processes are the session's.
	procs map[uint32]*process
}

// NewServer validates opts and returns a Server.
func NewServer(opts Options) (*Server, error) {
	if len(opts.Roots) == 0 {
		return nil, errors.New("agent: Options.Roots must name at least one allowed root (e.g. /workspace)")
	}
	opts.Roots = slices.Clone(opts.Roots)
	for _, r := range opts.Roots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r || r == "/" {
			return nil, fmt.Errorf("agent: root %q must be a clean absolute path other than /", r)
		}
	}
	if opts.StageRoot != "" && (opts.Unconfined || !filepath.IsAbs(opts.StageRoot) || filepath.Clean(opts.StageRoot) != opts.StageRoot) {
		return nil, fmt.Errorf("agent: stage root %q must be a clean absolute path, and needs the confinement shim (not Unconfined)", opts.StageRoot)
	}
	if !opts.Unconfined && (opts.UID <= 0 || opts.GID <= 0) {
		return nil, fmt.Errorf("agent: stage uid/gid %d/%d: stages never run as root; set UID and GID (default %d)", opts.UID, opts.GID, proto.DefaultUID)
	}
	opts.Forwards = slices.Clone(opts.Forwards)
	for _, f := range opts.Forwards {
		if err := proto.CheckForwardName(f.Name); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if f.Listener == nil {
			return nil, fmt.Errorf("agent: forward %q has no listener (ListenForwards makes them)", f.Name)
		}
	}
	if opts.ForwardConns < 0 || opts.ForwardConns > proto.MaxForwardConns {
		return nil, fmt.Errorf("agent: ForwardConns %d out of range (0 for the default, up to %d)", opts.ForwardConns, proto.MaxForwardConns)
	}
	if opts.ForwardConns == 0 {
		opts.ForwardConns = proto.MaxForwardConns
	}
	if opts.ShimPath == "" {
		opts.ShimPath = "/proc/self/exe"
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	return &Server{opts: opts, procs: map[uint32]*process{}}, nil
}

// Established reports whether a peer has authenticated: the boot's one session
// is (or was) under way.
func (s *Server) Established() bool { return s.established.Load() }

// ErrHandshake wraps every failure before the session is established: the caller
// closes the connection and, on a listening transport, keeps listening.
var ErrHandshake = errors.New("agent handshake failed")

// ErrSessionTaken is wrapped (with ErrHandshake) by Serve for a connection that
// came after the boot's one session was established.
var ErrSessionTaken = errors.New("this boot's one agent session is already established; later connections are refused")

type deadliner interface{ SetDeadline(time.Time) error }

// Serve authenticates the host on conn and then serves requests until the session
// ends; the session's processes are killed then. It returns nil when an
// established session ended (the host went away), ctx.Err() when ctx ended it, and
// an error wrapping ErrHandshake when the peer never authenticated or came after
// the boot's one session (then also ErrSessionTaken). Serve closes conn before
// returning.
func (s *Server) Serve(ctx context.Context, conn io.ReadWriteCloser) error {
	defer conn.Close()
	if s.established.Load() {
		// Not even a handshake: nothing for a second peer to learn or to try.
		s.opts.Logf("refused a connection: %v", ErrSessionTaken)
		return fmt.Errorf("%w: %w", ErrHandshake, ErrSessionTaken)
	}
	if d, ok := conn.(deadliner); ok {
		_ = d.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	}
	secret, err := s.sessionSecret(conn)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if err := proto.ServerHandshake(conn, secret); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	// Two peers that knew the secret may have finished their handshakes at once:
	// the first to get here has the session.
	if !s.established.CompareAndSwap(false, true) {
		s.opts.Logf("refused an authenticated connection: %v", ErrSessionTaken)
		return fmt.Errorf("%w: %w", ErrHandshake, ErrSessionTaken)
	}
	if d, ok := conn.(deadliner); ok {
		_ = d.SetDeadline(time.Time{})
	}
	sess, err := yamux.Server(conn, proto.YamuxConfig())
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	// The forwards listen from boot; they are served from here, before the host's
	// first request, to the session's end.
	stopForwards := s.startForwards(ctx, sess)
	var wg sync.WaitGroup
	defer func() {
		stop()
		sess.Close()
		stopForwards()
		// Nothing a session started outlives it, whatever its streams were doing.
		s.killSessionProcesses()
		wg.Wait()
	}()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(st)
		}()
	}
}

// killSessionProcesses kills every exec the session still runs (process group and
// cgroup; see process.kill).
func (s *Server) killSessionProcesses() {
	s.mu.Lock()
	procs := make([]*process, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	if len(procs) > 0 {
		s.opts.Logf("session ended: killing its %d running process(es)", len(procs))
	}
	for _, p := range procs {
		p.kill()
	}
}

// handle serves one request stream.
func (s *Server) handle(st *yamux.Stream) {
	defer st.Close()
	f, err := proto.ReadFrame(st)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			sendErr(st, proto.CodeBadRequest, err.Error()) // e.g. an oversized request
		}
		return
	}
	if f.Type != proto.FrameRequest {
		sendErr(st, proto.CodeBadRequest, fmt.Sprintf("first frame on a stream must be a request, got %s", f.Type))
		return
	}
	req, err := proto.DecodeRequest(f.Payload)
	if err != nil {
		sendErr(st, proto.CodeBadRequest, err.Error())
		return
	}
	var resp proto.Response
	switch req.Op {
	case proto.OpExec:
		s.exec(st, req)
		return
	case proto.OpReadFile:
		s.readFile(st, req)
		return
	case proto.OpWriteFile:
		err = s.writeFile(st, req)
	case proto.OpStat:
		resp.Info, err = s.stat(req.Path)
	case proto.OpMkdir:
		err = s.mkdir(req.Path, req.Mode)
	case proto.OpCancel:
		s.cancel(req.Stream)
	case proto.OpPing:
	case proto.OpShutdown:
		s.opts.Logf("shutdown requested by host")
		_ = proto.WriteJSON(st, proto.FrameOK, resp)
		if s.opts.OnShutdown != nil {
			go s.opts.OnShutdown()
		}
		return
	}
	if err != nil {
		sendError(st, err)
		return
	}
	_ = proto.WriteJSON(st, proto.FrameOK, resp)
}

func sendErr(w io.Writer, code, msg string) {
	_ = proto.WriteJSON(w, proto.FrameError, proto.RemoteError{Code: code, Message: msg})
}

// sendError reports err, keeping a RemoteError's code and classifying the rest as I/O.
func sendError(w io.Writer, err error) {
	var re *proto.RemoteError
	if errors.As(err, &re) {
		sendErr(w, re.Code, re.Message)
		return
	}
	sendErr(w, proto.CodeIO, err.Error())
}

func remote(code, format string, args ...any) error {
	return &proto.RemoteError{Code: code, Message: fmt.Sprintf(format, args...)}
}
