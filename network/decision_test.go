package network

import (
	"sync"
	"testing"
	"time"
)

// OnDecision gets the decisions that are logged, with the log's budget: the first
// LogPerSecond, then nothing until the budget refills, then one saying how many were
// held back.
func TestOnDecisionWithinLogBudget(t *testing.T) {
	var mu sync.Mutex
	var got []Decision
	e := newEnv(t, nil, func(c *Config) {
		c.Limits.LogPerSecond = 2
		c.OnDecision = func(d Decision) {
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
		}
	})
	now := time.Now()
	e.n.logs.mu.Lock()
	e.n.logs.now = func() time.Time { return now }
	e.n.logs.mu.Unlock()
	for range 5 {
		e.g.mustRefuse("10.0.0.1:80", refuseWithin)
	}
	e.n.logs.mu.Lock()
	now = now.Add(time.Second)
	e.n.logs.mu.Unlock()
	e.g.mustRefuse("10.0.0.1:81", refuseWithin)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d decisions reported, want 3 (2 within the budget, then 1 after it refilled): %+v", len(got), got)
	}
	first, last := got[0], got[2]
	if first.Allowed || first.Proto != "tcp" || first.Dst != "10.0.0.1" || first.Port != 80 || first.Reason == "" {
		t.Errorf("first decision %+v, want a tcp deny of 10.0.0.1:80 with a reason", first)
	}
	if last.Port != 81 || last.UnloggedBefore != 3 {
		t.Errorf("last decision %+v, want port 81 and 3 held back before it", last)
	}
}
