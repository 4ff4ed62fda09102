package runtime_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// slowStart is a mock provider whose start-up takes time, as a VM boot does: Open waits
// openDelay and WriteFile writeDelay, each cut short by its context.
type slowStart struct {
	*mock.Provider
	openDelay, writeDelay time.Duration
}

type slowWrite struct {
	runtime.Sandbox
	delay time.Duration
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p slowStart) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	if err := wait(ctx, p.openDelay); err != nil {
		return nil, errors.New("guest agent did not answer: " + err.Error())
	}
	sb, err := p.Provider.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return slowWrite{sb, p.writeDelay}, nil
}

func (s slowWrite) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if err := wait(ctx, s.delay); err != nil {
		return err
	}
	return s.Sandbox.WriteFile(ctx, path, data, mode)
}

// A stage's timeout bounds its command only: a start-up longer than the timeout (but
// within the boot timeout) leaves the command its full time.
func TestStageTimeoutExcludesStartUp(t *testing.T) {
	m := mock.New(mock.Script{"s": {{Stdout: "done", Delay: 150 * time.Millisecond}}})
	s := cmd("s")
	s.Timeout = 300 * time.Millisecond
	e := &runtime.Executor{Provider: slowStart{Provider: m, openDelay: 300 * time.Millisecond, writeDelay: 100 * time.Millisecond}, BootTimeout: 5 * time.Second}
	res := run(t, e, s)
	if !res.OK || res.Output != "done" {
		t.Fatalf("OK=%v Output=%q Error=%q: a 400ms start-up must not count against a 300ms timeout", res.OK, res.Output, res.Error)
	}
	if got := res.Stages["s"].DurationMS; got < 500 {
		t.Errorf("DurationMS = %d, want at least the 400ms start-up plus the 150ms command", got)
	}
}

// A start-up past the boot timeout is a boot failure, named as such, and is retried.
func TestBootTimeout(t *testing.T) {
	for _, tc := range []struct {
		name            string
		open, writeFile time.Duration
		cause           string
	}{
		{"open", 10 * time.Second, 0, "open mock sandbox: guest agent did not answer: context deadline exceeded"},
		{"input", 0, 10 * time.Second, "write /workspace/input: context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mock.New(nil)
			s := cmd("s")
			s.Timeout = time.Hour
			s.Retries = 1
			e := &runtime.Executor{
				Provider:    slowStart{Provider: m, openDelay: tc.open, writeDelay: tc.writeFile},
				BootTimeout: 100 * time.Millisecond,
				Backoff:     func(int) time.Duration { return 0 },
			}
			start := time.Now()
			res := run(t, e, s)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("run took %v; the 100ms boot timeout should end each attempt", d)
			}
			want := "stage s: boot mock sandbox: timed out after 100ms (the stage's timeout does not include boot): " + tc.cause
			if res.Error != want {
				t.Errorf("Error = %q,\nwant    %q", res.Error, want)
			}
			if sr := res.Stages["s"]; sr.Attempts != 2 || sr.Status != runtime.StatusFailed {
				t.Errorf("stage %+v, want 2 attempts (a boot timeout is transient: retries apply)", sr)
			}
			if m.OpenNow() != 0 {
				t.Errorf("%d sandboxes left open", m.OpenNow())
			}
		})
	}
}

// Without Executor.BootTimeout the package default applies, not the stage's timeout.
func TestBootTimeoutDefault(t *testing.T) {
	if runtime.BootTimeout < time.Minute {
		t.Fatalf("BootTimeout = %v; TCG boots on a loaded host need at least a minute", runtime.BootTimeout)
	}
	s := cmd("s")
	s.Timeout = 50 * time.Millisecond
	res := run(t, &runtime.Executor{Provider: slowStart{Provider: mock.New(nil), openDelay: 200 * time.Millisecond}}, s)
	if !res.OK {
		t.Fatalf("Error = %q: a 200ms open must fit the default boot timeout", res.Error)
	}
}

// Cancelling the run during start-up reports the cancellation, not a boot timeout.
func TestCancelDuringBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	e := &runtime.Executor{Provider: slowStart{Provider: mock.New(nil), openDelay: 10 * time.Second}, BootTimeout: time.Minute}
	res := runCtx(t, ctx, e, cmd("s"))
	if res.Error != "cancelled" || strings.Contains(res.Stages["s"].Error, "boot") {
		t.Errorf("Error = %q, stage %+v", res.Error, res.Stages["s"])
	}
}
