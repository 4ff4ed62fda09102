package runtime

import (
	"context"
	"sync"
	"time"
)

// Phase names: the timed steps of a stage attempt. A sandbox reports the steps of its
// own start-up; the executor reports the rest.
const (
	PhasePrepare   = "vm.prepare"    // images, disks, agent program and network set up before boot
	PhaseBoot      = "vm.boot"       // the VMM starting until the guest agent first speaks
	PhaseConnect   = "agent.connect" // the agent handshake, from its first word to an open session
	PhaseExec      = "exec"          // the stage's command, or its agent
	PhaseWriteFile = "file.write"    // a file written into the sandbox (the stage input)
	PhaseReadFile  = "file.read"     // a file read back (an agent's output_file)
	PhaseClose     = "sandbox.close" // powering the sandbox off and releasing it
)

// MaxPhases bounds the phases a StageResult keeps over all its attempts: a workflow or
// a stage retried many times must not grow a result without bound. Later ones are
// counted in DroppedPhases.
const MaxPhases = 64

// Phase is one timed step of a stage attempt, for the trace (a span per phase), the
// metrics (boot time, exec count) and the report's timeline.
type Phase struct {
	Name    string `json:"name"`
	Attempt int    `json:"attempt"`
	// StartMS is when the phase began, in milliseconds since the run started.
	StartMS    int64  `json:"start_ms"`
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"` // e.g. the program an exec ran
	Error      string `json:"error,omitempty"`

	Start    time.Time     `json:"-"`
	Duration time.Duration `json:"-"`
}

type phaseReporterKey struct{}

// ReportPhase records one phase of the current stage attempt (Name, Start, Duration,
// Detail, Error; the rest is filled in). A sandbox calls it with the ctx its Open or
// Exec got; outside an executor's attempt it does nothing.
func ReportPhase(ctx context.Context, p Phase) {
	if f, ok := ctx.Value(phaseReporterKey{}).(func(Phase)); ok {
		f(p)
	}
}

// Timed runs f as phase name of ctx's attempt, from now until f returns.
func Timed(ctx context.Context, name, detail string, f func() error) error {
	start := time.Now()
	err := f()
	p := Phase{Name: name, Start: start, Duration: time.Since(start), Detail: detail}
	if err != nil {
		p.Error = err.Error()
	}
	ReportPhase(ctx, p)
	return err
}

// phaseLog collects one attempt's phases and passes each on as an EventPhase.
type phaseLog struct {
	r       *run
	stage   string
	attempt int
	mu      sync.Mutex
	phases  []Phase
}

func (r *run) newPhaseLog(stage string, attempt int) *phaseLog {
	return &phaseLog{r: r, stage: stage, attempt: attempt}
}

func (l *phaseLog) add(p Phase) {
	p.Attempt = l.attempt
	p.StartMS = p.Start.Sub(l.r.start).Milliseconds()
	p.DurationMS = p.Duration.Milliseconds()
	l.mu.Lock()
	l.phases = append(l.phases, p)
	l.mu.Unlock()
	l.r.emit(Event{Stage: l.stage, Kind: EventPhase, Attempt: l.attempt, Phase: &p})
}

// context returns ctx carrying the log as the attempt's phase (and egress) reporter.
func (l *phaseLog) context(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, egressReporterKey{}, l.egress)
	return context.WithValue(ctx, phaseReporterKey{}, l.add)
}

func (l *phaseLog) list() []Phase {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Phase(nil), l.phases...)
}

// keepPhases appends an attempt's phases to a stage result's, within MaxPhases.
func keepPhases(sr *StageResult, phases []Phase) {
	room := MaxPhases - len(sr.Phases)
	if room < len(phases) {
		sr.DroppedPhases += len(phases) - max(room, 0)
		phases = phases[:max(room, 0)]
	}
	sr.Phases = append(sr.Phases, phases...)
}

// EgressDecision is one decision of a networked stage's egress filter, as its network
// logged it (the log's budget bounds how many are reported).
type EgressDecision struct {
	Allowed        bool
	Proto          string // tcp, udp or dns
	Dst            string // the guest-visible destination address, "" for a name query
	Port           int
	Name           string // the DNS name, when the decision was about one
	Entry          string // the egress entry that allowed it
	Reason         string
	UnloggedBefore uint64 // decisions left out before this one (over the budget)
}

type egressReporterKey struct{}

// ReportEgress passes one egress decision of the current stage attempt on as an
// EventEgress. A sandbox calls it with the ctx its Open got, also after Open returned
// (decisions come while the stage runs); outside an executor's attempt it does nothing.
func ReportEgress(ctx context.Context, d EgressDecision) {
	if f, ok := ctx.Value(egressReporterKey{}).(func(EgressDecision)); ok {
		f(d)
	}
}

func (l *phaseLog) egress(d EgressDecision) {
	l.r.emit(Event{Stage: l.stage, Kind: EventEgress, Attempt: l.attempt, Egress: &d})
}
