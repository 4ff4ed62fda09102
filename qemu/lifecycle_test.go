package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

const childEnv = "VOIDBOX_QEMU_TEST_CHILD"

// TestPdeathsigChild is the child half of TestNoQEMUOutlivesVoidbox: it boots
// a VM, reports its pid and state dir, and waits to be killed.
func TestPdeathsigChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process for TestNoQEMUOutlivesVoidbox")
	}
	m := bootTest(t, "hang")
	fmt.Printf("VM %d %s\n", m.Pid(), m.StateDir())
	time.Sleep(time.Minute)
}

func TestNoQEMUOutlivesVoidbox(t *testing.T) {
	testImage(t) // build outside the child, and skip in -short mode
	cmd := exec.Command(os.Args[0], "-test.run=^TestPdeathsigChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "VM %d %s", &pid, &dir); err == nil {
			break
		}
	}
	if pid == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child did not report a VM")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("qemu %d outlived the SIGKILLed voidbox process", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("expected the dead owner's state dir %s to remain for the sweeper: %v", dir, err)
	}
	removed, err := vmstate.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(removed, dir) {
		t.Fatalf("vmstate.Sweep removed %v, want %s among them", removed, dir)
	}
}

// alive is true while pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestBootRejectsBadConfig(t *testing.T) {
	v := tcgVMM(t)
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("voidbox-%d-*", os.Getpid())))
	_, err := v.Boot(context.Background(), runtime.VMConfig{Name: "bad", Kernel: "k", Initramfs: "i", MemoryMB: 16, VCPUs: 1})
	if err == nil || !strings.Contains(err.Error(), "MemoryMB 16") {
		t.Fatalf("Boot with 16 MiB = %v; want an error naming MemoryMB", err)
	}
	// QEMU itself rejects a missing kernel: Boot must report its stderr.
	_, err = v.Boot(context.Background(), runtime.VMConfig{Name: "nokernel", Kernel: "/nonexistent/vmlinuz", Initramfs: "/nonexistent/initrd", MemoryMB: 128, VCPUs: 1})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vmlinuz") {
		t.Fatalf("Boot with a missing kernel = %v; want QEMU's complaint about it", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("voidbox-%d-*", os.Getpid())))
	if len(after) > len(before) {
		t.Fatalf("failed boots left state dirs: %v", after)
	}
}

// TestReadOnlyShareHeldByHost shares a directory read-only while the guest mounts it
// writable (as a guest whose kernel is not to be trusted would): the write fails in
// the guest with EROFS and nothing reaches the host.
func TestReadOnlyShareHeldByHost(t *testing.T) {
	img := testImage(t)
	if _, err := os.Stat(DefaultVirtiofsd); err != nil {
		t.Skipf("needs %s (apt-get install qemu-system-common)", DefaultVirtiofsd)
	}
	if os.Geteuid() != 0 {
		t.Skip("a read-only share with QEMU's C virtiofsd needs root (vmstate.ReadOnlyExport)")
	}
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in.txt"), []byte("from host"), 0o644)
	m := bootToPoweroff(t, runtime.VMConfig{
		Name: "roshare", Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: "voidbox.test=share",
		MemoryMB: 256, VCPUs: 1, Shares: []runtime.Share{{Tag: "share", HostPath: host, ReadOnly: true}},
	})
	console := m.ConsoleTail(1 << 16)
	if !strings.Contains(console, "testinit: write share:") || !strings.Contains(console, "read-only file system") {
		t.Errorf("the guest's write was not refused with EROFS; console:\n%s", console)
	}
	if _, err := os.Stat(filepath.Join(host, "out.txt")); err == nil {
		t.Error("the guest wrote out.txt into a read-only share")
	}
	assertGone(t, m)
}

func TestShareViaVirtiofsd(t *testing.T) {
	img := testImage(t)
	if _, err := os.Stat(DefaultVirtiofsd); err != nil {
		t.Skipf("needs %s (apt-get install qemu-system-common)", DefaultVirtiofsd)
	}
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in.txt"), []byte("from host"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	m := bootToPoweroff(t, runtime.VMConfig{
		Name: "share", Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: "voidbox.test=share",
		MemoryMB: 256, VCPUs: 1, StateDir: state, Shares: []runtime.Share{{Tag: "share", HostPath: host}},
	})
	out, err := os.ReadFile(filepath.Join(host, "out.txt"))
	if err != nil || string(out) != "guest saw: from host" {
		t.Fatalf("out.txt = %q, %v; console:\n%s", out, err, m.ConsoleTail(4096))
	}
	if log, err := os.ReadFile(filepath.Join(state, "console.log")); err != nil || !strings.Contains(string(log), "Run /init as init process") {
		t.Errorf("console log was not kept in the caller's StateDir: %v", err)
	}
	assertGone(t, m)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), m.StateDir()) {
			t.Errorf("process %s still runs for the ended VM: %q", p, b)
		}
	}
}
