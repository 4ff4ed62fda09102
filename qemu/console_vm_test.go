package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// TestConsoleFloodCapped boots a guest that writes 1 MiB and terminal escapes to
// its console: the log voidbox keeps stays within its cap, the tail still has the
// guest's last words, and no escape sequence reaches the caller.
func TestConsoleFloodCapped(t *testing.T) {
	img := testImage(t)
	defer func(old int64) { consoleLogLimit = old }(consoleLogLimit)
	consoleLogLimit = 128 << 10
	state := t.TempDir()
	m, err := tcgVMM(t).BootMachine(context.Background(), runtime.VMConfig{
		Name: "t-flood", Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: "voidbox.test=flood",
		MemoryMB: 256, VCPUs: 1, StateDir: state,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Kill() })
	select {
	case <-m.Done():
	case <-time.After(3 * time.Minute):
		t.Fatalf("flooding guest did not power off; console:\n%s", m.ConsoleTail(2048))
	}
	if err := m.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if total := m.console.Total(); total < 1<<20 {
		t.Fatalf("console saw %d bytes, want the 1 MiB flood", total)
	}
	log, err := os.ReadFile(filepath.Join(state, consoleFile))
	if err != nil {
		t.Fatal(err)
	}
	if max := consoleLogLimit + keptConsole + 4096; int64(len(log)) > max {
		t.Errorf("console.log is %d bytes, want at most %d (head cap, marker, tail)", len(log), max)
	}
	if !strings.Contains(string(log), "Run /init as init process") || !strings.Contains(string(log), "[voidbox: console output capped: ") {
		t.Errorf("console.log lacks the boot's start or the cap marker")
	}
	tail := m.ConsoleTail(4096)
	if !strings.Contains(tail, "testinit: flood done") {
		t.Errorf("ConsoleTail lacks the guest's last words:\n%s", tail)
	}
	if strings.ContainsAny(tail, "\x1b\x07\r") {
		t.Errorf("ConsoleTail passes terminal controls on: %q", tail[max(len(tail)-200, 0):])
	}
	assertGone(t, m)
}
