package report

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRecorderTimes(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := newRecorder(clock.now)
	ev := func(after time.Duration, e runtime.Event) {
		clock.advance(after)
		r.OnEvent(e)
	}
	ev(0, runtime.Event{Stage: "flaky", Kind: runtime.EventStart, Attempt: 1})
	ev(100*time.Millisecond, runtime.Event{Stage: "agent", Kind: runtime.EventStart, Attempt: 1})
	ev(200*time.Millisecond, runtime.Event{Stage: "agent", Kind: runtime.EventTool, Tool: &runtime.ToolCall{Name: "Bash", Input: `{"command":"ls"}`}})
	ev(700*time.Millisecond, runtime.Event{Stage: "flaky", Kind: runtime.EventRetry, Attempt: 2, Err: errors.New("exit status 1")})
	ev(200*time.Millisecond, runtime.Event{Stage: "flaky", Kind: runtime.EventStart, Attempt: 2})
	ev(300*time.Millisecond, runtime.Event{Stage: "agent", Kind: runtime.EventEnd, Attempt: 1, Duration: 1400 * time.Millisecond})
	ev(500*time.Millisecond, runtime.Event{Stage: "flaky", Kind: runtime.EventEnd, Attempt: 2, Err: errors.New("exit status 2")})
	ev(0, runtime.Event{Stage: "later", Kind: runtime.EventSkip})

	_, order, traces, now := r.snapshot()
	if got := strings.Join(order, ","); got != "flaky,agent,later" {
		t.Errorf("order = %s, want flaky,agent,later (first event first)", got)
	}
	if now != 2*time.Second {
		t.Errorf("snapshot now = %v, want 2s", now)
	}
	want := []attemptTrace{
		{n: 1, start: 0, end: time.Second, ended: true, retried: true, err: "exit status 1"},
		{n: 2, start: 1200 * time.Millisecond, end: 2 * time.Second, ended: true, err: "exit status 2"},
	}
	if got := traces["flaky"].attempts; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("flaky attempts = %+v, want %+v", got, want)
	}
	agent := traces["agent"]
	if len(agent.attempts) != 1 || agent.attempts[0].start != 100*time.Millisecond || agent.attempts[0].end != 1500*time.Millisecond {
		t.Errorf("agent attempts = %+v, want one from 100ms to 1.5s", agent.attempts)
	}
	if len(agent.tools) != 1 || agent.tools[0] != (toolTrace{at: 300 * time.Millisecond, name: "Bash", input: `{"command":"ls"}`}) {
		t.Errorf("agent tools = %+v, want Bash at 300ms", agent.tools)
	}
	if !traces["later"].skipped || len(traces["later"].attempts) != 0 {
		t.Errorf("later = %+v, want skipped with no attempt", traces["later"])
	}
}

