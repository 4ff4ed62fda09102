package qemu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// EnvAccel overrides the accelerator choice ("auto", "kvm" or "tcg") when
// Options.Accel is empty.
const EnvAccel = "VOIDBOX_ACCEL"

// DefaultVirtiofsd is where Debian's qemu-system-common installs virtiofsd.
const DefaultVirtiofsd = "/usr/lib/qemu/virtiofsd"

// Options configures the driver.
type Options struct {
	// Binary is the QEMU executable; default qemu-system-x86_64 from PATH.
	Binary string
	// Accel is "auto", "kvm" or "tcg"; empty means $VOIDBOX_ACCEL, then "auto".
	// auto uses KVM only when a probe boot of the guest image under KVM
	// succeeds (cached per kernel and QEMU version), else TCG.
	Accel string
	// Notice receives the one-time notice that auto fell back to TCG.
	Notice io.Writer
	// ProbeCache holds KVM probe results; default ~/.voidbox/probe.
	ProbeCache string
	// Virtiofsd is the virtiofsd binary for shares; default DefaultVirtiofsd.
	Virtiofsd string
}

// VMM boots QEMU microVMs. It is safe for concurrent use.
type VMM struct {
	opts Options

	accelMu sync.Mutex   // serialises the probe
	accel   atomic.Value // string, set once settled
}

var _ runtime.VMM = (*VMM)(nil)

// New validates opts and returns a driver. The accelerator is settled at the
// first Boot (auto needs a guest kernel to probe with).
func New(opts Options) (*VMM, error) {
	if opts.Accel == "" {
		opts.Accel = os.Getenv(EnvAccel)
	}
	if opts.Accel == "" {
		opts.Accel = "auto"
	}
	switch opts.Accel {
	case "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("qemu: accelerator %q is not one of auto, kvm, tcg (from --accel or %s)", opts.Accel, EnvAccel)
	}
	if opts.Binary == "" {
		opts.Binary = "qemu-system-x86_64"
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s not found (install it with apt-get install qemu-system-x86): %w", opts.Binary, err)
	}
	opts.Binary = bin
	if opts.Virtiofsd == "" {
		opts.Virtiofsd = DefaultVirtiofsd
	}
	if opts.Notice == nil {
		opts.Notice = io.Discard
	}
	v := &VMM{opts: opts}
	if opts.Accel != "auto" {
		v.accel.Store(opts.Accel)
	}
	return v, nil
}

// Name is "qemu/kvm" or "qemu/tcg", or "qemu/auto" before the first Boot
// settled the accelerator.
func (v *VMM) Name() string {
	if a := v.settledAccel(); a != "" {
		return "qemu/" + a
	}
	return "qemu/auto"
}

func (v *VMM) settledAccel() string {
	a, _ := v.accel.Load().(string)
	return a
}

// Accel settles and returns the accelerator Boot uses, probing KVM with the
// given guest image when the choice is auto. A failed probe attempt (as
// opposed to a probe that found KVM broken) is not remembered.
func (v *VMM) Accel(ctx context.Context, kernel, initramfs string) (string, error) {
	if a := v.settledAccel(); a != "" {
		return a, nil
	}
	v.accelMu.Lock()
	defer v.accelMu.Unlock()
	if a := v.settledAccel(); a != "" {
		return a, nil
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		fmt.Fprintln(v.opts.Notice, "voidbox: /dev/kvm is absent; running microVMs under QEMU TCG software emulation (slower)")
		v.accel.Store("tcg")
		return "tcg", nil
	}
	res, err := ProbeKVM(ctx, v.opts, kernel, initramfs)
	if err != nil {
		return "", err
	}
	if res.OK {
		v.accel.Store("kvm")
		return "kvm", nil
	}
	fmt.Fprintf(v.opts.Notice, "voidbox: KVM is not usable here (%s); running microVMs under QEMU TCG software emulation (slower)\n", res.Detail)
	v.accel.Store("tcg")
	return "tcg", nil
}

