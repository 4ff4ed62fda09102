// Package mock is the scripted sandbox: each stage attempt gets a deterministic reply
// from a Script instead of running anything. It exists for tests of the DSL and the
// executor (and `--sandbox mock` with VOIDBOX_MOCK_SCRIPT); it is never chosen implicitly.
// The provider records what happened (sandboxes opened, inputs, cancellations, the
// concurrency high-water mark) so tests can assert on scheduling.
package mock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// Reply is what one stage attempt does.
type Reply struct {
	Stdout   string
	Stderr   string
	ExitCode int
	// Signal, when set, says a signal killed the "process" ("SIGKILL"): ExitCode is
	// then ignored and the result is ExitCode -1 with this Signal, as the real
	// sandboxes report it.
	Signal string
	// Delay is how long the "process" runs before replying; it ends early (and the
	// call is recorded as canceled) when the context is cancelled.
	Delay time.Duration
	// Err, when set, makes the sandbox itself fail (Exec or RunAgent return an error)
	// after Delay.
	Err string
}

// Script maps a stage name to one Reply per attempt; the last Reply repeats for later
// attempts. A stage without an entry echoes: stdout is its input followed by "NAME\n".
type Script map[string][]Reply

// Call records one sandbox (one stage attempt).
type Call struct {
	Stage    string
	Attempt  int // 1-based, counted per stage name
	Args     []string
	Env      map[string]string
	Dir      string
	Input    string // what the stage read on stdin (or was handed as agent input)
	Agent    bool   // ran through RunAgent
	Canceled bool   // its context ended before the reply was due
	Closed   bool
}

// Provider opens scripted sandboxes. It implements runtime.AgentRunner, so agent stages
// run against the script too.
type Provider struct {
	script Script

	mu       sync.Mutex
	calls    []*Call
	attempts map[string]int
	open     int
	maxOpen  int
}

// New returns a provider that replies from script (nil is an empty script: every stage
// echoes).
func New(script Script) *Provider {
	return &Provider{script: script, attempts: map[string]int{}}
}

// Name implements runtime.Provider.
func (p *Provider) Name() string { return "mock" }

// Open implements runtime.Provider. It fails only when ctx has already ended.
func (p *Provider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mock sandbox %s: %w", spec.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[spec.Name]++
	c := &Call{Stage: spec.Name, Attempt: p.attempts[spec.Name]}
	p.calls = append(p.calls, c)
	p.open++
	p.maxOpen = max(p.maxOpen, p.open)
	return &Sandbox{p: p, call: c, files: map[string][]byte{}}, nil
}

// RunAgent implements runtime.AgentRunner with the stage's scripted reply.
func (p *Provider) RunAgent(ctx context.Context, sb runtime.Sandbox, st *runtime.Stage, input string) (runtime.AgentResult, error) {
	s, ok := sb.(*Sandbox)
	if !ok {
		return runtime.AgentResult{}, fmt.Errorf("mock agent %s: sandbox is a %T, not a mock sandbox", st.Name, sb)
	}
	var stdout, stderr bytes.Buffer
	end, err := s.reply(ctx, input, &stdout, &stderr, 0, true)
	return runtime.AgentResult{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: end.ExitCode, Signal: end.Signal}, err
}

// Calls returns a copy of every sandbox opened so far, in open order.
func (p *Provider) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, len(p.calls))
	for i, c := range p.calls {
		out[i] = *c
		out[i].Args = slices.Clone(c.Args)
	}
	return out
}

// Opened lists the stage names of the sandboxes opened so far, in open order (a stage
// retried twice appears three times).
func (p *Provider) Opened() []string {
	var out []string
	for _, c := range p.Calls() {
		out = append(out, c.Stage)
	}
	return out
}

// Canceled lists the stages whose scripted run was cut short by its context.
func (p *Provider) Canceled() []string {
	var out []string
	for _, c := range p.Calls() {
		if c.Canceled {
			out = append(out, c.Stage)
		}
	}
	return out
}

// MaxConcurrent is the most sandboxes that were open at the same time.
func (p *Provider) MaxConcurrent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxOpen
}

// OpenNow reports how many sandboxes are open now (0 after a run that closed them all).
func (p *Provider) OpenNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

func (p *Provider) replyFor(c *Call) (Reply, bool) {
	rs := p.script[c.Stage]
	if len(rs) == 0 {
		return Reply{}, false
	}
	return rs[min(c.Attempt, len(rs))-1], true
}

