package runtime

import (
	"context"
	"sync"
	"time"
)

// GuestSample is one sample of a VM stage's guest while its command (or agent) ran:
// the guest agent reads them from the guest's /proc (sandbox/vm). Other sandboxes
// report none.
type GuestSample struct {
	// At is when the sample was taken (the sandbox gives it; zero means now), AtMS the
	// same in milliseconds since the attempt's command started (the executor sets it).
	At   time.Time `json:"-"`
	AtMS int64     `json:"t_ms"`
	// CPU is the fraction (0..1) of all the guest's CPUs busy since the previous
	// sample; nil when the guest could not tell (no clock tick passed).
	CPU *float64 `json:"cpu"`
	// MemBytes is the guest's memory in use (MemTotal - MemAvailable), MemTotalBytes
	// what its kernel has (the box's memory less the kernel's own).
	MemBytes      uint64 `json:"mem_bytes"`
	MemTotalBytes uint64 `json:"-"` // the same in every sample: GuestStats has it once
	// NetRxBytes and NetTxBytes are bytes received and sent on the guest's interfaces
	// (loopback aside) since the command started.
	NetRxBytes uint64 `json:"net_rx_bytes"`
	NetTxBytes uint64 `json:"net_tx_bytes"`
	// Procs is the number of processes in the guest (kernel threads included).
	Procs int `json:"procs"`

	fromMS int64 // where the period the sample covers starts (a merged one covers several)
}

// GuestStats is what the samples of a stage's last attempt say: the stage's `guest`
// object in --json and the report's sparklines. It is nil for a stage whose sandbox
// sent no sample (local and mock sandboxes, a VM whose command never started):
// nothing was measured, so nothing is shown.
type GuestStats struct {
	// SampleCount is how many samples the guest sent.
	SampleCount int `json:"sample_count"`
	// Samples are the samples in time order, at most MaxGuestSamples: a longer run's
	// neighbouring samples are merged (time-weighted mean CPU, peak memory and
	// processes, the later network totals).
	Samples []GuestSample `json:"samples"`
	// CPUMean is the time-weighted mean of the samples' CPU, CPUPeak their highest;
	// nil when no sample had one.
	CPUMean *float64 `json:"cpu_mean"`
	CPUPeak *float64 `json:"cpu_peak"`
	// MemStartBytes is the first sample's memory in use, MemPeakBytes the highest.
	MemStartBytes uint64 `json:"mem_start_bytes"`
	MemPeakBytes  uint64 `json:"mem_peak_bytes"`
	MemTotalBytes uint64 `json:"mem_total_bytes"`
	// NetRxBytes and NetTxBytes are the bytes received and sent during the command.
	NetRxBytes uint64 `json:"net_rx_bytes"`
	NetTxBytes uint64 `json:"net_tx_bytes"`
	ProcsPeak  int    `json:"procs_peak"`
}

// MaxGuestSamples bounds GuestStats.Samples: a sparkline's worth of points, and a
// --json document that stays small for an hour-long stage.
const MaxGuestSamples = 120

type guestReporterKey struct{}

// ReportGuestSample passes a sample of the stage's guest to the executor. A Sandbox
// calls it from Exec (or an AgentRunner from RunAgent) with the ctx it got; the
// executor drops a sample older than the last one it kept (concurrent Execs of a
// workflow stage each sample the same guest). Elsewhere it does nothing.
func ReportGuestSample(ctx context.Context, s GuestSample) {
	if f, ok := ctx.Value(guestReporterKey{}).(func(GuestSample)); ok {
		f(s)
	}
}

// WantsGuestSamples reports whether ctx carries a receiver for ReportGuestSample, so a
// sandbox can leave sampling off when nobody would see the samples.
func WantsGuestSamples(ctx context.Context) bool {
	_, ok := ctx.Value(guestReporterKey{}).(func(GuestSample))
	return ok
}

// WithGuestSampler returns ctx with f as the receiver of ReportGuestSample, for code
// that drives a Sandbox itself (tests, benchmarks); the executor sets its own.
func WithGuestSampler(ctx context.Context, f func(GuestSample)) context.Context {
	return context.WithValue(ctx, guestReporterKey{}, f)
}