// Boot starts one VM. The returned Machine cleans up after itself when the
// VM ends for any reason; Shutdown or Kill end it early.
func (v *VMM) Boot(ctx context.Context, cfg runtime.VMConfig) (runtime.Machine, error) {
	return v.BootMachine(ctx, cfg)
}

// BootMachine is Boot returning the concrete type (for Status and the pid).
func (v *VMM) BootMachine(ctx context.Context, cfg runtime.VMConfig) (*Machine, error) {
	return v.bootMachine(ctx, cfg, snapLaunch{})
}

// bootMachine is BootMachine for a snapshot boot or a restore too (snapshot.go).
func (v *VMM) bootMachine(ctx context.Context, cfg runtime.VMConfig, snap snapLaunch) (*Machine, error) {
	accel, err := v.Accel(ctx, cfg.Kernel, cfg.Initramfs)
	if err != nil {
		return nil, fmt.Errorf("boot %s: choose accelerator: %w", cfg.Name, err)
	}
	dir, err := newStateDir()
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", cfg.Name, err)
	}
	l := launch{accel: accel, dir: dir, snap: snap}
	if accel == "tcg" {
		l.tscKHz = hostTSCkHz()
	}
	if VhostVsockAvailable() {
		l.vsockCID = randomCID()
	}
	cfg, err = prepareLaunch(cfg, &l, v.opts.Binary)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("boot %s: %w", cfg.Name, err)
	}
	args, err := buildArgs(cfg, l)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m := newMachine(cfg, l, v.opts)
	if err := m.start(ctx, v.opts.Binary, args); err != nil {
		return nil, fmt.Errorf("boot %s: %w", cfg.Name, err)
	}
	return m, nil
}

// prepareLaunch keeps the secret off QEMU's command line and QEMU off root: a
// voidbox.boot= word in cfg.Cmdline is taken out and written to the state dir
// for fw_cfg (the returned cfg no longer has it), and when voidbox is root, l
// gets the user QEMU drops to and the QEMU release that decides how.
func prepareLaunch(cfg runtime.VMConfig, l *launch, binary string) (runtime.VMConfig, error) {
	rest, js, err := proto.CutBootArg(cfg.Cmdline)
	if err != nil {
		return cfg, err
	}
	if js != nil {
		if err := writeBootConfig(l.path(bootConfigFile), js); err != nil {
			return cfg, err
		}
		cfg.Cmdline, l.bootConfig = rest, true
	}
	if l.runAs, err = dropUser(os.Geteuid(), user.Lookup); err != nil || l.runAs == "" {
		return cfg, err
	}
	_, version, err := qemuVersion(binary)
	if err != nil {
		return cfg, err
	}
	l.release, err = parseRelease(version)
	return cfg, err
}

// VhostVsockAvailable reports whether the host can give VMs a vhost-vsock
// device (the agent channel then uses AF_VSOCK instead of virtio-serial).
func VhostVsockAvailable() bool {
	_, err := os.Stat("/dev/vhost-vsock")
	return err == nil
}

// randomCID picks a guest CID; 0-2 are reserved. A collision with another
// VM makes QEMU fail to start with "Address already in use", which Boot reports.
func randomCID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return 3 + binary.LittleEndian.Uint32(b[:])%(1<<30)
}

// newStateDir makes a state dir (see vmstate.NewDir, whose naming lets
// vmstate.Sweep recognise directories of a voidbox that died) and checks that
// its socket paths fit the 108-byte unix socket limit.
func newStateDir() (string, error) {
	dir, err := vmstate.NewDir()
	if err != nil {
		return "", err
	}
	if longest := filepath.Join(dir, "fs99.sock"); len(longest) >= 108 {
		os.RemoveAll(dir)
		return "", fmt.Errorf("VM state dir %s is too long for unix sockets (108 bytes); set TMPDIR to a shorter path", dir)
	}
	return dir, nil
}

// AttachesNIC implements runtime.NICAttacher: QEMU gives the guest a virtio-net NIC
// on a -netdev stream backend.
func (v *VMM) AttachesNIC() bool { return true }
