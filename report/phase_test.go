package report

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// An attempt's bar carries strips for its start-up (prepare, boot, handshake) and its
// exec, placed where they ran; file transfers and close are not drawn.
func TestTimelinePhaseStrips(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := newRecorder(clock.now)
	base := clock.t
	phase := func(name string, from, dur time.Duration) runtime.Event {
		return runtime.Event{Stage: "box", Kind: runtime.EventPhase, Attempt: 1,
			Phase: &runtime.Phase{Name: name, Start: base.Add(from), Duration: dur}}
	}
	r.OnEvent(runtime.Event{Stage: "box", Kind: runtime.EventStart, Attempt: 1})
	clock.advance(2 * time.Second)
	r.OnEvent(phase(runtime.PhaseBoot, 0, 1500*time.Millisecond))
	r.OnEvent(phase(runtime.PhaseConnect, 1500*time.Millisecond, 500*time.Millisecond))
	clock.advance(2 * time.Second)
	r.OnEvent(phase(runtime.PhaseWriteFile, 2*time.Second, 10*time.Millisecond))
	r.OnEvent(phase(runtime.PhaseExec, 2*time.Second, 2*time.Second))
	r.OnEvent(runtime.Event{Stage: "box", Kind: runtime.EventEnd, Attempt: 1, Duration: 4 * time.Second})
	exit0 := 0
	res := &runtime.Result{OK: true, Order: []string{"box"}, DurationMS: 4000, Stages: map[string]*runtime.StageResult{
		"box": {Name: "box", Status: runtime.StatusOK, ExitCode: &exit0, Attempts: 1, DurationMS: 4000}}}
	var out bytes.Buffer
	if err := r.Write(&out, res); err != nil {
		t.Fatal(err)
	}
	row := timelineRows(t, parse(t, out.Bytes()))["box"]
	if len(row.bars) != 1 || len(row.phases) != 3 {
		t.Fatalf("bars %+v phases %+v: want one bar and three strips (boot, connect, exec)", row.bars, row.phases)
	}
	bar := row.bars[0]
	want := []struct {
		class      string
		from, upto float64 // fractions of the bar
	}{{"startup", 0, 0.375}, {"startup", 0.375, 0.5}, {"exec", 0.5, 1}}
	for i, w := range want {
		p := row.phases[i]
		from, upto := (p.x-bar.x)/bar.w, (p.x+p.w-bar.x)/bar.w
		if p.class != w.class || math.Abs(from-w.from) > 0.01 || math.Abs(upto-w.upto) > 0.01 {
			t.Errorf("strip %d: %s over [%.3f, %.3f] of the bar, want %s over [%.3f, %.3f]", i, p.class, from, upto, w.class, w.from, w.upto)
		}
	}
}
