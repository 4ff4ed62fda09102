package runtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// refusingProvider refuses every stage the way a sandbox refuses a capability it lacks.
type refusingProvider struct{ opens int }

func (p *refusingProvider) Name() string { return "refusing" }
func (p *refusingProvider) Open(context.Context, SandboxSpec) (Sandbox, error) {
	p.opens++
	return nil, fmt.Errorf("box x: mounts are %w yet", ErrUnsupported)
}

func TestUnsupportedCapabilityIsNotRetried(t *testing.T) {
	p := &refusingProvider{}
	s := stage("x")
	s.Retries = 3
	res, err := (&Executor{Provider: p, Backoff: func(int) time.Duration { return 0 }}).Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stages["x"]
	if p.opens != 1 || st.Attempts != 1 || st.Status != StatusFailed || !strings.Contains(st.Error, "mounts are not supported by this sandbox yet") {
		t.Fatalf("opens=%d result=%+v", p.opens, st)
	}
}
