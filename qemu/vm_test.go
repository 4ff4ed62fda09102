package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/runtime"
)

var (
	imageOnce sync.Once
	image     guestimage.Image
	imageErr  error
)

// testImage builds (once per test binary) the guest image with testinit as
// /init. Every caller is a real VM boot, so it also owns the -short skip.
func testImage(t *testing.T) guestimage.Image {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real VM boot; run without -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	imageOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "voidbox_qemu_test_image_"+os.Getenv("VOIDBOX_TEST_KERNEL"))
		init := filepath.Join(dir, "testinit")
		cmd := exec.Command("go", "build", "-trimpath", "-o", init, "./testdata/testinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("build testinit: %v\n%s", err, out)
			return
		}
		image, imageErr = guestimage.Build(context.Background(), guestimage.BuildOptions{
			AgentPath: init, CacheDir: dir, DebDir: filepath.Join(os.TempDir(), "voidbox_test_debs"),
			// vmtest.EnvKernel (vmtest imports this package, so not by name).
			Kernel: os.Getenv("VOIDBOX_TEST_KERNEL"),
		})
	})
	if imageErr != nil {
		t.Fatalf("build guest image: %v", imageErr)
	}
	return image
}

func tcgVMM(t *testing.T) *VMM {
	t.Helper()
	v, err := New(Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bootTest(t *testing.T, mode string) *Machine {
	t.Helper()
	img := testImage(t)
	cmdline := ""
	if mode != "" {
		cmdline = "voidbox.test=" + mode
	}
	m, err := tcgVMM(t).BootMachine(context.Background(), runtime.VMConfig{
		Name: "t-" + mode, Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: cmdline,
		MemoryMB: 256, VCPUs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Kill() })
	return m
}

// assertGone checks that the VM left no process and no state directory.
func assertGone(t *testing.T, m *Machine) {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", m.Pid())); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.Pid())); !strings.Contains(string(st), ") Z ") {
			t.Errorf("qemu pid %d still exists", m.Pid())
		}
	}
	if _, err := os.Stat(m.StateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s still exists (%v)", m.StateDir(), err)
	}
}

func TestBootAgentChannel(t *testing.T) {
	m := bootTest(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	start := time.Now()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := m.Status(ctx)
	if err != nil || !st.Running || st.Status != "running" {
		t.Errorf("Status = %+v, %v; want running", st, err)
	}
	rd := bufio.NewReader(conn)
	// The guest only answers once it has opened its port; resend until it does.
	var line string
	for line == "" {
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err = rd.ReadString('\n')
		if err != nil && ctx.Err() != nil {
			t.Fatalf("no answer from the guest: %v\nconsole:\n%s", err, m.ConsoleTail(4096))
		}
	}
	t.Logf("agent channel answered %q %v after boot start", strings.TrimSpace(line), time.Since(start))
	if line != "hello ping\n" {
		t.Fatalf("guest said %q, want %q", line, "hello ping\n")
	}
	if !strings.Contains(m.ConsoleTail(1<<20), "Run /init as init process") {
		t.Errorf("console log lacks the kernel's init line:\n%s", m.ConsoleTail(2048))
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write([]byte("poweroff\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("guest poweroff did not end qemu")
	}
	if err := m.Err(); err != nil {
		t.Fatalf("Err after a clean poweroff = %v, want nil", err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after exit = %v", err)
	}
	assertGone(t, m)
	if !strings.Contains(m.ConsoleTail(4096), "testinit: modules loaded") {
		t.Errorf("console tail after exit lacks the init's output:\n%s", m.ConsoleTail(4096))
	}
}

func TestKernelPanicEndsMachine(t *testing.T) {
	m := bootTest(t, "panic")
	select {
	case <-m.Done():
	case <-time.After(runtime.BootTimeout):
		t.Fatalf("panicking guest did not end qemu; console:\n%s", m.ConsoleTail(4096))
	}
	err := m.Err()
	if err == nil || !strings.Contains(err.Error(), "guest kernel panic") ||
		!(strings.Contains(err.Error(), "sysrq") || strings.Contains(err.Error(), "Attempted to kill init")) {
		t.Fatalf("Err = %v; want a guest kernel panic error quoting the crash (sysrq, or init exiting)", err)
	}
	if !strings.Contains(m.ConsoleTail(8192), "Kernel panic") {
		t.Errorf("ConsoleTail lacks the panic:\n%s", m.ConsoleTail(8192))
	}
	if _, err := m.DialAgent(context.Background()); err == nil || !strings.Contains(err.Error(), "kernel panic") {
		t.Errorf("DialAgent after the panic = %v; want the panic as the reason", err)
	}
	assertGone(t, m)
}

func TestShutdownStopsHungGuest(t *testing.T) {
	m := bootTest(t, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done is open after Shutdown returned")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after QMP quit = %v, want nil", err)
	}
	assertGone(t, m)
}

func TestShutdownEscalatesToKill(t *testing.T) {
	m := bootTest(t, "hang")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an ended context means: kill now
	if err := m.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with an ended context returned nil; want the kill reported")
	}
	if err := m.Err(); !errors.Is(err, ErrKilled) {
		t.Errorf("Err = %v, want ErrKilled", err)
	}
	assertGone(t, m)
}

func TestKill(t *testing.T) {
	m := bootTest(t, "hang")
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); !errors.Is(err, ErrKilled) {
		t.Errorf("Err = %v, want ErrKilled", err)
	}
	assertGone(t, m)
}

func TestBootFloorTCG(t *testing.T) {
	img := testImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var best time.Duration
	for i := 0; i < 3; i++ {
		d, err := BootFloor(ctx, Options{}, img.Kernel, img.Initramfs, "tcg")
		if err != nil {
			t.Fatal(err)
		}
		if best == 0 || d < best {
			best = d
		}
	}
	t.Logf("BootFloor under TCG (best of 3): %v", best)
}

func BenchmarkBootFloorTCG(b *testing.B) {
	img, err := guestimage.Resolve("", "")
	if err != nil {
		b.Skipf("needs a built guest image: %v", err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := BootFloor(context.Background(), Options{}, img.Kernel, img.Initramfs, "tcg"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestProbeKVMCached(t *testing.T) {
	img := testImage(t)
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("needs /dev/kvm to run a KVM probe boot")
	}
	opts := Options{ProbeCache: t.TempDir()}
	res, err := ProbeKVM(context.Background(), opts, img.Kernel, img.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("KVM probe: ok=%v %s", res.OK, res.Detail)
	if res.Cached || res.Detail == "" {
		t.Errorf("first probe = %+v; want a fresh result with detail", res)
	}
	again, err := ProbeKVM(context.Background(), opts, img.Kernel, img.Initramfs)
	if err != nil || !again.Cached || again.OK != res.OK {
		t.Fatalf("second probe = %+v, %v; want the cached result", again, err)
	}
	d := Diagnose(context.Background(), opts, img.Kernel, img.Initramfs)
	if d.QEMUVersion == "" || !d.KVMDevice || d.KVMProbe == nil || !d.KVMProbe.Cached {
		t.Errorf("Diagnose = %+v", d)
	}
}
