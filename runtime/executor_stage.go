package runtime

import (
	"context"
	"errors"
	"fmt"
	"github.com/voidbox/voidbox/internal/termsafe"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// InputPath is where every stage finds its input inside its sandbox (also on stdin).
const InputPath = "/workspace/input"

// WorkDir is the working directory of stage commands.
const WorkDir = "/workspace"

// outcome is one attempt's result.
type outcome struct {
	stdout, stderr string
	exitCode       *int   // nil unless the process exited (see StageResult.ExitCode)
	signal         string // the signal that killed the process
	err            error  // nil: the attempt succeeded
	permanent      bool   // a retry cannot help (e.g. the provider cannot run agents)
	network        *NetworkCounts
	agent          *AgentReport
	steps          []StepResult // a workflow stage's steps
	guest          *GuestStats  // the guest's samples (guest.go)
	phases         []Phase
}

// stage runs s (with its retries) and returns its output: stdout on success, "" otherwise.
func (r *run) stage(s *Stage, input string) string {
	if r.ctx.Err() != nil {
		r.skip(s)
		return ""
	}
	start := time.Now()
	sr := &StageResult{Name: s.Name}
	var out outcome
	for attempt := 1; ; attempt++ {
		if !r.acquire() {
			if attempt == 1 {
				r.skip(s)
				return ""
			}
			r.cancelled(sr)
			break
		}
		sr.Attempts = attempt
		r.emit(Event{Stage: s.Name, Kind: EventStart, Attempt: attempt})
		out = r.attempt(s, input, attempt)
		r.release()
		keepPhases(sr, out.phases)
		sr.ExitCode, sr.Signal, sr.Stdout, sr.Stderr = out.exitCode, out.signal, out.stdout, out.stderr
		sr.Network, sr.Agent, sr.Steps = out.network, out.agent, out.steps
		sr.Guest = out.guest
		if out.err == nil {
			sr.Status, sr.Output, sr.Error = StatusOK, out.stdout, ""
			break
		}
		if r.ctx.Err() != nil {
			r.cancelled(sr)
			break
		}
		if out.permanent || attempt > s.Retries {
			sr.Status, sr.Error = StatusFailed, out.err.Error()
			break
		}
		r.emit(Event{Stage: s.Name, Kind: EventRetry, Attempt: attempt + 1, Err: out.err})
		if !r.sleep(r.backoff(attempt)) {
			r.cancelled(sr)
			break
		}
	}
	d := time.Since(start)
	sr.DurationMS = d.Milliseconds()
	r.record(sr)
	var evErr error
	if sr.Status != StatusOK {
		evErr = errors.New(sr.Error)
	}
	r.emit(Event{Stage: s.Name, Kind: EventEnd, Attempt: sr.Attempts, Duration: d, Err: evErr, Result: sr})
	if sr.Status == StatusFailed && s.OnFailure != FailContinue {
		r.failStop(s.Name, sr.Error)
	}
	return sr.Output
}

// cancelled marks a started stage as stopped by the run (a sibling's failure or ctx).
func (r *run) cancelled(sr *StageResult) {
	sr.Status, sr.Output = StatusCanceled, ""
	r.mu.Lock()
	why := r.stopErr
	r.mu.Unlock()
	if why == "" {
		why = "the run was cancelled"
	}
	sr.Error = why
}

// sleep waits d unless the run stops first; it reports whether the full wait happened.
func (r *run) sleep(d time.Duration) bool {
	if d <= 0 {
		return r.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func specFor(s *Stage) SandboxSpec {
	return SandboxSpec{
		Name: s.Name, MemoryMB: s.MemoryMB, VCPUs: s.VCPUs, Image: s.Image,
		Network: s.Network, Egress: s.Egress, Ports: s.Ports, Mounts: s.Mounts, Allow: s.Allow, Skills: s.Skills,
		Agent: s.Prompt != "", LLM: s.LLM,
	}
}

// attempt runs s once in a fresh sandbox: start-up (bounded by the executor's boot
// timeout), then the command or agent (bounded by the stage's timeout). The sandbox is
// closed on every path, a panic in a provider included (it becomes this attempt's error,
// so the other stages' sandboxes are still closed by their own attempts).
func (r *run) attempt(s *Stage, input string, n int) (o outcome) {
	agent, isAgent := r.e.Provider.(AgentRunner)
	if len(s.Cmd) == 0 && len(s.Steps) == 0 && !isAgent {
		o.err = fmt.Errorf("agent stages (prompt=) are not supported by the %s sandbox yet", r.e.Provider.Name())
		o.permanent = true
		return o
	}
	phases := r.newPhaseLog(s.Name, n)
	ctx := phases.context(r.ctx)
	defer func() { o.phases = phases.list() }()
	defer func() {
		if p := recover(); p != nil {
			o.err = fmt.Errorf("%s sandbox panicked: %v", r.e.Provider.Name(), p)
		}
	}()
	sb, err := r.boot(ctx, s, input)
	if sb != nil {
		defer func() {
			if nr, ok := sb.(NetworkReporter); ok {
				if c, ok := nr.NetworkCounts(); ok {
					o.network = &c
				}
			}
			// The stage's work is done either way; a failed close is worth seeing, not a retry.
			if err := Timed(ctx, PhaseClose, "", sb.Close); err != nil {
				o.stderr += fmt.Sprintf("\nvoidbox: closing sandbox: %v\n", err)
			}
		}()
	}
	if err != nil {
		o.err = err
		o.permanent = errors.Is(err, ErrUnsupported)
		return o
	}
	if !isAgent || len(s.Cmd) > 0 || len(s.Steps) > 0 {
		agent = nil
	}
	return r.execute(ctx, sb, r.withTraceContext(s), input, agent)
}

// boot opens s's sandbox and writes its input, within the executor's boot timeout. A
// sandbox that opened is returned even when writing the input failed, for the caller to
// close.
func (r *run) boot(ctx context.Context, s *Stage, input string) (Sandbox, error) {
	limit := r.e.BootTimeout
	if limit <= 0 {
		limit = BootTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	name := r.e.Provider.Name()
	sb, err := r.e.Provider.Open(ctx, specFor(s))
	if err != nil {
		sb, err = nil, fmt.Errorf("open %s sandbox: %w", name, err)
	} else if err = Timed(ctx, PhaseWriteFile, InputPath, func() error {
		return sb.WriteFile(ctx, InputPath, []byte(input), 0o644)
	}); err != nil {
		err = fmt.Errorf("write %s: %w", InputPath, err)
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && r.ctx.Err() == nil {
		// The provider's own words follow: for a VM they quote the guest console.
		err = fmt.Errorf("boot %s sandbox: timed out after %s (the stage's timeout does not include boot): %w", name, limit, err)
	}
	return sb, err
}

// withTraceContext returns s with TRACEPARENT (W3C trace context) in its environment
// when the executor traces the run, so that tools in the sandbox that trace join it.
func (r *run) withTraceContext(s *Stage) *Stage {
	if r.e.Traceparent == nil {
		return s
	}
	tp := r.e.Traceparent(s.Name)
	if tp == "" {
		return s
	}
	c := *s
	c.Env = make(map[string]string, len(s.Env)+1)
	for k, v := range s.Env {
		c.Env[k] = v
	}
	c.Env["TRACEPARENT"] = tp
	return &c
}

// execute runs s's command (or, with agent set, its agent) in sb. The stage's timeout
// starts here, when the command starts.
func (r *run) execute(attemptCtx context.Context, sb Sandbox, s *Stage, input string, agent AgentRunner) (o outcome) {
	var ctx context.Context
	var cancel context.CancelFunc
	if s.Timeout > 0 {
		ctx, cancel = context.WithTimeout(attemptCtx, s.Timeout)
	} else {
		ctx, cancel = context.WithCancel(attemptCtx) // cancelled on output overflow
	}
	defer cancel()
	ctx, guest := r.guestSampling(ctx, s.Name)
	defer func() { o.guest = guest.summary() }()
	stdout := &capWriter{limit: r.limit, onOverflow: cancel}
	stderr := &capWriter{limit: r.limit, onOverflow: cancel}
	defer func() {
		if o.err == nil && (stdout.overflow() || stderr.overflow()) {
			o.err = errOverflow
		}
		if o.err != nil {
			o.err = r.classify(ctx, s, stdout, stderr, o.err)
		}
	}()
	if len(s.Steps) > 0 {
		return r.runSteps(ctx, sb, s, stdout, stderr)
	}
	if agent != nil {
		report := func(c ToolCall) { r.emit(Event{Stage: s.Name, Kind: EventTool, Tool: &c}) }
		var res AgentResult
		err := Timed(ctx, PhaseExec, "agent", func() (err error) {
			res, err = agent.RunAgent(withToolReporter(ctx, report), sb, s, input)
			return err
		})
		stdout.WriteString(res.Stdout)
		stderr.WriteString(res.Stderr)
		o.stdout, o.stderr = stdout.String(), stderr.String()
		o.exitCode, o.signal = processEnd(res.ExitCode, res.Signal, err)
		o.agent = res.Agent
		switch {
		case err != nil:
			o.err = fmt.Errorf("agent: %w", err)
		case res.Agent != nil && res.Agent.IsError:
			// The agent finished but says it failed: its own words are the error.
			o.err = fmt.Errorf("agent: %s", strings.TrimSpace(res.Agent.Result))
		case res.ExitCode != 0 || res.Signal != "":
			o.err = exitError(res.ExitCode, res.Signal, o.stderr)
		case s.OutputFile != "":
			o.err = Timed(ctx, PhaseReadFile, s.OutputFile, func() (err error) {
				o.stdout, err = readOutputFile(ctx, sb, s.OutputFile, r.limit)
				return err
			})
		}
		return o
	}
	req := ExecRequest{
		Args: s.Cmd, Env: s.Env, Dir: WorkDir,
		Stdin: strings.NewReader(input), Stdout: stdout, Stderr: stderr,
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = max(time.Until(dl), time.Millisecond)
	}
	var res ExecResult
	err := Timed(ctx, PhaseExec, s.Cmd[0], func() (err error) {
		res, err = sb.Exec(ctx, req)
		return err
	})
	o.stdout, o.stderr = stdout.String(), stderr.String()
	o.exitCode, o.signal = processEnd(res.ExitCode, res.Signal, err)
	switch {
	case err != nil:
		o.err = fmt.Errorf("exec %s: %w", s.Cmd[0], err)
		// A program that does not exist will not appear on a retry.
		o.permanent = errors.Is(err, ErrCommandNotFound)
	case res.TimedOut:
		o.err = errTimedOut
	case res.ExitCode != 0 || res.Signal != "":
		o.err = exitError(res.ExitCode, res.Signal, o.stderr)
	}
	return o
}

// processEnd is what a stage result says of how its process ended: the signal that
// killed it, else its exit code when it exited. A sandbox that returns an error without
// naming a signal gives no exit code: the process never ran (refused, not found, the
// sandbox failed), or how it ended is unknown. Its ExecResult is then the zero value,
// whose ExitCode 0 must not be passed off as a clean exit.
func processEnd(code int, signal string, err error) (*int, string) {
	switch {
	case signal != "":
		return nil, signal
	case err != nil:
		return nil, ""
	}
	return &code, ""
}

var (
	errTimedOut = errors.New("timed out")
	errOverflow = errors.New("output overflow")
)

// classify turns an attempt error into the message users see, preferring the root cause:
// too much output, then the stage timeout, then what the sandbox said.
func (r *run) classify(ctx context.Context, s *Stage, stdout, stderr *capWriter, err error) error {
	switch {
	case stdout.overflow() || stderr.overflow():
		return fmt.Errorf("output exceeds %s (stdout and stderr are each capped)", sizeString(r.limit))
	case errors.Is(err, errTimedOut) || (s.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) && r.ctx.Err() == nil):
		return fmt.Errorf("timed out after %s", s.Timeout)
	}
	return err
}

func exitError(code int, signal, stderr string) error {
	msg := fmt.Sprintf("exit code %d", code)
	if signal != "" {
		msg = "killed by " + signal
	}
	if tail := lastLine(stderr); tail != "" {
		msg += ": " + tail
	}
	return errors.New(msg)
}

// lastLine is the last non-empty line of s, shortened: the likeliest useful hint.
func lastLine(s string) string {
	// Guest output: no escape sequence may reach the terminal through an error.
	s = strings.TrimRight(termsafe.Clean(s), " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func sizeString(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// capWriter keeps up to limit bytes. Past the limit it cancels the attempt and fails
// further writes, so a runaway process is stopped instead of filling host memory.
type capWriter struct {
	mu         sync.Mutex
	buf        strings.Builder
	limit      int
	over       bool
	onOverflow func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over {
		return 0, errOverflow
	}
	if w.buf.Len()+len(p) > w.limit {
		w.buf.Write(p[:w.limit-w.buf.Len()])
		w.over = true
		if w.onOverflow != nil {
			w.onOverflow()
		}
		return 0, errOverflow
	}
	return w.buf.Write(p)
}

func (w *capWriter) WriteString(s string) { _, _ = w.Write([]byte(s)) }

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *capWriter) overflow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.over
}

// readOutputFile reads an agent stage's output_file from its sandbox: the stage's output
// when the agent was told to write its result there. A missing file fails the stage.
func readOutputFile(ctx context.Context, sb Sandbox, path string, limit int) (string, error) {
	data, err := sb.ReadFile(ctx, path)
	if err != nil {
		return "", fmt.Errorf("output_file %s: the agent did not leave it readable: %w", path, err)
	}
	if len(data) > limit {
		return "", fmt.Errorf("output_file %s: %d bytes exceed %s", path, len(data), sizeString(limit))
	}
	return string(data), nil
}
