package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// defaultPath is where programs are looked up when the request sets no PATH and the
// stages run in the initramfs (busybox's applets are in /bin and /sbin).
const defaultPath = "/bin:/sbin:/usr/bin:/usr/sbin"

// imagePath is the PATH when the request sets none and the stages run in an image's
// root (Options.StageRoot): the usual one of OCI runtimes, since images install their
// programs in /usr/local/bin as often as in /usr/bin.
const imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stdPath is the PATH of an exec whose request sets none.
func (s *Server) stdPath() string {
	if s.opts.StageRoot != "" {
		return imagePath
	}
	return defaultPath
}

// lingerAfterExit is how long output pipes are still read after the process exited
// while something else (a background child) holds them open.
const lingerAfterExit = time.Second

// process is one running exec, reachable from OpCancel.
type process struct {
	pgid     int
	mu       sync.Mutex
	exited   bool
	timedOut bool
	cg       *execCgroup // the exec's own cgroup; nil when stages have none (tests)
}

// kill sends SIGKILL to the whole process group, and to every process in the exec's
// cgroup (also those that left the group), unless the leader already exited.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		if p.cg != nil {
			p.cg.kill()
		}
	}
}

func (s *Server) cancel(stream uint32) {
	s.mu.Lock()
	p := s.procs[stream]
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// checkAllowed applies the box's allow list to the requested program: it matches
// args[0] exactly, the resolved path, or the base name when the program was found
// in a system directory (so "/workspace/sh" does not pass as "sh").
func (s *Server) checkAllowed(name, resolved string) error {
	if len(s.opts.Allow) == 0 {
		return nil
	}
	if slices.Contains(s.opts.Allow, name) || slices.Contains(s.opts.Allow, resolved) {
		return nil
	}
	if slices.Contains(filepath.SplitList(s.stdPath()), filepath.Dir(resolved)) &&
		slices.Contains(s.opts.Allow, filepath.Base(resolved)) {
		return nil
	}
	return remote(proto.CodeNotAllowed, "command %q is not allowed by this box's allow list %v", name, s.opts.Allow)
}

// lookPath resolves name like execvp would in a process whose root is root: names
// with a slash relative to dir, others through the PATH directories. Symlinks resolve
// inside root (an image's absolute ones too), so what it finds is what the stage's
// exec will run.
func lookPath(root, name, dir, path string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := executable(root, name); err != nil {
			return "", remote(proto.CodeNotFound, "program %q: %v", name, err)
		}
		return name, nil
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		if p := filepath.Join(d, name); executable(root, p) == nil {
			return p, nil
		}
	}
	return "", remote(proto.CodeNotFound, "program %q not found in PATH %s", name, path)
}

