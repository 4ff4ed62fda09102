package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/internal/textfmt"
	"github.com/voidbox/voidbox/runtime"
)

// page is what the template renders. Every string in it that came from the guest or
// the program has been through termsafe.Clean; html/template escapes it on output.
type page struct {
	OK       bool
	Error    string
	Started  string
	Duration string
	Output   excerpt
	Counts   []statusCount
	Timeline timeline
	Stages   []stageView
	// GuestRecorded: some stage has guest samples (sparkline.go).
	GuestRecorded bool
}

type statusCount struct {
	Status string
	N      int
}

// timeline is the SVG chart: one row per stage, a bar per attempt. Coordinates are in
// the viewBox's units; the SVG scales to the page's width.
type timeline struct {
	Width, Height float64
	ChartX        float64 // where the time axis starts, right of the stage names
	AxisY         float64
	Rows          []row
	Ticks         []tick
}

type row struct {
	Y, BarY, TextY float64
	Anchor         string // the id of the stage's details section
	Name           string // full name, for the tooltip
	Label          string // the name shortened to fit the label column
	Status         string // a CSS class: one of statusClasses
	Bars           []bar
	Tools          []toolTick
	Phases         []bar   // strips under the attempt bars: start-up and exec phases
	PhaseY         float64 // where the strips are drawn
	Note           string  // said in the row when it has no bar
	Shade          bool    // every other row has a background, to follow a row across
}

type bar struct {
	X, W  float64
	Class string
	Title string
}

type toolTick struct {
	X     float64
	Title string
}

type tick struct {
	X     float64
	Label string
}

type stageView struct {
	Anchor     string
	Name       string
	Status     string
	ExitCode   string
	Duration   string
	Attempts   int
	Error      string
	Timing     []string // one line per recorded attempt
	Stdout     excerpt
	Stderr     excerpt
	Output     excerpt
	OutputSame bool // the output is the stdout, so it is not shown twice
	Network    *runtime.NetworkCounts
	Agent      *agentView
	Guest      *guestView // nil: no samples, "not recorded"
}

type agentView struct {
	Model        string
	IsError      bool
	InputTokens  int64
	OutputTokens int64
	Cost         string
	Turns        int
	APIDuration  string
	Tools        []toolView
}

type toolView struct {
	At    string // "+1.203s" when the call's event was recorded, else ""
	Name  string
	Input string
}

// excerpt is guest text cut to a readable size: its start and end, with what was left
// out in between counted.
type excerpt struct {
	Text    string
	Bytes   int
	Omitted int
}

// Layout of the timeline, in viewBox units.
const (
	svgWidth    = 1000.0
	labelWidth  = 190.0
	axisHeight  = 26.0
	rowHeight   = 24.0
	barHeight   = 14.0
	minBarWidth = 1.5
	labelRunes  = 26
)

// Limits on the text taken from the guest: the report stays small enough to open even
// when a stage wrote its 64 MiB.
const (
	excerptHead = 2048 // bytes kept from the start of a stream
	excerptTail = 2048 // and from its end
	toolRunes   = 200  // of a tool call's input
)

// statusClasses are the CSS classes a status may become; anything else is "unknown",
// so a class attribute never carries an unexpected word.
var statusClasses = map[runtime.StageStatus]string{
	runtime.StatusOK:       "ok",
	runtime.StatusFailed:   "failed",
	runtime.StatusSkipped:  "skipped",
	runtime.StatusCanceled: "canceled",
}

func statusClass(s runtime.StageStatus) string {
	if c, ok := statusClasses[s]; ok {
		return c
	}
	return "unknown"
}

// buildPage combines the recorded times with the run's result.
func buildPage(res *runtime.Result, start time.Time, order []string, traces map[string]stageTrace, now time.Duration) page {
	p := page{
		OK:       res.OK,
		Error:    termsafe.Clean(res.Error),
		Started:  start.UTC().Format("2006-01-02 15:04:05 UTC"),
		Duration: textfmt.Duration(time.Duration(res.DurationMS) * time.Millisecond),
		Output:   cut(res.Output),
	}
	names := stageNames(res, order)
	counts := map[string]int{}
	for i, name := range names {
		sr := res.Stages[name]
		if sr == nil {
			// The events named a stage the result does not have: show what is known.
			sr = &runtime.StageResult{Name: name, Status: "unknown"}
		}
		counts[statusClass(sr.Status)]++
		p.Stages = append(p.Stages, buildStage(fmt.Sprintf("stage-%d", i+1), sr, traces[name]))
		p.GuestRecorded = p.GuestRecorded || p.Stages[i].Guest != nil
	}
	for _, s := range []string{"ok", "failed", "canceled", "skipped", "unknown"} {
		if counts[s] > 0 {
			p.Counts = append(p.Counts, statusCount{s, counts[s]})
		}
	}
	total := time.Duration(res.DurationMS) * time.Millisecond
	p.Timeline = buildTimeline(p.Stages, names, traces, total, now)
	return p
}

