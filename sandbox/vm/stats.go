package vm

import (
	"context"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/runtime"
)

// sampleInterval is how often the guest agent samples the guest while a stage's
// command or agent runs (proto/stats.go); a sample costs the guest a few /proc reads.
const sampleInterval = proto.DefaultStatsInterval

// guestSampling is the sampling part of an exec request: every sampleInterval, each
// sample passed on with runtime.ReportGuestSample. Nothing is asked of the guest when
// ctx has no receiver for samples (the executor always has one).
func guestSampling(ctx context.Context) (time.Duration, func(proto.Stats)) {
	if !runtime.WantsGuestSamples(ctx) {
		return 0, nil
	}
	start := time.Now()
	return sampleInterval, func(s proto.Stats) {
		runtime.ReportGuestSample(ctx, guestSample(start, s))
	}
}

// guestSample is a decoded (range-checked) sample in runtime's terms, dated on the
// host's clock from when the exec was sent.
func guestSample(start time.Time, s proto.Stats) runtime.GuestSample {
	g := runtime.GuestSample{
		At:       start.Add(s.Elapsed),
		MemBytes: s.MemUsed, MemTotalBytes: s.MemTotal,
		NetRxBytes: s.NetRx, NetTxBytes: s.NetTx,
		Procs: int(s.Procs),
	}
	if s.CPUValid {
		cpu := s.CPU
		g.CPU = &cpu
	}
	return g
}
