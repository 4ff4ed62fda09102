package runtime

import (
	"context"
	"fmt"
	"io/fs"
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

// notFoundProvider's sandboxes have no such command: every Exec fails the way the
// local and vm sandboxes report a missing program.
type notFoundProvider struct{ opens int }

type notFoundSandbox struct{ Sandbox }

func (p *notFoundProvider) Name() string { return "notfound" }
func (p *notFoundProvider) Open(context.Context, SandboxSpec) (Sandbox, error) {
	p.opens++
	return notFoundSandbox{}, nil
}
func (notFoundSandbox) WriteFile(context.Context, string, []byte, fs.FileMode) error { return nil }
func (notFoundSandbox) Close() error                                                 { return nil }
func (notFoundSandbox) Exec(context.Context, ExecRequest) (ExecResult, error) {
	return ExecResult{}, fmt.Errorf("%w in the guest's $PATH", ErrCommandNotFound)
}

// A program that does not exist will not appear on a retry: one attempt only.
func TestMissingCommandIsNotRetried(t *testing.T) {
	p := &notFoundProvider{}
	s := stage("x")
	s.Retries = 3
	res, err := (&Executor{Provider: p, Backoff: func(int) time.Duration { return 0 }}).Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stages["x"]
	if p.opens != 1 || st.Attempts != 1 || st.Status != StatusFailed || !strings.Contains(st.Error, "executable file not found in the guest's $PATH") {
		t.Fatalf("opens=%d result=%+v", p.opens, st)
	}
}