// guestSampling makes ctx collect one attempt's samples for stage, each also an
// EventSample; summary gives the attempt's GuestStats (nil without samples).
func (r *run) guestSampling(ctx context.Context, stage string) (context.Context, *guestRecorder) {
	g := &guestRecorder{}
	start := time.Now()
	return WithGuestSampler(ctx, func(s GuestSample) {
		if s.At.IsZero() {
			s.At = time.Now()
		}
		s.AtMS = max(s.At.Sub(start).Milliseconds(), 0)
		if g.add(s) {
			r.emit(Event{Stage: stage, Kind: EventSample, Sample: &s})
		}
	}), g
}

// guestRecorder keeps a bounded summary of an attempt's samples.
type guestRecorder struct {
	mu      sync.Mutex
	st      GuestStats
	stride  int          // samples merged into each kept one (doubles when full)
	pending *GuestSample // the kept sample being merged, up to stride samples
	merged  int          // samples in pending
	cpuSum  float64      // CPU x covered milliseconds, for the mean
	cpuMS   int64
	lastMS  int64
}

// add records s; it reports false for a sample out of time order, which is dropped.
func (g *guestRecorder) add(s GuestSample) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.st.SampleCount > 0 && s.AtMS < g.lastMS {
		return false
	}
	s.fromMS = g.lastMS
	g.lastMS = s.AtMS
	st := &g.st
	if st.SampleCount == 0 {
		st.MemStartBytes = s.MemBytes
		g.stride = 1
	}
	st.SampleCount++
	if s.CPU != nil {
		c := *s.CPU
		if st.CPUPeak == nil || c > *st.CPUPeak {
			st.CPUPeak = &c
		}
		// A sample covers the time since the previous one; the first, since the start.
		// One taken in the same millisecond still counts, as a millisecond.
		d := max(s.AtMS-s.fromMS, 1)
		g.cpuSum += c * float64(d)
		g.cpuMS += d
		mean := g.cpuSum / float64(g.cpuMS)
		st.CPUMean = &mean
	}
	st.MemPeakBytes = max(st.MemPeakBytes, s.MemBytes)
	st.MemTotalBytes = s.MemTotalBytes
	st.NetRxBytes, st.NetTxBytes = s.NetRxBytes, s.NetTxBytes
	st.ProcsPeak = max(st.ProcsPeak, s.Procs)

	if g.pending == nil {
		g.pending, g.merged = &s, 1
	} else {
		m := mergeSamples(*g.pending, s)
		g.pending = &m
		g.merged++
	}
	if g.merged == g.stride {
		g.keep()
	}
	return true
}

// keep appends the pending sample; a full list is halved by merging neighbours, and
// from then on twice as many samples make each kept one.
func (g *guestRecorder) keep() {
	g.st.Samples = append(g.st.Samples, *g.pending)
	g.pending, g.merged = nil, 0
	if len(g.st.Samples) < MaxGuestSamples {
		return
	}
	half := g.st.Samples[:0]
	for i := 0; i+1 < len(g.st.Samples); i += 2 {
		half = append(half, mergeSamples(g.st.Samples[i], g.st.Samples[i+1]))
	}
	if len(g.st.Samples)%2 == 1 {
		half = append(half, g.st.Samples[len(g.st.Samples)-1])
	}
	g.st.Samples = half
	g.stride *= 2
}

// mergeSamples is one sample standing for a and the later b.
func mergeSamples(a, b GuestSample) GuestSample {
	m := b
	m.fromMS = a.fromMS
	switch {
	case a.CPU != nil && b.CPU != nil:
		da, db := float64(max(a.AtMS-a.fromMS, 1)), float64(max(b.AtMS-b.fromMS, 1))
		c := (*a.CPU*da + *b.CPU*db) / (da + db)
		m.CPU = &c
	case b.CPU == nil:
		m.CPU = a.CPU
	}
	m.MemBytes = max(a.MemBytes, b.MemBytes)
	m.Procs = max(a.Procs, b.Procs)
	return m
}

// summary is the attempt's GuestStats, nil when no sample came.
func (g *guestRecorder) summary() *GuestStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.st.SampleCount == 0 {
		return nil
	}
	st := g.st
	st.Samples = append([]GuestSample(nil), g.st.Samples...)
	if g.pending != nil {
		st.Samples = append(st.Samples, *g.pending)
	}
	return &st
}
