package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"time"
)

// Executor runs a stage graph: one sandbox per stage attempt, pipes in sequence, fan-outs
// concurrently, with timeouts, retries and failure domains.
//
// Result.OK is false when the run stopped: a stage with on_failure="stop" failed (after
// its retries), a fan_out's output would exceed MaxOutputBytes, or ctx was cancelled.
// A stage with on_failure="continue" that fails keeps
// its status "failed" and its error, passes "" on as its output, and leaves Result.OK
// true: the author declared that failure acceptable. Result.Output is the root node's
// output when OK, "" otherwise.
type Executor struct {
	// Provider opens one sandbox per stage attempt.
	Provider Provider
	// MaxParallel bounds the stage attempts that hold an open sandbox at once;
	// <= 0 means runtime.NumCPU().
	MaxParallel int
	// Traceparent, when set, gives the W3C traceparent of a stage's current attempt,
	// passed to the stage as TRACEPARENT ("" leaves it out).
	Traceparent func(stage string) string
	// OnEvent receives live progress. Calls are serialized by the executor (never two at
	// once), so it need not lock, but it runs on the stages' goroutines: keep it quick.
	OnEvent func(Event)
	// Backoff is the wait before retry number attempt (1 for the first retry). nil means
	// exponential: 200ms * 2^(attempt-1), capped at 10s.
	Backoff func(attempt int) time.Duration
	// BootTimeout bounds each attempt's start-up: Provider.Open (for a VM, the boot and
	// the agent handshake) plus writing /workspace/input. A stage's own timeout starts
	// only when its command starts, so a slow boot (TCG, a loaded host, many concurrent
	// boots) does not eat into it. <= 0 means the package's BootTimeout. A start-up that
	// runs out of time fails the attempt with "boot SANDBOX sandbox: timed out after D";
	// like any sandbox failure it is transient, so the stage's retries apply.
	BootTimeout time.Duration

	// Input is the first stage's input (`voidbox run --input`); "" for none.
	Input string

	// outputLimit caps each captured stream; 0 means MaxOutputBytes. Tests lower it.
	outputLimit int
}

// MaxOutputBytes caps every value passed between stages: a stage's captured stdout and
// stderr each (a stage that writes more fails with "output exceeds 64 MiB" rather than
// exhausting host memory), and a fan_out's output, the JSON array of its branches'
// outputs (a fan_out that would exceed it stops the run). A pipe's output is its last
// element's, so it is bounded too, and so is every stage's input.
const MaxOutputBytes = 64 << 20

// AgentRunner is implemented by providers whose sandboxes can run agent stages (Prompt
// set, Cmd empty). The executor opens the sandbox, writes /workspace/input, then hands
// the stage to RunAgent instead of calling Exec.
type AgentRunner interface {
	RunAgent(ctx context.Context, sb Sandbox, st *Stage, input string) (AgentResult, error)
}

// AgentResult is how an agent run ended. Stdout is the agent's answer and becomes the
// stage's output; Stderr is its log/transcript; a non-zero ExitCode, or a Signal that
// killed the agent, fails the stage.
type AgentResult struct {
	Stdout   string
	Stderr   string
	ExitCode int    // -1 when killed by a signal
	Signal   string // e.g. "SIGKILL" when killed
	// Agent is what the agent reported (nil when the runner has no report).
	Agent *AgentReport
}

// DefaultBackoff is the Backoff used when Executor.Backoff is nil.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := 200 * time.Millisecond
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// run is the state of one Executor.Run call.
type run struct {
	e       *Executor
	ctx     context.Context // cancelled by Ctrl-C (parent) or a "stop" failure
	stop    context.CancelFunc
	sem     chan struct{}
	limit   int
	start   time.Time // when Run began: phases are dated from it
	eventMu sync.Mutex

	mu      sync.Mutex
	results map[string]*StageResult
	stopErr string // the first "stop" failure: "stage NAME: why" or "fan_out(...) ..."
}

// Run validates root and executes it. The error is non-nil only for a graph that cannot
// run (see Validate); stage failures and cancellation are reported in the Result.
func (e *Executor) Run(ctx context.Context, root Node) (*Result, error) {
	if err := validateForRun(root); err != nil {
		return nil, err
	}
	if e.Provider == nil {
		return nil, errors.New("executor: no sandbox provider")
	}
	parallel := e.MaxParallel
	if parallel <= 0 {
		parallel = goruntime.NumCPU()
	}
	limit := e.outputLimit
	if limit <= 0 {
		limit = MaxOutputBytes
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	r := &run{
		e:       e,
		ctx:     runCtx,
		stop:    stop,
		sem:     make(chan struct{}, parallel),
		limit:   limit,
		results: map[string]*StageResult{},
		start:   time.Now(),
	}
	start := r.start
	output := r.node(root, e.Input)

	res := &Result{Stages: r.results, DurationMS: time.Since(start).Milliseconds()}
	for _, s := range root.Stages() {
		res.Order = append(res.Order, s.Name)
		// Every stage is accounted for; a stage the walk never reached was skipped.
		if _, ok := r.results[s.Name]; !ok {
			r.skip(s)
		}
	}
	switch {
	case r.stopErr != "":
		res.Error = r.stopErr
	case ctx.Err() != nil:
		res.Error = Cancelled
	default:
		res.OK = true
		res.Output = output
	}
	return res, nil
}

// node runs n with input and returns its output.
func (r *run) node(n Node, input string) string {
	switch n := n.(type) {
	case *Pipe:
		// Keep walking after a stop so each remaining stage is recorded as skipped.
		for _, c := range n.Nodes {
			input = r.node(c, input)
		}
		return input
	case *FanOut:
		return r.fanOut(n, input)
	case *Stage:
		return r.stage(n, input)
	}
	panic(fmt.Sprintf("runtime: unknown node %T", n)) // validateForRun rules this out
}

func (r *run) emit(ev Event) {
	if r.e.OnEvent == nil {
		return
	}
	r.eventMu.Lock()
	defer r.eventMu.Unlock()
	r.e.OnEvent(ev)
}

func (r *run) record(sr *StageResult) {
	r.mu.Lock()
	r.results[sr.Name] = sr
	r.mu.Unlock()
}

func (r *run) skip(s *Stage) {
	sr := &StageResult{Name: s.Name, Status: StatusSkipped, Error: "the run stopped before this stage started"}
	r.record(sr)
	r.emit(Event{Stage: s.Name, Kind: EventSkip, Result: sr})
}

// failStop records a stage's "stop" failure and cancels the rest of the run.
func (r *run) failStop(name, why string) { r.fail(fmt.Sprintf("stage %s: %s", name, why)) }

// fail records why the run stops and cancels the rest of it; only the first call
// becomes the run's error.
func (r *run) fail(msg string) {
	r.mu.Lock()
	if r.stopErr == "" {
		r.stopErr = msg
	}
	r.mu.Unlock()
	r.stop()
}

// acquire takes a parallelism slot, or reports false when the run stopped first.
func (r *run) acquire() bool {
	select {
	case r.sem <- struct{}{}:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (r *run) release() { <-r.sem }

func (r *run) backoff(attempt int) time.Duration {
	if r.e.Backoff != nil {
		return r.e.Backoff(attempt)
	}
	return DefaultBackoff(attempt)
}
