package report

import (
	"fmt"
	"strings"

	"github.com/voidbox/voidbox/runtime"
)

// Guest sparklines: a stage's CPU and memory samples (runtime.GuestStats) drawn as
// inline SVG, a line over a filled area, time left to right. A stage without samples
// has none and the report says "not recorded": nothing is drawn that was not measured.

// Sparkline size in viewBox units (drawn 1:1 in CSS pixels).
const (
	sparkWidth  = 240.0
	sparkHeight = 36.0
)

// guestView is what the report shows of a stage's guest.
type guestView struct {
	CPU, Mem sparkline
	Summary  string
}

// sparkline is one series: Line is a polyline's points, Area the polygon under it.
type sparkline struct {
	Class       string // "cpu" or "mem"
	Line, Area  string
	Title       string // the tooltip: what the axis means
	Empty       string // said instead of a line when no sample had a value
	Width, High float64
}

func newGuestView(g *runtime.GuestStats) *guestView {
	if g == nil || len(g.Samples) == 0 {
		return nil
	}
	span := g.Samples[len(g.Samples)-1].AtMS
	var cpu, mem []point
	for _, s := range g.Samples {
		if s.CPU != nil {
			cpu = append(cpu, point{s.AtMS, *s.CPU})
		}
		if g.MemTotalBytes > 0 {
			mem = append(mem, point{s.AtMS, float64(s.MemBytes) / float64(g.MemTotalBytes)})
		}
	}
	v := &guestView{
		CPU: newSparkline("cpu", cpu, span, "guest CPU busy, 0 to 100% of all its CPUs", "no CPU value sampled"),
		Mem: newSparkline("mem", mem, span, fmt.Sprintf("guest memory in use, 0 to %s", mib(g.MemTotalBytes)), "no memory total sampled"),
	}
	var parts []string
	if g.CPUMean != nil && g.CPUPeak != nil {
		parts = append(parts, fmt.Sprintf("CPU mean %.0f%%, peak %.0f%%", *g.CPUMean*100, *g.CPUPeak*100))
	}
	parts = append(parts,
		fmt.Sprintf("memory %s at the first sample, peak %s of %s", mib(g.MemStartBytes), mib(g.MemPeakBytes), mib(g.MemTotalBytes)),
		fmt.Sprintf("network %d bytes in, %d out", g.NetRxBytes, g.NetTxBytes),
		fmt.Sprintf("up to %d processes", g.ProcsPeak),
		fmt.Sprintf("%d samples over %.1fs", g.SampleCount, float64(span)/1000))
	v.Summary = strings.Join(parts, "; ")
	return v
}

type point struct {
	atMS int64
	v    float64 // 0..1
}

// newSparkline lays pts out over span milliseconds; a single point is drawn as a flat
// line across the width, so it is visible.
func newSparkline(class string, pts []point, span int64, title, empty string) sparkline {
	sl := sparkline{Class: class, Title: title, Width: sparkWidth, High: sparkHeight}
	if len(pts) == 0 {
		sl.Empty = empty
		return sl
	}
	x := func(ms int64) float64 {
		if span <= 0 {
			return 0
		}
		return sparkWidth * float64(ms) / float64(span)
	}
	y := func(v float64) float64 { return sparkHeight - sparkHeight*min(max(v, 0), 1) }
	if len(pts) == 1 {
		pts = []point{{0, pts[0].v}, {span, pts[0].v}}
		if span <= 0 {
			x = func(ms int64) float64 { return float64(ms) }
			pts[1].atMS = int64(sparkWidth)
		}
	}
	var line strings.Builder
	for i, p := range pts {
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%.1f,%.1f", x(p.atMS), y(p.v))
	}
	sl.Line = line.String()
	sl.Area = fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", x(pts[0].atMS), sparkHeight, sl.Line, x(pts[len(pts)-1].atMS), sparkHeight)
	return sl
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
