package vm

import (
	"strconv"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// The smallest box the DSL accepts (memory_mb = runtime.MinMemoryMB) boots the
// default guest image and runs a command: the validator's minimum is what
// really boots, tested at exactly that value.
func TestSmallestBoxBoots(t *testing.T) {
	img := vmtest.Image(t)
	min := runtime.MinMemoryMB
	if img.KernelKind == guestimage.KernelDebian {
		min = runtime.MinMemoryMBDebianKernel
	}
	s := open(t, runtime.SandboxSpec{Name: "smallest", MemoryMB: min, VCPUs: 1})
	out, errOut, res := run(t, s, "", "sh", "-c", "grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2")
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, errOut)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || kb <= 0 || kb > min*1024 {
		t.Fatalf("guest MemTotal = %q kB; want a positive value within the box's %d MiB", out, min)
	}
}
