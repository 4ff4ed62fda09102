package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/internal/digest"
	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// ProbeTimeout bounds the KVM probe boot. A broken nested KVM can be 50x
// slower than TCG before it dies, so the bound is what makes auto safe.
var ProbeTimeout = 20 * time.Second

// trivialInit is the kernel cmdline tail for a boot that reaches init and
// powers off at once (busybox poweroff -f is in every guest image).
const trivialInit = "rdinit=/sbin/poweroff -- -f"

// ProbeResult is the outcome of a KVM probe boot.
type ProbeResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Cached is true when the result came from the probe cache.
	Cached bool `json:"-"`
}

// ProbeKVM boots the guest kernel under KVM to a trivial init and reports
// whether it reached init and powered off cleanly. Results are cached in
// opts.ProbeCache (default ~/.voidbox/probe) keyed by the kernel's sha256
// and the QEMU version. The error is for failures to run the probe at all.
func ProbeKVM(ctx context.Context, opts Options, kernel, initramfs string) (ProbeResult, error) {
	bin, version, err := qemuVersion(opts.Binary)
	if err != nil {
		return ProbeResult{}, err
	}
	opts.Binary = bin
	ksum, err := digest.File(kernel)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("kvm probe: hash kernel: %w", err)
	}
	dir := opts.ProbeCache
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ProbeResult{}, fmt.Errorf("kvm probe: locate cache: %w", err)
		}
		dir = filepath.Join(home, ".voidbox", "probe")
	}
	key := sha256.Sum256([]byte(ksum + "\n" + version))
	cacheFile := filepath.Join(dir, "kvm-"+hex.EncodeToString(key[:12])+".json")
	if raw, err := os.ReadFile(cacheFile); err == nil {
		var res ProbeResult
		if json.Unmarshal(raw, &res) == nil {
			res.Cached = true
			return res, nil
		}
	}
	res := ProbeResult{OK: true, Detail: "KVM probe boot reached init and powered off"}
	pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	if _, err := trivialBoot(pctx, opts, kernel, initramfs, "kvm"); err != nil {
		if ctx.Err() != nil {
			return ProbeResult{}, fmt.Errorf("kvm probe: %w", ctx.Err())
		}
		res = ProbeResult{OK: false, Detail: "KVM probe boot failed: " + firstLines(err.Error(), 3)}
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		raw, _ := json.Marshal(res)
		_ = os.WriteFile(cacheFile, raw, 0o644)
	}
	return res, nil
}

// BootFloor boots the kernel under the given accelerator ("kvm" or "tcg")
// straight to an init that powers off, and returns the wall time from
// starting QEMU to its exit: the floor any box's start-up is compared with.
func BootFloor(ctx context.Context, opts Options, kernel, initramfs, accel string) (time.Duration, error) {
	bin, _, err := qemuVersion(opts.Binary)
	if err != nil {
		return 0, err
	}
	opts.Binary = bin
	return trivialBoot(ctx, opts, kernel, initramfs, accel)
}