// TestWriteRealRun records a run of the real executor (with the scripted sandbox) and
// checks the report against what happened: a fan_out's branches overlap in time, a
// retried stage has two bars, a stage after a failure is skipped.
func TestWriteRealRun(t *testing.T) {
	doc := parse(t, recordRun(t))
	rows := timelineRows(t, doc)
	wantStatus := map[string]string{"prep": "ok", "branch-a": "ok", "branch-b": "ok", "flaky": "ok", "broken": "failed", "never": "skipped"}
	wantBars := map[string][]string{
		"prep": {"ok"}, "branch-a": {"ok"}, "branch-b": {"ok"},
		"flaky": {"retry", "ok"}, "broken": {"failed"}, "never": nil,
	}
	if len(rows) != len(wantStatus) {
		t.Errorf("timeline has %d rows, want %d (one per stage)", len(rows), len(wantStatus))
	}
	for name, status := range wantStatus {
		r, ok := rows[name]
		if !ok {
			t.Errorf("timeline has no row for stage %s", name)
			continue
		}
		if r.status != status {
			t.Errorf("row %s: status class %q, want %q", name, r.status, status)
		}
		var classes []string
		for _, b := range r.bars {
			classes = append(classes, b.class)
		}
		if strings.Join(classes, ",") != strings.Join(wantBars[name], ",") {
			t.Errorf("row %s: bars %v, want %v", name, classes, wantBars[name])
		}
	}
	a, b := rows["branch-a"].bars[0], rows["branch-b"].bars[0]
	if a.x >= b.x+b.w || b.x >= a.x+a.w {
		t.Errorf("fan_out branches do not overlap on the timeline: branch-a [%.1f,+%.1f], branch-b [%.1f,+%.1f]", a.x, a.w, b.x, b.w)
	}
	// Coordinates are printed with one decimal: a bar's end (x+w) can exceed the next
	// bar's start by the rounding of two numbers.
	const rounding = 0.1
	if p, f := rows["prep"].bars[0], rows["flaky"].bars[0]; !(p.x+p.w <= a.x+rounding && a.x+a.w <= f.x+rounding) {
		t.Errorf("pipe order lost on the timeline: prep ends at %.1f, branch-a is [%.1f,+%.1f], flaky starts at %.1f", p.x+p.w, a.x, a.w, f.x)
	}
	if !strings.Contains(rows["never"].note, "skipped") {
		t.Errorf("skipped row's note = %q, want it to say skipped", rows["never"].note)
	}
	sections := stageSections(doc)
	for name, status := range wantStatus {
		s, ok := sections[name]
		if !ok {
			t.Errorf("no details section for stage %s", name)
			continue
		}
		if !strings.Contains(s, status) {
			t.Errorf("section %s does not show its status %q: %q", name, status, s)
		}
	}
	if s := sections["broken"]; !strings.Contains(s, "exit code3") || !strings.Contains(s, "boom") {
		t.Errorf("broken's section lacks its exit code 3 or its stderr: %q", s)
	}
	if s := sections["flaky"]; !strings.Contains(s, "attempt 1") || !strings.Contains(s, "attempt 2") {
		t.Errorf("flaky's section lacks its two attempts' times: %q", s)
	}
}

// TestWriteHostileText puts markup, escape sequences and URLs where the guest controls
// the text and checks none of it becomes markup, a fetch or a terminal control.
func TestWriteHostileText(t *testing.T) {
	exit0, exit1 := 0, 1
	hostile := "<script>alert(1)</script><img src=x onerror=alert(2)>\x1b]0;title\x07\x1b[31mred\u202e</pre><style>body{display:none}</style>"
	res := &runtime.Result{
		OK: false, Output: hostile, Order: []string{"evil<b>name", "agent"}, DurationMS: 1200, Error: "stage evil failed " + hostile,
		Stages: map[string]*runtime.StageResult{
			"evil<b>name": {Name: "evil<b>name", Status: runtime.StatusFailed, ExitCode: &exit1, Stdout: hostile, Stderr: hostile, Error: hostile, Attempts: 1, DurationMS: 400},
			"agent": {Name: "agent", Status: runtime.StatusOK, ExitCode: &exit0, Stdout: "answer", Output: "answer", Attempts: 1, DurationMS: 800,
				Network: &runtime.NetworkCounts{TCP: runtime.NetworkDecisions{Allowed: 7, Denied: 2}, DNS: runtime.NetworkDecisions{Allowed: 3}},
				Agent: &runtime.AgentReport{Model: "claude-test", InputTokens: 1234, OutputTokens: 567, CostUSD: 0.0421, Turns: 3,
					ToolCalls: []runtime.ToolCall{{Name: "Bash", Input: `{"command":"` + hostile + `"}`}}}},
		},
	}
	rec := New()
	rec.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventStart, Attempt: 1})
	rec.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventTool, Tool: &res.Stages["agent"].Agent.ToolCalls[0]})
	rec.OnEvent(runtime.Event{Stage: "agent", Kind: runtime.EventEnd, Attempt: 1, Result: res.Stages["agent"]})
	var buf bytes.Buffer
	if err := rec.Write(&buf, res); err != nil {
		t.Fatalf("Write: %v", err)
	}
	out := buf.String()
	for _, bad := range []string{"<script", "<img", "<style>body", "\x1b", "\x07", "\u202e", "<b>name"} {
		if strings.Contains(strings.ToLower(out), strings.ToLower(bad)) {
			t.Errorf("report contains %q from guest text: escaping or cleaning failed", bad)
		}
	}
	if !strings.Contains(out, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("report does not show the escaped <script> text")
	}
	doc := parse(t, buf.Bytes())
	if n := countElements(doc, "script") + countElements(doc, "img") + countElements(doc, "link") + countElements(doc, "iframe"); n != 0 {
		t.Errorf("parsed report has %d script/img/link/iframe elements, want 0", n)
	}
	if n := countElements(doc, "style"); n != 1 {
		t.Errorf("parsed report has %d style elements, want only its own 1", n)
	}
	s := stageSections(doc)["agent"]
	for _, want := range []string{"claude-test", "1234 in, 567 out", "$0.0421", "turns3", "Bash", "+0ms", "TCP72", "DNS30"} {
		if !strings.Contains(s, want) {
			t.Errorf("agent section lacks %q: %q", want, s)
		}
	}
	if !strings.Contains(out, "Guest CPU and memory: not recorded") {
		t.Errorf("report does not say that guest CPU and memory were not recorded")
	}
}

