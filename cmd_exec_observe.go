package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/voidbox/voidbox/report"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/telemetry"
)

// runObservers watch each run besides the live view: its trace (OTLP when an endpoint
// is set, --trace-file), its report (--report: the last run's) and its log (OTLP, and
// stderr under --verbose: each VM's console lines as "[vm:NAME] ...", and the phases
// of each stage).
type runObservers struct {
	tel        *telemetry.Telemetry
	log        *slog.Logger
	logging    bool // log goes somewhere
	reportPath string
	report     *report.Recorder // the current (then last) run's
	live       func(runtime.Event)

	mu    sync.Mutex
	trace *telemetry.RunTrace // the current run's, for its stages' contexts
}

// newRunObservers sets telemetry up for `voidbox exec`; with no endpoint, no trace
// file, no report and no verbose log it records nothing.
func newRunObservers(ctx context.Context, traceFile, reportPath string, live func(runtime.Event), verboseLog io.Writer) (*runObservers, error) {
	tel, err := telemetry.Setup(ctx, telemetry.Config{TraceFile: traceFile})
	if err != nil {
		return nil, err
	}
	return &runObservers{tel: tel, log: tel.Logger(verboseLog), logging: verboseLog != nil || tel.Logging(),
		reportPath: reportPath, live: live}, nil
}

// consoleSink is the VM provider's console callback: the provider is opened before
// the observers exist, so lines before attach (none: no stage runs before) are dropped.
type consoleSink struct {
	mu  sync.Mutex
	obs *runObservers
}

func (c *consoleSink) attach(o *runObservers) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.obs = o
}

func (c *consoleSink) line(stage, line string) {
	c.mu.Lock()
	o := c.obs
	c.mu.Unlock()
	if o == nil || !o.logging {
		return
	}
	telemetry.ConsoleLine(o.stageContext(stage), o.log, stage, line)
}

// stageContext is the context stage's records are logged with (its attempt's span).
func (o *runObservers) stageContext(stage string) context.Context {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.trace.StageContext(stage)
}

// logEvent logs the steps of each stage: phases as they end, retries, ends.
func (o *runObservers) logEvent(tr *telemetry.RunTrace, ev runtime.Event) {
	if !o.logging {
		return
	}
	ctx := tr.StageContext(ev.Stage)
	stage := slog.String(telemetry.LogStage, ev.Stage)
	switch ev.Kind {
	case runtime.EventPhase:
		p := ev.Phase
		attrs := []slog.Attr{stage, slog.Int("attempt", p.Attempt), slog.Duration("duration", p.Duration.Round(time.Millisecond))}
		if p.Detail != "" {
			attrs = append(attrs, slog.String("detail", p.Detail))
		}
		level := slog.LevelInfo
		if p.Error != "" {
			level = slog.LevelWarn
			attrs = append(attrs, slog.String("error", p.Error))
		}
		o.log.LogAttrs(ctx, level, p.Name, attrs...)
	case runtime.EventRetry:
		o.log.LogAttrs(ctx, slog.LevelWarn, "retry", stage, slog.Int("attempt", ev.Attempt), slog.Any("error", ev.Err))
	case runtime.EventEnd:
		if ev.Result != nil {
			o.log.LogAttrs(ctx, slog.LevelInfo, "stage end", stage, slog.String("status", string(ev.Result.Status)),
				slog.Duration("duration", ev.Duration.Round(time.Millisecond)))
		}
	}
}

// runObservation is how one run is watched: its context (carrying its trace), the
// executor's event callback, the stages' trace context, and what to call at its end.
type runObservation struct {
	ctx         context.Context
	onEvent     func(runtime.Event)
	traceparent func(stage string) string
	end         func(*runtime.Result)
}

// begin starts watching one run of root.
func (o *runObservers) begin(ctx context.Context, root runtime.Node) runObservation {
	ctx, trace := o.tel.Run(ctx, "voidbox exec")
	trace.Describe(root)
	o.mu.Lock()
	o.trace = trace
	o.mu.Unlock()
	var rec *report.Recorder
	if o.reportPath != "" {
		rec = report.New()
		o.report = rec
	}
	onEvent := func(ev runtime.Event) {
		if o.live != nil {
			o.live(ev)
		}
		trace.OnEvent(ev)
		o.logEvent(trace, ev)
		if rec != nil {
			rec.OnEvent(ev)
		}
	}
	return runObservation{ctx: ctx, onEvent: onEvent, traceparent: trace.Traceparent, end: trace.End}
}

// finish writes the report of the last run and flushes the trace, bounded so that an
// unreachable collector cannot hold the exit.
func (o *runObservers) finish(last *runtime.Result) []error {
	var errs []error
	if o.report != nil && last != nil {
		if err := writeReport(o.reportPath, o.report, last); err != nil {
			errs = append(errs, fmt.Errorf("write report %s: %w", o.reportPath, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.tel.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("export the trace: %w", err))
	}
	return errs
}

func writeReport(path string, rec *report.Recorder, res *runtime.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rec.Write(f, res); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