func trivialBoot(ctx context.Context, opts Options, kernel, initramfs, accel string) (time.Duration, error) {
	dir, err := newStateDir()
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	l := launch{accel: accel, dir: dir}
	if accel == "tcg" {
		l.tscKHz = hostTSCkHz()
	}
	cfg, err := prepareLaunch(runtime.VMConfig{Name: "floor", Kernel: kernel, Initramfs: initramfs, Cmdline: trivialInit, MemoryMB: FloorMemoryMB, VCPUs: 1}, &l, opts.Binary)
	if err != nil {
		return 0, err
	}
	args, err := buildArgs(cfg, l)
	if err != nil {
		return 0, err
	}
	console, err := vmstate.ListenConsole(l.path(consoleSocket), l.path(consoleFile), consoleLogLimit, keptConsole)
	if err != nil {
		return 0, err
	}
	defer console.Close(0)
	stderr := &tailBuffer{max: 4 << 10}
	cmd := exec.Command(opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	start := time.Now()
	wait, err := vmstate.StartPinnedAcrossSetuid(cmd)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", opts.Binary, err)
	}
	var werr error
	select {
	case werr = <-wait:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-wait
		_ = console.Close(consoleDrain)
		return 0, fmt.Errorf("%s boot did not power off in time: %w%s", accel, ctx.Err(), consoleSuffix(console.Tail(errTailBytes)))
	}
	elapsed := time.Since(start)
	_ = console.Close(consoleDrain)
	tail := console.Tail(keptConsole)
	if werr != nil {
		return 0, fmt.Errorf("%s boot: qemu exited: %v: %s%s", accel, werr, termsafe.Clean(strings.TrimSpace(stderr.String())), consoleSuffix(tail))
	}
	if !strings.Contains(tail, "Run /sbin/poweroff as init process") {
		return 0, fmt.Errorf("%s boot: the kernel did not reach init%s", accel, consoleSuffix(tail))
	}
	return elapsed, nil
}

var versions sync.Map // binary path -> version string

// qemuVersion resolves the QEMU binary and returns its version line.
func qemuVersion(binary string) (string, string, error) {
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	bin, err := exec.LookPath(binary)
	if err != nil {
		return "", "", fmt.Errorf("qemu: %s not found (install it with apt-get install qemu-system-x86): %w", binary, err)
	}
	if v, ok := versions.Load(bin); ok {
		return bin, v.(string), nil
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		return "", "", fmt.Errorf("qemu: %s -version: %w", bin, err)
	}
	v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	versions.Store(bin, v)
	return bin, v, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

// FloorMemoryMB is the guest memory of a floor boot; benchmarks give the box the same.
const FloorMemoryMB = 256

// Diagnosis is what `voidbox doctor` reports about the QEMU side of the host.
type Diagnosis struct {
	QEMUPath    string
	QEMUVersion string
	QEMUError   string // why QEMU is unusable, empty when it is fine
	KVMDevice   bool   // /dev/kvm exists (which does not mean KVM works)
	// KVMProbe is the probe boot result; nil when it was not run (no
	// /dev/kvm, no QEMU, or no guest image to probe with).
	KVMProbe      *ProbeResult
	KVMProbeError string
	VhostVsock    bool
	VirtiofsdPath string
	Virtiofsd     bool
}

// Diagnose inspects the host. kernel and initramfs may be empty, in which
// case the KVM probe is skipped.
func Diagnose(ctx context.Context, opts Options, kernel, initramfs string) Diagnosis {
	var d Diagnosis
	bin, version, err := qemuVersion(opts.Binary)
	if err != nil {
		d.QEMUError = err.Error()
	} else {
		d.QEMUPath, d.QEMUVersion = bin, version
		opts.Binary = bin
	}
	_, err = os.Stat("/dev/kvm")
	d.KVMDevice = err == nil
	d.VhostVsock = VhostVsockAvailable()
	d.VirtiofsdPath = opts.Virtiofsd
	if d.VirtiofsdPath == "" {
		d.VirtiofsdPath = DefaultVirtiofsd
	}
	_, err = os.Stat(d.VirtiofsdPath)
	d.Virtiofsd = err == nil
	if d.KVMDevice && d.QEMUError == "" && kernel != "" && initramfs != "" {
		res, err := ProbeKVM(ctx, opts, kernel, initramfs)
		if err != nil {
			d.KVMProbeError = err.Error()
		} else {
			d.KVMProbe = &res
		}
	}
	return d
}

// consoleSuffix quotes a console tail for an error message, or nothing when the guest
// printed nothing (a VMM that dies before the kernel runs).
func consoleSuffix(console string) string {
	console = strings.TrimSpace(console)
	if console == "" {
		return ""
	}
	return "\nconsole tail:\n" + termsafe.Clean(lastBytes(console, errTailBytes))
}
