package network

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what one VM's guest can make the host do. A zero field takes its default.
type Limits struct {
	MaxFlows       int           // concurrent TCP and UDP flows (default 256)
	FlowsPerSecond int           // new flows per second, with a burst of as many (default 64)
	MaxPinned      int           // addresses pinned to names (default 4096)
	DNSConcurrency int           // DNS questions resolved at once; more get SERVFAIL (default 16)
	DNSTimeout     time.Duration // one upstream lookup (default 5s)
	DialTimeout    time.Duration // one host-side dial (default 10s)
	UDPIdle        time.Duration // a UDP flow ends after this long without a datagram (default 60s)
	LogPerSecond   int           // decision lines per second; the rest are counted, not logged (default 200)
}

// DefaultLimits are the limits a zero Limits field stands for.
var DefaultLimits = Limits{
	MaxFlows:       256,
	FlowsPerSecond: 64,
	MaxPinned:      4096,
	DNSConcurrency: 16,
	DNSTimeout:     5 * time.Second,
	DialTimeout:    10 * time.Second,
	UDPIdle:        60 * time.Second,
	LogPerSecond:   200,
}

func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits
	for _, f := range []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"MaxFlows", &l.MaxFlows, d.MaxFlows, 1 << 16},
		{"FlowsPerSecond", &l.FlowsPerSecond, d.FlowsPerSecond, 1 << 20},
		{"MaxPinned", &l.MaxPinned, d.MaxPinned, 1 << 20},
		{"DNSConcurrency", &l.DNSConcurrency, d.DNSConcurrency, 1024},
		{"LogPerSecond", &l.LogPerSecond, d.LogPerSecond, 1 << 20},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 1 || *f.v > f.max {
			return l, fmt.Errorf("network limits: %s is %d, want 1 to %d (or 0 for the default %d)", f.name, *f.v, f.max, f.def)
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DNSTimeout", &l.DNSTimeout, d.DNSTimeout},
		{"DialTimeout", &l.DialTimeout, d.DialTimeout},
		{"UDPIdle", &l.UDPIdle, d.UDPIdle},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return l, fmt.Errorf("network limits: %s is %s, want a positive duration (or 0 for the default %s)", f.name, *f.v, f.def)
		}
	}
	return l, nil
}

// gate admits new flows: at most max at once, and new ones at rate per second with a burst of
// rate (a token bucket).
type gate struct {
	mu     sync.Mutex
	active int
	max    int
	tokens float64
	rate   float64
	last   time.Time
	now    func() time.Time
}

func newGate(max, rate int, now func() time.Time) *gate {
	return &gate{max: max, rate: float64(rate), tokens: float64(rate), last: now(), now: now}
}

// acquire admits one flow, or says which limit refuses it. release must be called once the
// flow ends.
func (g *gate) acquire() (release func(), refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.tokens = min(g.rate, g.tokens+now.Sub(g.last).Seconds()*g.rate)
	g.last = now
	if g.active >= g.max {
		return nil, fmt.Sprintf("flow limit: %d flows are open (at most %d at once)", g.active, g.max)
	}
	if g.tokens < 1 {
		return nil, fmt.Sprintf("rate limit: at most %d new flows per second", int(g.rate))
	}
	g.tokens--
	g.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.active--
			g.mu.Unlock()
		})
	}, ""
}

// Count is how many decisions allowed and denied.
type Count struct {
	Allowed uint64 `json:"allowed"`
	Denied  uint64 `json:"denied"`
}

// Stats are a network's decision counts per protocol, and how many published connections
// reached the guest.
type Stats struct {
	TCP     Count  `json:"tcp"`
	UDP     Count  `json:"udp"`
	DNS     Count  `json:"dns"`
	Inbound uint64 `json:"inbound"`
	// Unlogged counts decisions left out of the log by Limits.LogPerSecond (still counted above).
	Unlogged uint64 `json:"unlogged,omitempty"`
}

type counter struct{ allowed, denied atomic.Uint64 }

func (c *counter) add(allow bool) {
	if allow {
		c.allowed.Add(1)
	} else {
		c.denied.Add(1)
	}
}

func (c *counter) get() Count { return Count{Allowed: c.allowed.Load(), Denied: c.denied.Load()} }

// logBudget lets through at most perSecond lines per wall-clock second, so a guest flooding
// denied connects cannot flood the host's log; what it holds back is counted and reported with
// the next line it lets through.
type logBudget struct {
	mu        sync.Mutex
	perSecond int
	window    time.Time
	used      int
	held      uint64 // held back since the last line let through
	total     atomic.Uint64
	now       func() time.Time
}

// take reports whether a line may be logged, and how many were held back before it.
func (b *logBudget) take() (ok bool, heldBefore uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.window) >= time.Second {
		b.window, b.used = now, 0
	}
	if b.used >= b.perSecond {
		b.held++
		b.total.Add(1)
		return false, 0
	}
	b.used++
	held := b.held
	b.held = 0
	return true, held
}