// stageNames is the result's declaration order, then any stage only the events named.
func stageNames(res *runtime.Result, recorded []string) []string {
	names := append([]string(nil), res.Order...)
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	var extra []string
	for n := range res.Stages {
		if !seen[n] {
			extra = append(extra, n)
			seen[n] = true
		}
	}
	sort.Strings(extra) // map order would make two reports of one run differ
	names = append(names, extra...)
	for _, n := range recorded {
		if !seen[n] {
			names = append(names, n)
			seen[n] = true
		}
	}
	return names
}

func buildStage(anchor string, sr *runtime.StageResult, tr stageTrace) stageView {
	v := stageView{
		Anchor:   anchor,
		Name:     termsafe.Clean(sr.Name),
		Status:   statusClass(sr.Status),
		ExitCode: exitCode(sr),
		Duration: textfmt.Duration(time.Duration(sr.DurationMS) * time.Millisecond),
		Attempts: sr.Attempts,
		Error:    termsafe.Clean(sr.Error),
		Stdout:   cut(sr.Stdout),
		Stderr:   cut(sr.Stderr),
		Output:   cut(sr.Output),
		Network:  sr.Network,
		Guest:    newGuestView(sr.Guest),
	}
	v.OutputSame = sr.Output == sr.Stdout
	for _, a := range tr.attempts {
		line := fmt.Sprintf("attempt %d: started at +%s", a.n, textfmt.Duration(a.start))
		if a.ended {
			line += fmt.Sprintf(", ran %s", textfmt.Duration(a.end-a.start))
		}
		if a.err != "" {
			line += ": " + termsafe.Clean(a.err)
		}
		v.Timing = append(v.Timing, line)
	}
	if ag := sr.Agent; ag != nil {
		av := &agentView{
			Model:        termsafe.Clean(ag.Model),
			IsError:      ag.IsError,
			InputTokens:  ag.InputTokens,
			OutputTokens: ag.OutputTokens,
			Cost:         fmt.Sprintf("$%.4f", ag.CostUSD),
			Turns:        ag.Turns,
			APIDuration:  textfmt.Duration(time.Duration(ag.DurationAPIMS) * time.Millisecond),
		}
		// The report's calls are the last attempt's; the recorded events of that attempt
		// give their times when they line up one to one.
		times := lastAttemptTools(tr)
		for i, c := range ag.ToolCalls {
			tv := toolView{Name: termsafe.Clean(c.Name), Input: shorten(c.Input, toolRunes)}
			if len(times) == len(ag.ToolCalls) && times[i].name == c.Name {
				tv.At = "+" + textfmt.Duration(times[i].at)
			}
			av.Tools = append(av.Tools, tv)
		}
		v.Agent = av
	}
	return v
}

// lastAttemptTools is the tool calls recorded after the last attempt started.
func lastAttemptTools(tr stageTrace) []toolTrace {
	if len(tr.attempts) == 0 {
		return tr.tools
	}
	from := tr.attempts[len(tr.attempts)-1].start
	var out []toolTrace
	for _, t := range tr.tools {
		if t.at >= from {
			out = append(out, t)
		}
	}
	return out
}

func exitCode(sr *runtime.StageResult) string {
	switch {
	case sr.ExitCode != nil:
		return fmt.Sprint(*sr.ExitCode)
	case sr.Signal != "":
		return "none (killed by " + termsafe.Clean(sr.Signal) + ")"
	}
	return "none (the process did not run)"
}

// phaseHeight is the height of a phase strip at the bottom of an attempt's bar.
const phaseHeight = 4.0

// phaseClass is the strip a phase is drawn as: the sandbox starting (prepare, boot,
// handshake) or the stage's process running; "" for phases not drawn (file transfers,
// close: too short to see).
func phaseClass(name string) string {
	switch name {
	case runtime.PhasePrepare, runtime.PhaseBoot, runtime.PhaseConnect:
		return "startup"
	case runtime.PhaseExec:
		return "exec"
	}
	return ""
}

