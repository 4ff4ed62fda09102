// Package report writes a run's HTML report (`voidbox exec --report FILE.html`): one
// self-contained file with a timeline of the run (a bar per stage attempt, retries and
// fan_out branches visible), each stage's status, exit code, duration, output excerpts,
// network counts, agent usage, and guest CPU/memory sparklines where the stage's guest
// was sampled (sparkline.go).
//
// A Recorder watches the executor's events to learn when each attempt started and
// ended, which runtime.Result does not keep; Write then combines those times with the
// Result. The file fetches nothing: CSS and SVG are inline, there is no script, and a
// Content-Security-Policy forbids loading anything should guest text ever slip past
// escaping. Guest text (stdout, stderr, tool inputs) is hostile: html/template escapes
// it and internal/termsafe removes terminal controls before it is shown.
package report

import (
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"sync"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// Recorder collects the times of a run's stage events. Give its OnEvent to
// runtime.Executor.OnEvent (or call it from the function there), then call Write once
// the run has returned. It is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	now    func() time.Time // time.Now; tests replace it with a fake clock
	start  time.Time
	stages map[string]*stageTrace
	order  []string // stage names in the order their first event arrived
}

// stageTrace is what the events said about one stage.
type stageTrace struct {
	attempts []attemptTrace
	tools    []toolTrace
	phases   []phaseTrace
	skipped  bool
}

// phaseTrace is one phase of an attempt (runtime.Phase), relative to the run's start.
type phaseTrace struct {
	name, detail string
	start, dur   time.Duration
}

// maxPhases bounds the phases kept per stage, as runtime.MaxPhases bounds a result's.
const maxPhases = runtime.MaxPhases

// attemptTrace is one attempt's wall time relative to the run's start. ended is false
// while it runs (and for good if the run's events stopped before it ended).
type attemptTrace struct {
	n          int
	start, end time.Duration
	ended      bool
	retried    bool   // it failed and the stage was retried
	err        string // why it failed, when it did
}

// toolTrace is one tool call an agent made, at its time relative to the run's start.
type toolTrace struct {
	at    time.Duration
	name  string
	input string
}

// New returns a Recorder whose clock starts now: create it just before the run starts.
func New() *Recorder {
	return newRecorder(time.Now)
}

func newRecorder(now func() time.Time) *Recorder {
	return &Recorder{now: now, start: now(), stages: map[string]*stageTrace{}}
}

// OnEvent records ev at the current time.
func (r *Recorder) OnEvent(ev runtime.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := r.now().Sub(r.start)
	st := r.stages[ev.Stage]
	if st == nil {
		st = &stageTrace{}
		r.stages[ev.Stage] = st
		r.order = append(r.order, ev.Stage)
	}
	switch ev.Kind {
	case runtime.EventStart:
		st.attempts = append(st.attempts, attemptTrace{n: ev.Attempt, start: at})
	case runtime.EventRetry:
		// A retry event follows the failed attempt at once; the backoff comes after it,
		// so the attempt ended now.
		st.endAttempt(at, errText(ev.Err), true)
	case runtime.EventEnd:
		st.endAttempt(at, errText(ev.Err), false)
	case runtime.EventSkip:
		st.skipped = true
	case runtime.EventTool:
		if ev.Tool != nil {
			st.tools = append(st.tools, toolTrace{at: at, name: ev.Tool.Name, input: ev.Tool.Input})
		}
	case runtime.EventPhase:
		if p := ev.Phase; p != nil && len(st.phases) < maxPhases {
			// Dated as it ran; at is when it was reported, its end.
			start := at - p.Duration
			if !p.Start.IsZero() && !r.start.IsZero() {
				start = p.Start.Sub(r.start)
			}
			st.phases = append(st.phases, phaseTrace{name: p.Name, detail: p.Detail, start: start, dur: p.Duration})
		}
	}
}

// endAttempt closes the attempt still running, if any: a stage cancelled while it
// waited for a sandbox slot ends with no attempt running.
func (st *stageTrace) endAttempt(at time.Duration, err string, retried bool) {
	if n := len(st.attempts); n > 0 && !st.attempts[n-1].ended {
		a := &st.attempts[n-1]
		a.end, a.ended, a.err, a.retried = at, true, err, retried
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// snapshot copies what was recorded so Write can render without holding the lock; now
// is where a bar of an attempt that never ended stops.
func (r *Recorder) snapshot() (start time.Time, order []string, stages map[string]stageTrace, now time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now = r.now().Sub(r.start)
	stages = make(map[string]stageTrace, len(r.stages))
	for name, st := range r.stages {
		c := stageTrace{skipped: st.skipped}
		c.attempts = append([]attemptTrace(nil), st.attempts...)
		c.tools = append([]toolTrace(nil), st.tools...)
		c.phases = append([]phaseTrace(nil), st.phases...)
		stages[name] = c
	}
	return r.start, append([]string(nil), r.order...), stages, now
}

// Write renders the report of res, with the times the Recorder saw, as one HTML file.
func (r *Recorder) Write(w io.Writer, res *runtime.Result) error {
	if res == nil {
		return errors.New("write report: no run result (nil *runtime.Result)")
	}
	start, order, traces, now := r.snapshot()
	if err := pageTemplate.Execute(w, buildPage(res, start, order, traces, now)); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

//go:embed report.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("report.html.tmpl").Parse(pageSource))