func TestWriteNoURL(t *testing.T) {
	res := &runtime.Result{OK: true, Output: "done", Order: []string{"one"}, DurationMS: 5,
		Stages: map[string]*runtime.StageResult{"one": {Name: "one", Status: runtime.StatusOK, Stdout: "done", Output: "done", Attempts: 1}}}
	var buf bytes.Buffer
	if err := New().Write(&buf, res); err != nil {
		t.Fatalf("Write: %v", err)
	}
	out := buf.String()
	for _, u := range []string{"http://", "https://", "url(", "@import", "src="} {
		if i := strings.Index(out, u); i >= 0 {
			t.Errorf("report has %q at byte %d (%q); it must reference nothing outside the file", u, i, out[max(i-40, 0):min(i+40, len(out))])
		}
	}
	walk(parse(t, buf.Bytes()), func(n *html.Node) {
		if h := attr(n, "href"); n.Type == html.ElementNode && h != "" && !strings.HasPrefix(h, "#") {
			t.Errorf("<%s href=%q>: a link out of the file, want only #anchors", n.Data, h)
		}
	})
}

func TestWriteNilResult(t *testing.T) {
	err := New().Write(&bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "nil *runtime.Result") {
		t.Errorf("Write(nil) = %v, want an error naming the nil result", err)
	}
}

func TestCut(t *testing.T) {
	short := cut("hi\x1b[1m there")
	if short.Text != "hi there" || short.Omitted != 0 || short.Bytes != 12 {
		t.Errorf("cut(short) = %+v, want the cleaned text whole", short)
	}
	long := strings.Repeat("é", 5000) // 10000 bytes of two-byte runes
	e := cut(long)
	if e.Bytes != 10000 || e.Omitted != 10000-excerptHead-excerptTail {
		t.Errorf("cut(10000 bytes): Bytes %d Omitted %d, want 10000 and %d", e.Bytes, e.Omitted, 10000-excerptHead-excerptTail)
	}
	if strings.ContainsRune(e.Text, '\ufffd') {
		t.Errorf("cut split a rune: U+FFFD in the excerpt")
	}
	if !strings.Contains(e.Text, "bytes omitted") {
		t.Errorf("cut does not mark the omitted middle")
	}
}

func TestTickStep(t *testing.T) {
	for _, c := range []struct {
		span, want time.Duration
	}{
		{0, time.Millisecond},
		{3 * time.Millisecond, time.Millisecond},
		{1200 * time.Millisecond, 500 * time.Millisecond},
		{10 * time.Second, 2 * time.Second},
		{95 * time.Second, 20 * time.Second},
	} {
		if got := tickStep(c.span); got != c.want {
			t.Errorf("tickStep(%v) = %v, want %v", c.span, got, c.want)
		}
		if n := c.span / tickStep(c.span); c.span >= 10*time.Millisecond && (n < 2 || n > 10) {
			t.Errorf("tickStep(%v) gives %d ticks, want 2 to 10", c.span, n)
		}
	}
}