func buildTimeline(stages []stageView, names []string, traces map[string]stageTrace, total, now time.Duration) timeline {
	// The axis covers the run and every recorded bar, so a bar never leaves the chart.
	span := total
	for _, tr := range traces {
		for _, a := range tr.attempts {
			span = max(span, a.start, a.end)
		}
		for _, t := range tr.tools {
			span = max(span, t.at)
		}
	}
	if span <= 0 {
		span = time.Millisecond
	}
	chartW := svgWidth - labelWidth - 10
	x := func(d time.Duration) float64 {
		return labelWidth + chartW*float64(d)/float64(span)
	}
	tl := timeline{Width: svgWidth, ChartX: labelWidth, AxisY: axisHeight}
	for i, sv := range stages {
		tr := traces[names[i]]
		y := axisHeight + float64(i)*rowHeight
		r := row{
			Y: y, BarY: y + (rowHeight-barHeight)/2, TextY: y + rowHeight/2 + 4,
			Anchor: sv.Anchor, Name: sv.Name, Label: shorten(sv.Name, labelRunes), Status: sv.Status,
			Shade: i%2 == 0,
		}
		for j, a := range tr.attempts {
			end, class := a.end, sv.Status
			switch {
			case !a.ended:
				end, class = max(now, a.start), "running"
			case a.retried || j < len(tr.attempts)-1:
				class = "retry"
			}
			title := fmt.Sprintf("%s attempt %d: +%s to +%s (%s)", sv.Name, a.n,
				textfmt.Duration(a.start), textfmt.Duration(end), textfmt.Duration(end-a.start))
			if a.err != "" {
				title += ": " + termsafe.Clean(a.err)
			}
			r.Bars = append(r.Bars, bar{X: x(a.start), W: max(x(end)-x(a.start), minBarWidth), Class: class, Title: title})
		}
		r.PhaseY = r.BarY + barHeight - phaseHeight
		for _, p := range tr.phases {
			class := phaseClass(p.name)
			if class == "" {
				continue
			}
			title := fmt.Sprintf("%s %s: +%s, %s", sv.Name, p.name, textfmt.Duration(p.start), textfmt.Duration(p.dur))
			if p.detail != "" {
				title += " (" + termsafe.Clean(p.detail) + ")"
			}
			r.Phases = append(r.Phases, bar{X: x(p.start), W: max(x(p.start+p.dur)-x(p.start), minBarWidth), Class: class, Title: title})
		}
		for _, t := range tr.tools {
			r.Tools = append(r.Tools, toolTick{X: x(t.at), Title: fmt.Sprintf("+%s tool %s %s",
				textfmt.Duration(t.at), termsafe.Clean(t.name), shorten(t.input, 80))})
		}
		if len(r.Bars) == 0 {
			switch {
			case tr.skipped || sv.Status == "skipped":
				r.Note = "skipped: never started"
			case len(traces) == 0:
				r.Note = "no times recorded"
			default:
				r.Note = sv.Status + ": no attempt started"
			}
		}
		tl.Rows = append(tl.Rows, r)
	}
	tl.Height = axisHeight + float64(len(stages))*rowHeight + 8
	step := tickStep(span)
	for d := time.Duration(0); d <= span; d += step {
		tl.Ticks = append(tl.Ticks, tick{X: x(d), Label: textfmt.Duration(d)})
	}
	return tl
}

// tickStep is a round interval (1, 2 or 5 times a power of ten milliseconds) that puts
// four to ten ticks on an axis of span.
func tickStep(span time.Duration) time.Duration {
	ms := float64(span) / float64(time.Millisecond) / 5
	if ms < 1 {
		return time.Millisecond
	}
	p := math.Pow(10, math.Floor(math.Log10(ms)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= ms {
			return time.Duration(m*p) * time.Millisecond
		}
	}
	return time.Duration(10*p) * time.Millisecond
}

// cut keeps the first excerptHead and last excerptTail bytes of s (on rune boundaries)
// and cleans them of terminal controls.
func cut(s string) excerpt {
	e := excerpt{Bytes: len(s)}
	if len(s) <= excerptHead+excerptTail {
		e.Text = termsafe.Clean(s)
		return e
	}
	head, tail := excerptHead, len(s)-excerptTail
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	e.Omitted = tail - head
	e.Text = termsafe.Clean(s[:head]) + fmt.Sprintf("\n[... %d bytes omitted ...]\n", e.Omitted) + termsafe.Clean(s[tail:])
	return e
}

// shorten cleans s, puts it on one line and keeps its first n runes, marking a cut.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(termsafe.Clean(s)), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
