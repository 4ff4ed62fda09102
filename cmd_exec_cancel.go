package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cancelReason is why a run was cancelled, as the cause of its context: "received SIGTERM",
// "--timeout 5s expired". It completes the sentence "run cancelled: ...".
type cancelReason string

func (r cancelReason) Error() string { return string(r) }

// reasonOf is why ctx ended, in words ("" while it has not).
func reasonOf(ctx context.Context) string {
	if cause := context.Cause(ctx); cause != nil {
		return cause.Error()
	}
	return ""
}

// runContext is the context of one `voidbox exec`: it ends on SIGINT, SIGTERM or SIGHUP,
// on cancel (a write to stdout failed), or when timeout (> 0) expires, with a cancelReason
// as its cause. Ending it is what makes the executor stop the stages and clean up their
// sandboxes (processes, workspaces, VMs), so every way out of a run must go through it:
// a signal's default action would kill voidbox on the spot and leave them behind.
//
// Also SIGPIPE is caught, so a reader that went away (`| head -1`) shows up as a write
// error on stdout instead of killing voidbox in the middle of a run. stop releases the
// signals; until then, signals after the first are absorbed so the cleanup can finish.
func runContext(timeout time.Duration, sigs ...syscall.Signal) (ctx context.Context, cancel context.CancelCauseFunc, stop func()) {
	base, cancel := context.WithCancelCause(context.Background())
	ctx = base
	cancelTimeout := func() {}
	if timeout > 0 {
		ctx, cancelTimeout = context.WithTimeoutCause(base, timeout, cancelReason(fmt.Sprintf("--timeout %s expired", timeout)))
	}
	stopSignals := onSignals(cancel, sigs...)
	return ctx, cancel, func() {
		stopSignals()
		cancelTimeout()
		cancel(nil)
	}
}

// onSignals calls cancel with "received SIGNAL" on the first of sigs; it also absorbs
// SIGPIPE (see runContext). A signal that was ignored when voidbox started stays
// ignored: `nohup voidbox exec ...` must survive the hangup it asked to survive.
func onSignals(cancel context.CancelCauseFunc, sigs ...syscall.Signal) (stop func()) {
	var watched []os.Signal
	for _, s := range sigs {
		if !signal.Ignored(s) {
			watched = append(watched, s)
		}
	}
	caught := make(chan os.Signal, 1)
	if len(watched) > 0 {
		signal.Notify(caught, watched...)
	}
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-caught:
			cancel(cancelReason("received " + signalName(s)))
		case <-done:
		}
	}()
	return func() {
		signal.Stop(caught)
		signal.Stop(pipes)
		close(done)
	}
}

// signalName is "SIGTERM" rather than Go's "terminated".
func signalName(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if name := unix.SignalName(sig); name != "" {
			return name
		}
	}
	return s.String()
}

// cancelSignals are the signals that cancel a run: Ctrl-C, kill, a closed terminal.
var cancelSignals = []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