// executable checks that p, seen from root, is a file with an execute bit.
func executable(root, p string) error {
	var st unix.Stat_t
	if err := statIn(root, p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// statIn stats p (absolute) as a process whose root directory is root sees it.
func statIn(root, p string, st *unix.Stat_t) error {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rfd)
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rfd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

func (s *Server) execEnv(req proto.Request) []string {
	env := map[string]string{"PATH": s.stdPath(), "HOME": s.opts.Roots[0]}
	for k, v := range req.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// exec runs one process and streams its I/O over st until it exits.
func (s *Server) exec(st *yamux.Stream, req proto.Request) {
	dir := req.Dir
	if dir == "" {
		dir = s.opts.Roots[0]
	}
	if !filepath.IsAbs(dir) {
		sendErr(st, proto.CodeBadPath, fmt.Sprintf("exec workdir %q must be an absolute path", dir))
		return
	}
	env := s.execEnv(req)
	path := s.stdPath()
	if p, ok := req.Env["PATH"]; ok {
		path = p
	}
	root := s.opts.StageRoot
	if root == "" {
		root = "/"
	}
	prog, err := lookPath(root, req.Args[0], dir, path)
	if err == nil {
		err = s.checkAllowed(req.Args[0], prog)
	}
	if err != nil {
		s.opts.Logf("exec %q refused: %v", req.Args[0], err)
		sendError(st, err)
		return
	}

	var cg *execCgroup
	if sc := s.opts.StageCgroup; sc != nil && !s.opts.Unconfined {
		if cg, err = sc.newExec(); err != nil {
			sendError(st, remote(proto.CodeExecFailed, "start %s: %v", prog, err))
			return
		}
	}
	p, wait, pipes, err := s.spawn(prog, req.Args, dir, env, cg)
	if err != nil {
		if cg != nil {
			cg.remove()
		}
		sendError(st, err)
		return
	}
	p.cg = cg
	begin := time.Now()
	if s.opts.Debug {
		s.opts.Logf("exec %q pid %d", req.Args, p.pgid)
	}
	s.mu.Lock()
	s.procs[st.StreamID()] = p
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.procs, st.StreamID())
		s.mu.Unlock()
	}()

	var timer *time.Timer
	if req.TimeoutMS > 0 {
		timer = time.AfterFunc(time.Duration(req.TimeoutMS)*time.Millisecond, func() {
			p.mu.Lock()
			p.timedOut = !p.exited
			p.mu.Unlock()
			p.kill()
		})
	}

	var wmu sync.Mutex // one frame at a time on the stream
	stats := s.startStats(st, &wmu, req.StatsMS)
	var wg sync.WaitGroup
	wg.Add(2)
	go pumpOutput(&wg, &wmu, st, proto.FrameStdout, pipes.stdout)
	go pumpOutput(&wg, &wmu, st, proto.FrameStderr, pipes.stderr)
	go pumpInput(st, pipes.stdin, p)

	ws := wait()
	if timer != nil {
		timer.Stop()
	}
	// The exec is over for stdin: unblock a pending write into a pipe that only a
	// background child still holds.
	pipes.stdin.Close()
	p.mu.Lock()
	p.exited = true
	timedOut := p.timedOut
	p.mu.Unlock()
	oom := false
	if cg != nil {
		// What the exec left running ends with it, as in the local sandbox; its
		// buffered output is still read below.
		cg.kill()
		oom = cg.oomKilled()
		go cg.remove()
	}
	// Output still buffered in the pipes is read in full; only a writer that keeps
	// them open after the leader exited (a background child) stops being waited for.
	lingering := time.AfterFunc(lingerAfterExit, func() {
		_ = pipes.stdout.SetReadDeadline(time.Now())
		_ = pipes.stderr.SetReadDeadline(time.Now())
	})
	wg.Wait()
	lingering.Stop()
	pipes.stdout.Close()
	pipes.stderr.Close()

	res := proto.ExitStatus{ExitCode: ws.ExitStatus(), TimedOut: timedOut, OOM: oom}
	if ws.Signaled() {
		res.ExitCode = -1
		res.Signal = unix.SignalName(ws.Signal())
	}
	if s.opts.Debug || timedOut || oom {
		s.opts.Logf("exec %s pid %d ended after %v: exit %d %s timed_out=%v oom=%v", req.Args[0], p.pgid, time.Since(begin).Round(time.Millisecond), res.ExitCode, res.Signal, timedOut, oom)
	}
	stats.stop()
	wmu.Lock()
	_ = proto.WriteJSON(st, proto.FrameExit, res)
	wmu.Unlock()
}

// pumpOutput streams one pipe as frames, chunk by chunk as the process writes. After
// the lingering deadline fires it keeps reading while data is immediately available.
func pumpOutput(wg *sync.WaitGroup, wmu *sync.Mutex, st io.Writer, t proto.FrameType, f *os.File) {
	defer wg.Done()
	buf := make([]byte, 64<<10)
	lingering := false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			wmu.Lock()
			werr := proto.WriteFrame(st, t, buf[:n])
			wmu.Unlock()
			if werr != nil {
				return // host gone: nothing more to deliver
			}
			if lingering {
				_ = f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			}
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !lingering {
			lingering = true
			_ = f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			continue
		}
		if err != nil {
			return
		}
	}
}

// pumpInput feeds stdin frames to the process. If the host abandons the stream while
// the process runs, the process group is killed.
func pumpInput(st io.Reader, stdin *os.File, p *process) {
	open := true
	closeStdin := func() {
		if open {
			stdin.Close()
			open = false
		}
	}
	defer closeStdin()
	for {
		f, err := proto.ReadFrame(st)
		if err != nil {
			p.kill()
			return
		}
		switch f.Type {
		case proto.FrameStdin:
			if open {
				if _, err := stdin.Write(f.Payload); err != nil {
					closeStdin() // the process closed stdin or exited: drop the rest
				}
			}
		case proto.FrameStdinEOF:
			closeStdin()
		default:
			p.kill()
			return
		}
	}
}

type stdio struct {
	stdin          *os.File // write end
	stdout, stderr *os.File // read ends
}