// Sandbox is one scripted stage attempt. Files live in memory under /workspace.
type Sandbox struct {
	p     *Provider
	call  *Call
	mu    sync.Mutex
	files map[string][]byte
}

// Exec implements runtime.Sandbox: it reads stdin, waits the reply's Delay (bounded by
// ctx and req.Timeout) and writes the scripted output.
func (s *Sandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	if len(req.Args) == 0 {
		return runtime.ExecResult{}, fmt.Errorf("mock sandbox %s: exec: empty command", s.call.Stage)
	}
	var input []byte
	if req.Stdin != nil {
		var err error
		if input, err = io.ReadAll(req.Stdin); err != nil {
			return runtime.ExecResult{}, fmt.Errorf("mock sandbox %s: read stdin: %w", s.call.Stage, err)
		}
	}
	s.p.mu.Lock()
	s.call.Args, s.call.Env, s.call.Dir = slices.Clone(req.Args), req.Env, req.Dir
	s.p.mu.Unlock()
	stdout, stderr := orDiscard(req.Stdout), orDiscard(req.Stderr)
	end, err := s.reply(ctx, string(input), stdout, stderr, req.Timeout, false)
	if err == errTimeout {
		return runtime.ExecResult{ExitCode: -1, Signal: "SIGKILL", TimedOut: true}, nil
	}
	if err != nil {
		return runtime.ExecResult{}, err
	}
	return runtime.ExecResult{ExitCode: end.ExitCode, Signal: end.Signal}, nil
}

var errTimeout = errors.New("mock: timed out")

// ending is how the scripted "process" ended: it exited with ExitCode, or Signal
// killed it (ExitCode -1).
type ending struct {
	ExitCode int
	Signal   string
}

var noEnding = ending{ExitCode: -1}

func (s *Sandbox) reply(ctx context.Context, input string, stdout, stderr io.Writer, timeout time.Duration, agent bool) (ending, error) {
	s.p.mu.Lock()
	s.call.Input, s.call.Agent = input, agent
	r, scripted := s.p.replyFor(s.call)
	s.p.mu.Unlock()
	if !scripted {
		r = Reply{Stdout: input + s.call.Stage + "\n"}
	}
	if r.Delay > 0 {
		t := time.NewTimer(r.Delay)
		defer t.Stop()
		var timedOut <-chan time.Time
		if timeout > 0 && timeout < r.Delay {
			timedOut = time.After(timeout)
		}
		select {
		case <-t.C:
		case <-timedOut:
			s.markCanceled()
			return noEnding, errTimeout
		case <-ctx.Done():
			s.markCanceled()
			return noEnding, fmt.Errorf("mock sandbox %s: %w", s.call.Stage, ctx.Err())
		}
	}
	if r.Err != "" {
		return noEnding, fmt.Errorf("mock sandbox %s: %s", s.call.Stage, r.Err)
	}
	if _, err := io.WriteString(stdout, r.Stdout); err != nil {
		return noEnding, fmt.Errorf("mock sandbox %s: write stdout: %w", s.call.Stage, err)
	}
	if _, err := io.WriteString(stderr, r.Stderr); err != nil {
		return noEnding, fmt.Errorf("mock sandbox %s: write stderr: %w", s.call.Stage, err)
	}
	if r.Signal != "" {
		return ending{ExitCode: -1, Signal: r.Signal}, nil
	}
	return ending{ExitCode: r.ExitCode}, nil
}

func (s *Sandbox) markCanceled() {
	s.p.mu.Lock()
	s.call.Canceled = true
	s.p.mu.Unlock()
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// checkPath confines file calls to /workspace, like the real sandboxes.
func (s *Sandbox) checkPath(p string) error {
	if p != path.Clean(p) || !(p == "/workspace" || strings.HasPrefix(p, "/workspace/")) {
		return fmt.Errorf("mock sandbox %s: path %q: want a clean absolute path under /workspace", s.call.Stage, p)
	}
	return nil
}

// WriteFile implements runtime.Sandbox (in memory).
func (s *Sandbox) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	if err := s.checkPath(p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[p] = bytes.Clone(data)
	return nil
}

// ReadFile implements runtime.Sandbox (in memory).
func (s *Sandbox) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := s.checkPath(p); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[p]
	if !ok {
		return nil, fmt.Errorf("mock sandbox %s: read %s: %w", s.call.Stage, p, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// Close implements runtime.Sandbox; closing twice is harmless.
func (s *Sandbox) Close() error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if !s.call.Closed {
		s.call.Closed = true
		s.p.open--
	}
	return nil
}
