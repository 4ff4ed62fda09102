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

// StageResult is one stage's outcome.
type StageResult struct {
	Name       string      `json:"name"`
	Status     StageStatus `json:"status"`
	ExitCode   int         `json:"exit_code"`
	Stdout     string      `json:"stdout"`
	Stderr     string      `json:"stderr"`
	Output     string      `json:"output"`
	DurationMS int64       `json:"duration_ms"`
	Attempts   int         `json:"attempts"`
	Error      string      `json:"error,omitempty"`
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
}

// EventKind says what happened to a stage.
type EventKind string

const (
	EventStart EventKind = "start"
	EventRetry EventKind = "retry"
	EventEnd   EventKind = "end"
	EventSkip  EventKind = "skip"
)