// shimConfig is what the parent tells the re-exec'd shim (argv[1], JSON).
type shimConfig struct {
	Path    string        `json:"path"`
	Args    []string      `json:"args"`
	UID     int           `json:"uid"`
	GID     int           `json:"gid"`
	Rlimits proto.Rlimits `json:"rlimits"`
	// Root, when set, becomes the process's "/" (Options.StageRoot), and Dir its
	// working directory inside it.
	Root string `json:"root,omitempty"`
	Dir  string `json:"dir,omitempty"`
}

// spawn starts the process in its own process group (and in cg when not nil, from its
// creation on), through the confinement shim unless the server is unconfined, and
// returns how to wait for it.
func (s *Server) spawn(prog string, args []string, dir string, env []string, cg *execCgroup) (*process, func() syscall.WaitStatus, stdio, error) {
	// parentEnds are ours after a successful start; childEnds always close here.
	var parentEnds, childEnds []*os.File
	fail := func(err error) (*process, func() syscall.WaitStatus, stdio, error) {
		for _, f := range parentEnds {
			f.Close()
		}
		return nil, nil, stdio{}, err
	}
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	pipe := func(what string, childReads bool) (*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("%s pipe: %w", what, err)
		}
		if childReads {
			parentEnds, childEnds = append(parentEnds, w), append(childEnds, r)
			return w, nil
		}
		parentEnds, childEnds = append(parentEnds, r), append(childEnds, w)
		return r, nil
	}
	var pipes stdio
	var err error
	if pipes.stdin, err = pipe("stdin", true); err != nil {
		return fail(err)
	}
	if pipes.stdout, err = pipe("stdout", false); err != nil {
		return fail(err)
	}
	if pipes.stderr, err = pipe("stderr", false); err != nil {
		return fail(err)
	}
	attr := &os.ProcAttr{Dir: dir, Env: env, Files: slices.Clone(childEnds), Sys: &syscall.SysProcAttr{Setpgid: true}}
	if cg != nil {
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, cg.fd
		defer cg.closeFD()
	}
	path, argv := prog, args
	var status *os.File
	if !s.opts.Unconfined {
		// fd 3 of the shim reports why it could not exec; a successful exec closes it.
		if status, err = pipe("status", false); err != nil {
			return fail(err)
		}
		attr.Files = append(attr.Files, childEnds[len(childEnds)-1])
		sc := shimConfig{Path: prog, Args: args, UID: s.opts.UID, GID: s.opts.GID, Rlimits: s.opts.Rlimits}
		if s.opts.StageRoot != "" {
			// The shim starts in a mount namespace of its own (Go makes its mounts
			// private), where it can replace "/" without touching the agent's; dir
			// only exists inside the new root, so the shim enters it itself.
			attr.Sys.Unshareflags = unix.CLONE_NEWNS
			attr.Dir = ""
			sc.Root, sc.Dir = s.opts.StageRoot, dir
		}
		cfg, _ := json.Marshal(sc)
		path, argv = s.opts.ShimPath, []string{shimArg0, string(cfg)}
	}

	var proc *os.Process
	var pid int // kept apart: Release sets proc.Pid to -1
	start := func() (int, error) {
		var err error
		if proc, err = os.StartProcess(path, argv, attr); err != nil {
			return 0, err
		}
		pid = proc.Pid
		return pid, nil
	}
	var wait func() syscall.WaitStatus
	if s.opts.Reaper != nil {
		_, ch, err := s.opts.Reaper.Start(start)
		if err != nil {
			return fail(remote(proto.CodeExecFailed, "start %s: %v", prog, err))
		}
		_ = proc.Release() // the Reaper, not os.Process, collects the status
		wait = func() syscall.WaitStatus { return <-ch }
	} else {
		if _, err := start(); err != nil {
			return fail(remote(proto.CodeExecFailed, "start %s: %v", prog, err))
		}
		wait = func() syscall.WaitStatus {
			st, err := proc.Wait()
			if err != nil {
				return syscall.WaitStatus(0xff << 8) // exit 255: cannot happen for our own child
			}
			return st.Sys().(syscall.WaitStatus)
		}
	}
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil
	if status != nil {
		msg, _ := io.ReadAll(io.LimitReader(status, 4096))
		status.Close()
		if len(msg) > 0 {
			wait()
			return fail(remote(proto.CodeExecFailed, "start %s: %s", prog, msg))
		}
	}
	return &process{pgid: pid}, wait, pipes, nil
}
