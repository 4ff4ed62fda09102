package runtime

import "time"

// StageStatus is where a stage ended.
type StageStatus string

const (
	StatusOK       StageStatus = "ok"
	StatusFailed   StageStatus = "failed"
	StatusSkipped  StageStatus = "skipped"  // never started: an earlier failure stopped the run
	StatusCanceled StageStatus = "canceled" // started, then stopped by a sibling's failure or Ctrl-C
)

// Cancelled is Result.Error of a run that its context cancelled (Ctrl-C, a signal,
// `voidbox exec --timeout`): the README's contract for run()'s result.error.
const Cancelled = "cancelled"

// StageResult is one stage's outcome.
type StageResult struct {
	Name   string      `json:"name"`
	Status StageStatus `json:"status"`
	// ExitCode is the last attempt's exit status when its process exited, and nil when
	// there is none to give: the process never ran (the allow list refused it, it does
	// not exist, the sandbox failed or did not boot, the stage was skipped) or a signal
	// killed it. A made-up 0 or -1 would read as an outcome the process never had.
	ExitCode *int `json:"exit_code"`
	// Signal names the signal that killed the last attempt's process ("SIGKILL"), and
	// is "" when it exited or never ran.
	Signal     string `json:"signal,omitempty"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Output     string `json:"output"`
	DurationMS int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts"`
	// Error says why the stage failed, was skipped or was cancelled, without repeating
	// Status ("the run was cancelled", not "canceled: the run was cancelled").
	Error string `json:"error,omitempty"`
	// Network is the last attempt's egress decisions, for a box with network = True.
	Network *NetworkCounts `json:"network,omitempty"`
	// Agent is the last attempt's agent report, for an agent stage whose agent ran.
	Agent *AgentReport `json:"agent,omitempty"`
	// Steps are a workflow stage's steps in declaration order (see Stage.Steps).
	Steps []StepResult `json:"steps,omitempty"`
	// Phases are the timed steps of every attempt (boot, handshake, exec, ...), in the
	// order they ended, at most MaxPhases; DroppedPhases counts the rest.
	Phases        []Phase `json:"phases,omitempty"`
	DroppedPhases int     `json:"dropped_phases,omitempty"`
	// Guest is the last attempt's guest CPU/memory/network/process samples (guest.go);
	// nil when the sandbox measured nothing (local, mock).
	Guest *GuestStats `json:"guest,omitempty"`
}

// Result is a whole run's outcome.
type Result struct {
	OK         bool                    `json:"ok"`
	Output     string                  `json:"output"`
	Stages     map[string]*StageResult `json:"stages"`
	Order      []string                `json:"order"` // stage names in declaration order
	DurationMS int64                   `json:"duration_ms"`
	Error      string                  `json:"error,omitempty"`
}

// Event reports a stage's progress to a live view.
type Event struct {
	Stage    string
	Kind     EventKind
	Attempt  int
	Duration time.Duration
	Err      error
	Result   *StageResult
	Tool     *ToolCall       // EventTool: the call the agent just made
	Phase    *Phase          // EventPhase: the step of the attempt that just ended
	Sample   *GuestSample    // EventSample: the stage's guest, sampled while it runs
	Egress   *EgressDecision // EventEgress: a decision of the stage's egress filter
}

// EventKind says what happened to a stage.
type EventKind string

const (
	EventStart  EventKind = "start"
	EventRetry  EventKind = "retry"
	EventEnd    EventKind = "end"
	EventSkip   EventKind = "skip"
	EventTool   EventKind = "tool"   // an agent stage's agent called a tool
	EventPhase  EventKind = "phase"  // a step of an attempt (boot, exec, ...) ended
	EventEgress EventKind = "egress" // the stage's network allowed or refused a destination
	// EventSample: a VM stage's guest was sampled (about every 500ms while it runs);
	// a live view that prints a line per event should skip it.
	EventSample EventKind = "sample"
)
