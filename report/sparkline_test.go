package report

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/voidbox/voidbox/runtime"
)

// sampledStages get guest samples in recordRun: branch-a a CPU ramp and growing
// memory, flaky a single sample.
var sampledStages = map[string][]runtime.GuestSample{
	"branch-a": {
		{AtMS: 500, CPU: f(0.2), MemBytes: 40 << 20, MemTotalBytes: 400 << 20, Procs: 20},
		{AtMS: 1000, CPU: f(0.9), MemBytes: 100 << 20, MemTotalBytes: 400 << 20, Procs: 22},
		{AtMS: 1500, CPU: f(1), MemBytes: 300 << 20, MemTotalBytes: 400 << 20, Procs: 25},
		{AtMS: 1600, CPU: f(0.6), MemBytes: 280 << 20, MemTotalBytes: 400 << 20, Procs: 21},
	},
	"flaky": {{AtMS: 20, CPU: f(0.5), MemBytes: 200 << 20, MemTotalBytes: 400 << 20, Procs: 9}},
}

func f(v float64) *float64 { return &v }

// sampledProvider's sandboxes report sampledStages' samples from Exec, the way the vm
// sandbox does; other stages get none, as in the local and mock sandboxes.
type sampledProvider struct{ runtime.Provider }

type sampledSandbox struct {
	runtime.Sandbox
	name string
}

func (p sampledProvider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	sb, err := p.Provider.Open(ctx, spec)
	return sampledSandbox{sb, spec.Name}, err
}

func (s sampledSandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	now := time.Now()
	for _, g := range sampledStages[s.name] {
		g.At = now.Add(time.Duration(g.AtMS) * time.Millisecond) // the executor sets AtMS from At
		runtime.ReportGuestSample(ctx, g)
	}
	return s.Sandbox.Exec(ctx, req)
}

// sparks maps each stage row of the guest table to its sparklines' classes and
// points, or to "not recorded".
func sparks(doc *html.Node) map[string][]string {
	out := map[string][]string{}
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "tr" || attr(n, "data-stage") == "" {
			return
		}
		name := attr(n, "data-stage")
		out[name] = []string{}
		walk(n, func(c *html.Node) {
			if c.Type == html.ElementNode && c.Data == "polyline" {
				out[name] = append(out[name], attr(c, "points"))
			}
		})
		if len(out[name]) == 0 && strings.Contains(text(n), "not recorded") {
			out[name] = append(out[name], "not recorded")
		}
	})
	return out
}

func TestReportSparklines(t *testing.T) {
	doc := parse(t, recordRun(t))
	got := sparks(doc)
	for _, name := range recordedStages {
		lines, ok := got[name]
		switch {
		case !ok:
			t.Errorf("the guest table has no row for stage %s", name)
		case sampledStages[name] == nil && (len(lines) != 1 || lines[0] != "not recorded"):
			t.Errorf("stage %s was not sampled: row %q, want not recorded", name, lines)
		case sampledStages[name] != nil && len(lines) != 2:
			t.Errorf("stage %s: %d sparklines %q, want CPU and memory", name, len(lines), lines)
		}
	}
	if l := got["branch-a"]; len(l) == 2 && (strings.Count(l[0], ",") != 4 || !strings.HasSuffix(l[0], "240.0,14.4")) {
		t.Errorf("branch-a CPU points %q, want its 4 samples, the last (0.6) at the right end", l[0])
	}
	sections := stageSections(doc)
	if s := sections["branch-a"]; !strings.Contains(s, "CPU mean") || !strings.Contains(s, "peak 300 MiB of 400 MiB") || !strings.Contains(s, "4 samples over 1.6s") {
		t.Errorf("branch-a's section lacks its guest summary: %q", s)
	}
	if s := sections["prep"]; !strings.Contains(s, "not recorded") {
		t.Errorf("prep's section should say its guest was not recorded: %q", s)
	}
}

func TestReportWithoutSamples(t *testing.T) {
	res := &runtime.Result{OK: true, Order: []string{"a"}, Stages: map[string]*runtime.StageResult{"a": {Name: "a", Status: runtime.StatusOK}}}
	var b strings.Builder
	if err := New().Write(&b, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Guest CPU and memory: not recorded") || strings.Contains(b.String(), "<svg class=\"spark") {
		t.Errorf("a run without samples must say not recorded and draw no sparkline:\n%s", b.String())
	}
}

func TestNewGuestView(t *testing.T) {
	// 4 samples over 1.6s; CPU 0.2 at 500ms is x 75 (of 240), y 36-7.2 (of 36).
	v := newGuestView(&runtime.GuestStats{SampleCount: 4, MemTotalBytes: 400 << 20, Samples: sampledStages["branch-a"]})
	if want := "75.0,28.8 150.0,3.6 225.0,0.0 240.0,14.4"; v.CPU.Line != want {
		t.Errorf("CPU points %q, want %q", v.CPU.Line, want)
	}
	if want := "75.0,36.0 75.0,28.8 150.0,3.6 225.0,0.0 240.0,14.4 240.0,36.0"; v.CPU.Area != want {
		t.Errorf("CPU area %q, want %q", v.CPU.Area, want)
	}
	if want := "75.0,32.4 150.0,27.0 225.0,9.0 240.0,10.8"; v.Mem.Line != want {
		t.Errorf("memory points %q, want %q", v.Mem.Line, want)
	}
	// One sample: a flat line across the width.
	v = newGuestView(&runtime.GuestStats{SampleCount: 1, MemTotalBytes: 400 << 20, Samples: sampledStages["flaky"]})
	if v.CPU.Line != "0.0,18.0 240.0,18.0" {
		t.Errorf("single-sample CPU line %q, want flat at half height across the width", v.CPU.Line)
	}

	if newGuestView(nil) != nil || newGuestView(&runtime.GuestStats{}) != nil {
		t.Error("a stage without samples has a guest view, want nil (not recorded)")
	}
	// No CPU value in any sample, and no memory total: said, not drawn as zero.
	v = newGuestView(&runtime.GuestStats{SampleCount: 1, Samples: []runtime.GuestSample{{AtMS: 0, MemBytes: 5}}})
	if v.CPU.Line != "" || v.CPU.Empty == "" || v.Mem.Line != "" || v.Mem.Empty == "" {
		t.Errorf("view of a sample without CPU or memory total = %+v, want both empty with a reason", v)
	}
	if strings.Contains(v.Summary, "CPU mean") {
		t.Errorf("summary %q gives a CPU mean no sample had", v.Summary)
	}
	// One sample at 0ms is still a visible line.
	v = newGuestView(&runtime.GuestStats{SampleCount: 1, MemTotalBytes: 10, Samples: []runtime.GuestSample{{AtMS: 0, CPU: f(1), MemBytes: 5}}})
	if v.CPU.Line != "0.0,0.0 240.0,0.0" || v.Mem.Line != "0.0,18.0 240.0,18.0" {
		t.Errorf("single sample at 0ms: CPU %q, memory %q", v.CPU.Line, v.Mem.Line)
	}
}