// recordRun runs a pipe with a fan_out, a stage that fails once and is retried, a stage
// that fails and one that is then skipped, through the real executor with the scripted
// sandbox, and returns its report.
func recordRun(t *testing.T) []byte {
	t.Helper()
	p := mock.New(mock.Script{
		"prep":     {{Stdout: "ready\n", Delay: 30 * time.Millisecond}},
		"branch-a": {{Stdout: "a\n", Delay: 150 * time.Millisecond}},
		"branch-b": {{Stdout: "b\n", Delay: 150 * time.Millisecond}},
		"flaky":    {{ExitCode: 1, Stderr: "first try fails\n", Delay: 20 * time.Millisecond}, {Stdout: "fine\n", Delay: 20 * time.Millisecond}},
		"broken":   {{ExitCode: 3, Stderr: "boom\n"}},
	})
	rec := New()
	e := &runtime.Executor{Provider: sampledProvider{p}, MaxParallel: 4, OnEvent: rec.OnEvent, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
	stage := func(name string, retries int) *runtime.Stage {
		return &runtime.Stage{Name: name, Cmd: []string{"true"}, Retries: retries}
	}
	root := &runtime.Pipe{Nodes: []runtime.Node{
		stage("prep", 0),
		&runtime.FanOut{Nodes: []runtime.Node{stage("branch-a", 0), stage("branch-b", 0)}},
		stage("flaky", 1),
		stage("broken", 0),
		stage("never", 0),
	}}
	res, err := e.Run(context.Background(), root)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var buf bytes.Buffer
	if err := rec.Write(&buf, res); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// recordedStages are the stages recordRun runs (sampledStages: those whose guest is
// sampled, as if in the vm sandbox).
var recordedStages = []string{"prep", "branch-a", "branch-b", "flaky", "broken", "never"}

// --- helpers that read the rendered HTML ---

func parse(t *testing.T, b []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("report does not parse as HTML: %v", err)
	}
	return doc
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func countElements(doc *html.Node, tag string) int {
	n := 0
	walk(doc, func(x *html.Node) {
		if x.Type == html.ElementNode && x.Data == tag {
			n++
		}
	})
	return n
}

// text is n's text content without its <title> tooltips.
func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(x *html.Node) {
		if x.Type == html.TextNode && (x.Parent == nil || x.Parent.Data != "title") {
			b.WriteString(x.Data)
		}
	})
	return b.String()
}

type parsedBar struct {
	class string
	x, w  float64
}

type parsedRow struct {
	status string
	bars   []parsedBar
	phases []parsedBar
	note   string
}

// timelineRows reads the SVG's rows by stage name.
func timelineRows(t *testing.T, doc *html.Node) map[string]parsedRow {
	t.Helper()
	rows := map[string]parsedRow{}
	walk(doc, func(g *html.Node) {
		class := strings.Fields(attr(g, "class"))
		if g.Data != "g" || len(class) != 2 || class[0] != "row" {
			return
		}
		r := parsedRow{status: class[1]}
		walk(g, func(x *html.Node) {
			c := strings.Fields(attr(x, "class"))
			switch {
			case x.Data == "rect" && len(c) == 2 && (c[0] == "bar" || c[0] == "phase"):
				xv, err1 := strconv.ParseFloat(attr(x, "x"), 64)
				wv, err2 := strconv.ParseFloat(attr(x, "width"), 64)
				if err1 != nil || err2 != nil {
					t.Errorf("%s of %s: x=%q width=%q are not numbers", c[0], attr(g, "data-stage"), attr(x, "x"), attr(x, "width"))
				}
				if c[0] == "phase" {
					r.phases = append(r.phases, parsedBar{c[1], xv, wv})
				} else {
					r.bars = append(r.bars, parsedBar{c[1], xv, wv})
				}
			case x.Data == "text" && len(c) == 1 && c[0] == "note":
				r.note = text(x)
			}
		})
		rows[attr(g, "data-stage")] = r
	})
	return rows
}

// stageSections maps each details section's stage name (its first h3's text before the
// status badge) to the section's text.
func stageSections(doc *html.Node) map[string]string {
	out := map[string]string{}
	walk(doc, func(s *html.Node) {
		if s.Data != "section" || attr(s, "class") != "stage" {
			return
		}
		var h3 *html.Node
		walk(s, func(h *html.Node) {
			if h.Data == "h3" && h3 == nil {
				h3 = h
			}
		})
		if h3 != nil && h3.FirstChild != nil && h3.FirstChild.Type == html.TextNode {
			out[strings.TrimSpace(h3.FirstChild.Data)] = text(s)
		}
	})
	return out
}
