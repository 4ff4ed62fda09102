package vm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// The agent's "not found in PATH <guest PATH>" becomes the wording every sandbox uses;
// other refusals, and names with a slash (not searched for), keep the agent's words.
func TestExecErrorWording(t *testing.T) {
	notFound := &proto.RemoteError{Code: proto.CodeNotFound, Message: `program "nocmd" not found in PATH /bin:/sbin:/usr/bin:/usr/sbin`}
	err := execError("nocmd", fmt.Errorf("agent exec: %w", notFound))
	if !errors.Is(err, runtime.ErrCommandNotFound) || err.Error() != "executable file not found in the guest's $PATH" {
		t.Errorf("missing command: %v", err)
	}
	for name, in := range map[string]error{
		"/workspace/x.sh": &proto.RemoteError{Code: proto.CodeNotFound, Message: `program "/workspace/x.sh": not an executable file`},
		"sh":              &proto.RemoteError{Code: proto.CodeNotAllowed, Message: `command "sh" is not allowed by this box's allow list [cat]`},
		"cat":             errors.New("the VM stopped"),
	} {
		if got := execError(name, in); got != in {
			t.Errorf("%s: %v rewritten to %v", name, in, got)
		}
	}
}

// A box's timeout bounds its command, not the VM boot: under TCG a boot takes seconds,
// and a 2 s box still gets its 2 s. A missing command is reported as in the local
// sandbox. One pipe, so the boots do not compete for the CPUs.
func TestStageTimeoutExcludesBoot(t *testing.T) {
	img := vmtest.Image(t)
	p, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		t.Fatal(err)
	}
	sleepy := &runtime.Stage{Name: "sleepy", Cmd: []string{"sh", "-c", "sleep 1.5; echo slept"}, MemoryMB: 256, VCPUs: 1, Timeout: 2 * time.Second, OnFailure: runtime.FailStop}
	nocmd := &runtime.Stage{Name: "nocmd", Cmd: []string{"nocmd"}, MemoryMB: 256, VCPUs: 1, Timeout: time.Minute, OnFailure: runtime.FailContinue}
	var walls []time.Duration
	var started time.Time
	e := &runtime.Executor{Provider: p, MaxParallel: 1, OnEvent: func(ev runtime.Event) {
		if ev.Kind == runtime.EventStart {
			started = time.Now()
		}
		if ev.Kind == runtime.EventEnd {
			walls = append(walls, time.Since(started))
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := e.Run(ctx, &runtime.Pipe{Nodes: []runtime.Node{sleepy, nocmd}})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Stages["sleepy"]
	if got.Status != runtime.StatusOK || got.Stdout != "slept\n" {
		t.Fatalf("sleepy: %+v; a 2s timeout must leave sleep 1.5 its time after the boot", got)
	}
	// The attempt (boot plus command) outlasted the timeout: the boot did not count.
	if got.DurationMS <= 2000 {
		t.Errorf("sleepy took %dms in all; the test needs a boot that makes it exceed its 2s timeout", got.DurationMS)
	}
	t.Logf("attempt wall times (boot + command): %v", walls)
	if want := "exec nocmd: executable file not found in the guest's $PATH"; res.Stages["nocmd"].Error != want {
		t.Errorf("nocmd: error %q, want %q", res.Stages["nocmd"].Error, want)
	}
	if strings.Contains(res.Stages["nocmd"].Error, "/usr/bin") {
		t.Errorf("nocmd: the error lists the guest PATH")
	}
}
