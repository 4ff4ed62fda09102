package telemetry

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/voidbox/voidbox/runtime"
)

// guestMeters record the samples of VM stages' guests (runtime.EventSample).
//
// The names are voidbox.guest.*, not the semantic conventions' system.*: system.*
// describe the host the SDK runs on, which is this process's resource, and a guest is
// another machine; mixing its numbers into the host's series would mislead every host
// dashboard. Kinds and units follow the system.* conventions all the same:
// system.cpu.utilization (a gauge, unit "1"), system.memory.usage (By),
// system.network.io (a counter, By, by network.io.direction) and system.process.count
// ({process}). Memory and processes are gauges rather than up-down counters because
// the values are read, not changed by this process.
type guestMeters struct {
	cpu      metric.Float64Gauge
	memUsage metric.Int64Gauge
	memLimit metric.Int64Gauge
	netIO    metric.Int64Counter
	procs    metric.Int64Gauge

	mu  sync.Mutex
	net map[string][2]uint64 // a stage's network totals at its attempt's last sample
}

var (
	directionReceive  = attribute.String("network.io.direction", "receive")
	directionTransmit = attribute.String("network.io.direction", "transmit")
)

func newGuestMeters(m metric.Meter) *guestMeters {
	g := &guestMeters{net: map[string][2]uint64{}}
	// As in newMeters, the names and units are constants, so errors cannot happen.
	g.cpu, _ = m.Float64Gauge("voidbox.guest.cpu.utilization", metric.WithUnit("1"),
		metric.WithDescription("Fraction of all a stage's guest CPUs busy since the previous sample."))
	g.memUsage, _ = m.Int64Gauge("voidbox.guest.memory.usage", metric.WithUnit("By"),
		metric.WithDescription("Memory in use in a stage's guest (MemTotal - MemAvailable)."))
	g.memLimit, _ = m.Int64Gauge("voidbox.guest.memory.limit", metric.WithUnit("By"),
		metric.WithDescription("Memory of a stage's guest kernel (MemTotal)."))
	g.netIO, _ = m.Int64Counter("voidbox.guest.network.io", metric.WithUnit("By"),
		metric.WithDescription("Bytes a stage's guest received and transmitted, by network.io.direction."))
	g.procs, _ = m.Int64Gauge("voidbox.guest.processes", metric.WithUnit("{process}"),
		metric.WithDescription("Processes in a stage's guest, kernel threads included."))
	return g
}

// start forgets the network totals of stage's previous attempt: a new guest counts
// from zero.
func (g *guestMeters) start(stage string) {
	g.mu.Lock()
	delete(g.net, stage)
	g.mu.Unlock()
}

// sample records one sample of stage's guest.
func (g *guestMeters) sample(ctx context.Context, stageAttr attribute.KeyValue, stage string, s *runtime.GuestSample) {
	if s == nil {
		return
	}
	attrs := metric.WithAttributes(stageAttr)
	if s.CPU != nil {
		g.cpu.Record(ctx, *s.CPU, attrs)
	}
	g.memUsage.Record(ctx, clampInt64(s.MemBytes), attrs)
	g.memLimit.Record(ctx, clampInt64(s.MemTotalBytes), attrs)
	g.procs.Record(ctx, int64(s.Procs), attrs)

	g.mu.Lock()
	prev := g.net[stage]
	g.net[stage] = [2]uint64{s.NetRxBytes, s.NetTxBytes}
	g.mu.Unlock()
	for _, d := range []struct {
		dir       attribute.KeyValue
		now, then uint64
	}{{directionReceive, s.NetRxBytes, prev[0]}, {directionTransmit, s.NetTxBytes, prev[1]}} {
		// Totals only grow within an attempt; one that did not adds nothing.
		if d.now > d.then {
			g.netIO.Add(ctx, clampInt64(d.now-d.then), metric.WithAttributes(stageAttr, d.dir))
		}
	}
}

func clampInt64(v uint64) int64 { return int64(min(v, 1<<63-1)) }
