package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Guest resource samples: while an exec runs, the agent reads the guest's /proc every
// interval the host asked for (Request.StatsMS) and sends a FrameStats on the exec's
// stream, plus one last sample when the exec ends. The frame is fixed binary, so the
// host's decoder has nothing to parse but integers, each checked against a range.
//
// Layout (big-endian, StatsLen bytes):
//
//	0  version (1)
//	1  flags: bit 0 set when CPU holds a value (a delta of /proc/stat was possible)
//	2  uint32 elapsed milliseconds since the exec started
//	6  uint16 CPU busy fraction of all guest CPUs since the previous sample, in 1/10000
//	8  uint64 memory used, bytes (MemTotal - MemAvailable)
//	16 uint64 memory total, bytes (MemTotal)
//	24 uint64 network bytes received since the exec started (every interface but lo)
//	32 uint64 network bytes transmitted since the exec started
//	40 uint32 processes in the guest
const (
	StatsLen     = 44
	statsVersion = 1
	statsCPUSet  = 1 << 0
	// cpuScale is the CPU field's unit: 1/10000 of all CPUs busy.
	cpuScale = 10000
)

// Bounds of the sampling interval a request may ask for; 0 turns sampling off.
const (
	MinStatsInterval     = 100 * time.Millisecond
	MaxStatsInterval     = 10 * time.Second
	DefaultStatsInterval = 500 * time.Millisecond
)

// Range checks of a decoded sample. A box has at most 64 GiB (README), so a guest that
// says it has more than 1 TiB, ran a single exec for more than 30 days or counts more
// processes than the kernel's pid limit (2^22) is lying or broken.
const (
	maxStatsMemory  = 1 << 40
	maxStatsElapsed = 30 * 24 * time.Hour
	maxStatsProcs   = 1 << 22
)

// Stats is one sample of the guest's resource use during an exec.
type Stats struct {
	Elapsed time.Duration // since the exec started, millisecond precision
	// CPU is the fraction (0..1) of all guest CPUs busy since the previous sample (or
	// the exec's start); meaningful only when CPUValid.
	CPU      float64
	CPUValid bool
	MemUsed  uint64 // bytes
	MemTotal uint64 // bytes
	NetRx    uint64 // bytes received since the exec started
	NetTx    uint64 // bytes transmitted since the exec started
	Procs    uint32
}

// EncodeStats is the payload of a FrameStats. Out-of-range values are clamped to what
// the decoder accepts, so a sampler's odd reading never turns into a refused frame.
func EncodeStats(s Stats) []byte {
	b := make([]byte, StatsLen)
	b[0] = statsVersion
	if s.CPUValid {
		b[1] = statsCPUSet
		cpu := s.CPU
		if math.IsNaN(cpu) || cpu < 0 {
			cpu = 0
		}
		binary.BigEndian.PutUint16(b[6:], uint16(math.Round(min(cpu, 1)*cpuScale)))
	}
	elapsed := min(max(s.Elapsed, 0), maxStatsElapsed)
	binary.BigEndian.PutUint32(b[2:], uint32(elapsed.Milliseconds()))
	total := min(s.MemTotal, maxStatsMemory)
	binary.BigEndian.PutUint64(b[8:], min(s.MemUsed, total))
	binary.BigEndian.PutUint64(b[16:], total)
	binary.BigEndian.PutUint64(b[24:], s.NetRx)
	binary.BigEndian.PutUint64(b[32:], s.NetTx)
	binary.BigEndian.PutUint32(b[40:], min(s.Procs, maxStatsProcs))
	return b
}

