package runtime_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// bootingProvider reports the start-up phases a VM sandbox reports from Open.
type bootingProvider struct{ *mock.Provider }

func (p bootingProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	_ = runtime.Timed(ctx, runtime.PhaseBoot, "", func() error {
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	runtime.ReportPhase(ctx, runtime.Phase{Name: runtime.PhaseConnect, Start: time.Now()})
	return p.Provider.Open(ctx, spec)
}

func phaseNames(ps []runtime.Phase, attempt int) []string {
	var names []string
	for _, p := range ps {
		if p.Attempt == attempt {
			names = append(names, p.Name)
		}
	}
	return names
}

func TestPhasesPerAttempt(t *testing.T) {
	p := bootingProvider{mock.New(mock.Script{"flaky": {{ExitCode: 3}, {Stdout: "ok"}}})}
	var events []runtime.Event
	e := &runtime.Executor{
		Provider: p,
		Backoff:  func(int) time.Duration { return time.Millisecond },
		OnEvent: func(ev runtime.Event) {
			if ev.Kind == runtime.EventPhase {
				events = append(events, ev)
			}
		},
	}
	s := cmd("flaky")
	s.Retries = 1
	res := run(t, e, s)
	if !res.OK {
		t.Fatalf("run failed: %s", res.Error)
	}
	sr := res.Stages["flaky"]
	want := []string{runtime.PhaseBoot, runtime.PhaseConnect, runtime.PhaseWriteFile, runtime.PhaseExec, runtime.PhaseClose}
	for attempt := 1; attempt <= 2; attempt++ {
		if got := phaseNames(sr.Phases, attempt); !slices.Equal(got, want) {
			t.Errorf("attempt %d phases %v, want %v", attempt, got, want)
		}
	}
	if len(events) != len(sr.Phases) {
		t.Fatalf("%d phase events, %d phases in the result", len(events), len(sr.Phases))
	}
	var lastEnd int64
	for i, ph := range sr.Phases {
		if ev := events[i]; ev.Phase == nil || ev.Phase.Name != ph.Name || ev.Attempt != ph.Attempt || ev.Stage != "flaky" {
			t.Errorf("event %d = %+v, want phase %s of attempt %d", i, ev, ph.Name, ph.Attempt)
		}
		if ph.StartMS < 0 || ph.DurationMS < 0 || ph.StartMS+ph.DurationMS > res.DurationMS {
			t.Errorf("phase %s at %d ms for %d ms lies outside the run's %d ms", ph.Name, ph.StartMS, ph.DurationMS, res.DurationMS)
		}
		if ph.StartMS < lastEnd-1 && ph.Name != runtime.PhaseConnect {
			t.Errorf("phase %s starts at %d ms, before the previous one ended at %d ms", ph.Name, ph.StartMS, lastEnd)
		}
		lastEnd = ph.StartMS + ph.DurationMS
	}
	if boot := sr.Phases[0]; boot.Duration < 2*time.Millisecond {
		t.Errorf("vm.boot lasted %s, the provider slept 2ms in it", boot.Duration)
	}
	if ex := sr.Phases[3]; ex.Detail != "step" || ex.Error != "" {
		t.Errorf("exec phase detail %q error %q, want detail \"step\" (the program) and no error", ex.Detail, ex.Error)
	}
}

func TestPhaseErrorAndBound(t *testing.T) {
	p := mock.New(mock.Script{"dies": {{Err: "vm died"}}})
	s := cmd("dies")
	s.Retries = runtime.MaxPhases // 3 phases per attempt: more than MaxPhases in all
	res := run(t, &runtime.Executor{Provider: p, Backoff: func(int) time.Duration { return 0 }}, s)
	sr := res.Stages["dies"]
	if len(sr.Phases) != runtime.MaxPhases {
		t.Fatalf("%d phases kept, want the bound %d", len(sr.Phases), runtime.MaxPhases)
	}
	if want := 3*(runtime.MaxPhases+1) - runtime.MaxPhases; sr.DroppedPhases != want {
		t.Errorf("DroppedPhases = %d, want %d", sr.DroppedPhases, want)
	}
	if ex := sr.Phases[1]; ex.Name != runtime.PhaseExec || ex.Error == "" {
		t.Errorf("second phase %+v, want a failed exec", ex)
	}
}
