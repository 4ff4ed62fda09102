package main

import (
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
)

// --verbose streams each VM's console, prefixed with its stage, and logs each phase
// of the stage as it ends. (A cold boot: a warm start's console begins after the
// kernel's boot.)
func TestVMVerboseConsoleAndPhases(t *testing.T) {
	prog := writeFile(t, t.TempDir(), "v.star", `pipeline = box(name = "talk", cmd = ["sh", "-c", "echo hi"])`+"\n")
	r := voidbox(t, vmArgs(t, "--verbose", "--warm", "off", prog)...)
	if r.code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"[vm:talk] [", // a kernel line, with its printk time
		"Linux version",
		"[vm:talk] voidbox-agent: [", // the agent's own lines
		"voidbox: vm.boot voidbox.stage.name=talk attempt=1 duration=",
		"voidbox: agent.connect voidbox.stage.name=talk",
		"voidbox: exec voidbox.stage.name=talk attempt=1 duration=",
		"voidbox: stage end voidbox.stage.name=talk status=ok",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "Linux version") && !strings.HasPrefix(line, "[vm:talk] ") {
			t.Errorf("console line without its [vm:NAME] prefix: %q", line)
		}
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}

// Without --verbose nothing of the console reaches stderr, and of the phases only the
// live view's vm.boot line, which says how each VM started: warm from the snapshot, or
// a cold boot and why.
func TestVMLiveViewSaysWarmOrCold(t *testing.T) {
	share := t.TempDir()
	prog := writeFile(t, t.TempDir(), "q.star", `
plain = box(name = "plain", cmd = ["true"])
mounted = box(name = "mounted", cmd = ["ls", "/mnt/share"], mounts = [mount(host = "`+share+`", guest = "/mnt/share")])
pipeline = pipe(plain, mounted)
`)
	r := voidbox(t, vmArgs(t, prog)...)
	if r.code != exitOK || strings.Contains(r.stderr, "[vm:") || strings.Contains(r.stderr, "agent.connect") {
		t.Fatalf("exit %d, stderr (want no console or phase log lines):\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"plain                vm.boot ",
		"(qemu/tcg warm start from snapshot ",
		"mounted              vm.boot ",
		"(qemu/tcg cold boot: mounts need devices at boot)",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("live view lacks %q:\n%s", want, r.stderr)
		}
	}
	vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
}
