package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/voidbox/voidbox/runtime"
)

// defaultPath is PATH when the host's is empty.
const defaultPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

// drainGrace bounds how long Exec waits for output after the process group is gone: a
// process that left the group (setsid) may still hold the pipes open.
const drainGrace = 2 * time.Second

// Exec implements runtime.Sandbox: it runs req.Args as a new process group in the
// workspace and kills the whole group when the process exits, times out or ctx ends.
// Its errors do not repeat req.Args[0] or the stage: the caller names the command.
func (s *Sandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	cmd, err := s.command(req)
	if err != nil {
		return runtime.ExecResult{}, err
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	p, err := openPipes(cmd, req)
	if err != nil {
		return runtime.ExecResult{}, err
	}
	defer p.closeAll()
	if err := ctx.Err(); err != nil {
		return runtime.ExecResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return runtime.ExecResult{}, err
	}
	pgid := cmd.Process.Pid // Setpgid with Pgid 0: the group id is the child's pid
	if !s.track(pgid) {
		killGroup(pgid)
		_ = cmd.Wait()
		return runtime.ExecResult{}, errors.New("the local sandbox was closed")
	}
	defer s.untrack(pgid)
	p.closeChildEnds()
	copiers := p.start(req)

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waited:
	case <-ctx.Done():
		killGroup(pgid)
		waitErr = <-waited
	}
	// The leader is gone; background children it left in the group go with it, which
	// also closes their copies of the output pipes.
	killGroup(pgid)
	p.drain(copiers)

	var res runtime.ExecResult
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return res, fmt.Errorf("wait: %w", waitErr)
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.ExitCode, res.Signal = -1, unix.SignalName(ws.Signal())
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			res.TimedOut = true
			return res, nil
		}
		return res, ctxErr
	}
	return res, nil
}

// command builds the exec.Cmd: workspace paths rewritten, allowlist checked, PATH
// looked up in the stage's environment.
func (s *Sandbox) command(req runtime.ExecRequest) (*exec.Cmd, error) {
	if len(req.Args) == 0 {
		return nil, errors.New("empty command")
	}
	args := make([]string, len(req.Args))
	for i, a := range req.Args {
		args[i] = rewrite(a, s.dir)
	}
	if len(s.allow) > 0 && !slices.Contains(s.allow, path.Base(req.Args[0])) && !slices.Contains(s.allow, req.Args[0]) {
		return nil, fmt.Errorf("not allowed by this box's allow list %v", s.allow)
	}
	dir := s.dir
	if req.Dir != "" {
		rel, err := s.rel(req.Dir)
		if err != nil {
			return nil, fmt.Errorf("dir: %w", err)
		}
		if fi, err := s.root.Stat(rel); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("dir %s is not a directory in the workspace", req.Dir)
		}
		dir = filepath.Join(s.dir, rel)
	}
	env := s.environ(req.Env)
	bin, err := lookPath(args[0], envValue(env, "PATH"), dir)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        bin,
		Args:        args,
		Env:         env,
		Dir:         dir,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	return cmd, nil
}

// environ is the minimal base environment plus the stage's, with workspace paths mapped.
func (s *Sandbox) environ(stage map[string]string) []string {
	hostPath := os.Getenv("PATH")
	if hostPath == "" {
		hostPath = defaultPath
	}
	env := map[string]string{"PATH": hostPath, "HOME": s.dir, "VOIDBOX_WORKSPACE": s.dir}
	for k, v := range stage {
		env[k] = rewrite(v, s.dir)
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds name the way a shell would with the stage's PATH (not the host
// process's, which exec.LookPath would use).
func lookPath(name, pathEnv, dir string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := executable(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%w: %w", runtime.ErrCommandNotFound, err)
			}
			return "", err
		}
		return name, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(d) {
			continue // relative PATH entries would resolve against the workspace: ignore
		}
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", errNotInPath
}

// errNotInPath names the search path without listing it: a host PATH is long, and its
// value is the host's business.
var errNotInPath = fmt.Errorf("%w in the host's $PATH", runtime.ErrCommandNotFound)

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// pipes are the process's stdio. The executor's writers are not *os.File, so Exec owns
// the pipes and the copying: that way it can stop waiting for output once the process
// group is dead, which exec.Cmd's own copying cannot.
type pipes struct {
	stdinW, stdoutR, stderrR *os.File // parent ends
	child                    []*os.File
	all                      []*os.File
}

func openPipes(cmd *exec.Cmd, req runtime.ExecRequest) (*pipes, error) {
	p := &pipes{}
	mk := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			p.all = append(p.all, r, w)
		}
		return r, w, err
	}
	var err error
	if req.Stdin != nil {
		var r *os.File
		if r, p.stdinW, err = mk(); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		cmd.Stdin = r
		p.child = append(p.child, r)
	}
	if req.Stdout != nil {
		var w *os.File
		if p.stdoutR, w, err = mk(); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("stdout pipe: %w", err)
		}
		cmd.Stdout = w
		p.child = append(p.child, w)
	}
	if req.Stderr != nil {
		var w *os.File
		if p.stderrR, w, err = mk(); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("stderr pipe: %w", err)
		}
		cmd.Stderr = w
		p.child = append(p.child, w)
	}
	return p, nil
}

// closeChildEnds drops the parent's copies of the child's ends, so EOF arrives when the
// process (and its children) exit.
func (p *pipes) closeChildEnds() {
	for _, f := range p.child {
		f.Close()
	}
}

func (p *pipes) closeAll() {
	for _, f := range p.all {
		f.Close()
	}
}

// start begins copying; the returned group ends when both output streams are drained.
func (p *pipes) start(req runtime.ExecRequest) *sync.WaitGroup {
	if p.stdinW != nil {
		// Not waited for: a reader that blocks forever must not hang Exec. Closing stdinW
		// (closeAll) ends the copy at its next write.
		go func() {
			_, _ = io.Copy(p.stdinW, req.Stdin)
			p.stdinW.Close()
		}()
	}
	var wg sync.WaitGroup
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{p.stdoutR, req.Stdout}, {p.stderrR, req.Stderr}} {
		if c.r == nil {
			continue
		}
		wg.Go(func() {
			_, _ = io.Copy(c.w, c.r)
			// If the writer refused data, closing our end gives the writer process EPIPE
			// instead of a pipe that blocks it forever.
			c.r.Close()
		})
	}
	return &wg
}

// drain waits for the output copies, at most drainGrace, then cuts them off.
func (p *pipes) drain(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainGrace):
		p.closeAll()
		<-done
	}
}
