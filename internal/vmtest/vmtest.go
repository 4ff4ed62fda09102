// Package vmtest gives the test suites that boot real microVMs what they share: the
// guest image built from this checkout's guest agent, a QEMU driver, and a way to find
// VM processes a run left behind.
package vmtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/chv"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/qemu"
)

var (
	imageOnce sync.Once
	image     guestimage.Image
	imageErr  error
)

// Require skips the test in -short mode and when QEMU is not installed: the two reasons
// a machine of this project's kind cannot boot a VM.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real VM boot; run without -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64: run scripts/setup.sh (apt-get install qemu-system-x86)")
	}
}

// Image builds, once per test binary, the guest image around the guest agent compiled
// from this checkout, so the tests never run a stale agent. Debian packages are reused
// from the image cache that `voidbox guest build` fills.
func Image(t testing.TB) guestimage.Image {
	t.Helper()
	Require(t)
	imageOnce.Do(func() { image, imageErr = build() })
	if imageErr != nil {
		t.Fatalf("build guest image: %v", imageErr)
	}
	return image
}

func build() (guestimage.Image, error) {
	root, err := repoRoot()
	if err != nil {
		return guestimage.Image{}, err
	}
	kind := KernelKind()
	// One directory per checkout, test binary and kernel: packages' tests run in parallel
	// processes, and two checkouts on one machine must not swap each other's agent.
	tree := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("voidbox-test-image-%x-%s-%s", tree[:4], kind, filepath.Base(os.Args[0])))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return guestimage.Image{}, err
	}
	agent := filepath.Join(dir, "voidbox-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", agent, "./guest-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return guestimage.Image{}, fmt.Errorf("build guest agent: %v\n%s", err, out)
	}
	debs := filepath.Join(os.TempDir(), "voidbox_test_debs")
	if home, err := guestimage.DefaultCacheDir(); err == nil {
		if _, err := os.Stat(filepath.Join(home, "debs")); err == nil {
			debs = filepath.Join(home, "debs")
		}
	}
	// The kernel itself comes from the shared kernel cache (make guest compiles
	// it); a cold cache compiles it here, which takes minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	return guestimage.Build(ctx, guestimage.BuildOptions{AgentPath: agent, CacheDir: dir, DebDir: debs, Kernel: kind})
}

// EnvKernel chooses the kernel the VM suites boot: "voidbox" (the default, the
// kernel `voidbox guest build` compiles) or "debian" (Debian's cloud kernel
// with its modules), so that CI can run the suites on both.
const EnvKernel = "VOIDBOX_TEST_KERNEL"

// KernelKind is the kernel the VM suites boot, from $VOIDBOX_TEST_KERNEL.
func KernelKind() string {
	if k := os.Getenv(EnvKernel); k != "" {
		return k
	}
	return guestimage.KernelVoidbox
}

func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("vmtest: cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

// TCG returns a QEMU driver using software emulation, which works on every machine of
// this kind (KVM is present but broken there; auto would probe and pick TCG anyway).
func TCG(t testing.TB) *qemu.VMM {
	t.Helper()
	v, err := qemu.New(qemu.Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// CloudHypervisor returns the Cloud Hypervisor driver when its binary is on PATH and a
// probe boot of img under KVM succeeds; otherwise it skips the test saying which is missing.
func CloudHypervisor(t testing.TB, img guestimage.Image) *chv.Driver {
	t.Helper()
	bin, err := chv.Available()
	if err != nil {
		t.Skipf("cloud-hypervisor binary not on PATH: %v", err)
	}
	if err := chv.KVMUsable(); err != nil {
		t.Skipf("KVM not usable for cloud-hypervisor: %v", err)
	}
	d := chv.New(chv.Options{Binary: bin})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if ok, detail := d.ProbeBoot(ctx, img.Kernel, img.Initramfs); !ok {
		t.Skipf("KVM not usable here: a probe boot under %s failed: %s", bin, detail)
	}
	return d
}

// VMProcesses lists the pids of live VMM processes (QEMU, Cloud Hypervisor) whose command line contains marker
// (a state dir path, or "voidbox-<pid>-" for every VM a voidbox process started).
func VMProcesses(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !isVMM(filepath.Base(string(cmdline[:clampNul(cmdline)]))) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombie(stat) {
			continue
		}
		if strings.Contains(string(cmdline), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func isVMM(prog string) bool {
	return strings.HasPrefix(prog, "qemu-system") || prog == "cloud-hypervisor"
}

func clampNul(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// isZombie reads the state field of /proc/PID/stat ("pid (comm) S ...").
func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// WaitNoVMs fails the test unless every QEMU process matching marker is gone within d.
func WaitNoVMs(t testing.TB, marker string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pids := VMProcesses(marker)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM processes still running after %s: pids %v (marker %q)", d, pids, marker)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StateDirs lists voidbox state dirs in the temp dir whose owner is pid.
func StateDirs(pid int) []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), vmstate.Prefix(pid)+"*"))
	return dirs
}