// DecodeStats parses a FrameStats payload from the guest, which is not trusted: the
// length is exact, the version and flags known, and every field within its range.
func DecodeStats(p []byte) (Stats, error) {
	if len(p) != StatsLen {
		return Stats{}, fmt.Errorf("stats frame is %d bytes, want exactly %d", len(p), StatsLen)
	}
	if p[0] != statsVersion {
		return Stats{}, fmt.Errorf("stats frame version %d, want %d", p[0], statsVersion)
	}
	if p[1]&^statsCPUSet != 0 {
		return Stats{}, fmt.Errorf("stats frame flags %#02x: only bit 0 (CPU set) is defined", p[1])
	}
	s := Stats{
		Elapsed:  time.Duration(binary.BigEndian.Uint32(p[2:])) * time.Millisecond,
		CPUValid: p[1]&statsCPUSet != 0,
		MemUsed:  binary.BigEndian.Uint64(p[8:]),
		MemTotal: binary.BigEndian.Uint64(p[16:]),
		NetRx:    binary.BigEndian.Uint64(p[24:]),
		NetTx:    binary.BigEndian.Uint64(p[32:]),
		Procs:    binary.BigEndian.Uint32(p[40:]),
	}
	cpu := binary.BigEndian.Uint16(p[6:])
	switch {
	case s.Elapsed > maxStatsElapsed:
		return Stats{}, fmt.Errorf("stats frame elapsed %v, at most %v allowed", s.Elapsed, maxStatsElapsed)
	case cpu > cpuScale:
		return Stats{}, fmt.Errorf("stats frame CPU %d/%d is more than all CPUs", cpu, cpuScale)
	case !s.CPUValid && cpu != 0:
		return Stats{}, fmt.Errorf("stats frame CPU %d/%d without the CPU flag", cpu, cpuScale)
	case s.MemTotal > maxStatsMemory:
		return Stats{}, fmt.Errorf("stats frame memory total %d bytes, at most %d allowed", s.MemTotal, uint64(maxStatsMemory))
	case s.MemUsed > s.MemTotal:
		return Stats{}, fmt.Errorf("stats frame memory used %d bytes exceeds its total %d", s.MemUsed, s.MemTotal)
	case s.NetRx > math.MaxInt64 || s.NetTx > math.MaxInt64:
		return Stats{}, fmt.Errorf("stats frame network bytes %d received, %d sent: at most %d allowed", s.NetRx, s.NetTx, int64(math.MaxInt64))
	case s.Procs > maxStatsProcs:
		return Stats{}, fmt.Errorf("stats frame process count %d, at most %d allowed", s.Procs, maxStatsProcs)
	}
	s.CPU = float64(cpu) / cpuScale
	return s, nil
}

// checkStatsInterval validates Request.StatsMS of an exec: 0 (off) or within the bounds.
func checkStatsInterval(ms int64) error {
	if ms == 0 {
		return nil
	}
	if d := time.Duration(ms) * time.Millisecond; ms < 0 || d < MinStatsInterval || d > MaxStatsInterval {
		return fmt.Errorf("exec stats interval %dms out of range: 0 (off) or %d..%dms", ms, MinStatsInterval.Milliseconds(), MaxStatsInterval.Milliseconds())
	}
	return nil
}

// statsMS is the wire form of ExecRequest.StatsInterval: 0 (off) or the interval
// clamped into its bounds.
func statsMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return min(max(d, MinStatsInterval), MaxStatsInterval).Milliseconds()
}

// statsGate is the host's check of a stream of samples: unasked, or arriving faster
// than half the interval (a guest flooding the host), or going back in time, they are
// a protocol error. A stalled guest (software emulation) may deliver several samples
// at once; their elapsed times, not their arrival, must be spaced.
type statsGate struct {
	interval time.Duration
	last     time.Duration
	n        int
}

var errUnaskedStats = errors.New("the guest sent a stats frame the exec did not ask for")

func (g *statsGate) check(s Stats) error {
	if g.interval <= 0 {
		return errUnaskedStats
	}
	// The exec's last sample may follow the previous one closely.
	if g.n > 0 && s.Elapsed < g.last {
		return fmt.Errorf("stats frame elapsed %v is before the previous sample's %v", s.Elapsed, g.last)
	}
	// At most one sample per half interval on average, plus the final one.
	if limit := int(s.Elapsed/(g.interval/2)) + 2; g.n >= limit {
		return fmt.Errorf("stats frame %d at %v: more than one per %v", g.n+1, s.Elapsed, g.interval/2)
	}
	g.last = s.Elapsed
	g.n++
	return nil
}
