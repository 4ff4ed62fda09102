package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/voidbox/voidbox/report"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/telemetry"
)

// runObservers watch each run besides the live view: its trace (OTLP when an endpoint
// is set, --trace-file) and its report (--report: the last run's).
type runObservers struct {
	tel        *telemetry.Telemetry
	reportPath string
	report     *report.Recorder // the current (then last) run's
	live       func(runtime.Event)
}

// newRunObservers sets telemetry up for `voidbox exec`; with no endpoint, no trace
// file and no report it records nothing.
func newRunObservers(ctx context.Context, traceFile, reportPath string, live func(runtime.Event)) (*runObservers, error) {
	tel, err := telemetry.Setup(ctx, telemetry.Config{TraceFile: traceFile})
	if err != nil {
		return nil, err
	}
	return &runObservers{tel: tel, reportPath: reportPath, live: live}, nil
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
