package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/internal/textfmt"
	"github.com/voidbox/voidbox/runtime"
)

// liveView prints one line per stage event to stderr:
//
//	[   1.203s] shout                ok in 410ms
//
// The stamp is the time since the view started, always in seconds with milliseconds,
// right-aligned so the columns line up.
type liveView struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func newLiveView(w io.Writer) *liveView {
	return &liveView{w: w, start: time.Now()}
}

func (v *liveView) event(e runtime.Event) {
	what := describeEvent(e)
	if what == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(v.w, "%s %-20s %s\n", stamp(time.Since(v.start)), e.Stage, what)
}

// stamp is "[   1.203s]": seconds with three decimals in a fixed width (up to 9999.999s).
func stamp(d time.Duration) string {
	return fmt.Sprintf("[%8.3fs]", d.Truncate(time.Millisecond).Seconds())
}

// describeEvent is what the live view says about e after the stage name; "" for what
// it leaves out: phases other than vm.boot (--verbose logs them all), guest samples
// (the report draws them) and egress decisions (--network-log has them). vm.boot is
// shown because it says how the VM started: warm from a snapshot, or a cold boot and
// why.
func describeEvent(e runtime.Event) string {
	switch e.Kind {
	case runtime.EventStart:
		if e.Attempt > 1 {
			return fmt.Sprintf("start (attempt %d)", e.Attempt)
		}
		return "start"
	case runtime.EventRetry:
		return fmt.Sprintf("retry after: %v", e.Err)
	case runtime.EventSkip:
		return "skipped"
	case runtime.EventPhase:
		if p := e.Phase; p != nil && p.Name == runtime.PhaseBoot {
			what := "vm.boot " + textfmt.Duration(p.Duration)
			if p.Detail != "" {
				what += " (" + termsafe.Clean(p.Detail) + ")"
			}
			if p.Error != "" {
				what += " failed"
			}
			return what
		}
		return ""
	case runtime.EventTool:
		if e.Tool == nil {
			return "tool"
		}
		return "tool " + termsafe.Clean(e.Tool.Name) + " " + truncateRunes(termsafe.Clean(e.Tool.Input), 80)
	case runtime.EventEnd:
		status, detail := "ok", ""
		if e.Result != nil && e.Result.Status != runtime.StatusOK {
			status = string(e.Result.Status)
			if e.Result.Error != "" {
				detail = ": " + e.Result.Error
			}
		}
		return fmt.Sprintf("%s in %s%s", status, textfmt.Duration(e.Duration), detail)
	}
	return ""
}

// truncateRunes keeps the first n runes of s on one line, marking a cut with "...".
func truncateRunes(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}
