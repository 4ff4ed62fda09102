package chv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// DefaultBinary is the Cloud Hypervisor executable looked up on PATH.
const DefaultBinary = "cloud-hypervisor"

// Options configures the driver. The zero value uses cloud-hypervisor and
// virtiofsd from PATH.
type Options struct {
	// Binary is the cloud-hypervisor executable (a path or a name on PATH).
	Binary string
	// Virtiofsd is the virtiofsd executable for shares; empty searches PATH
	// and the usual install locations.
	Virtiofsd string
	// SocketTimeout bounds how long the API socket may take to answer
	// vmm.ping after the process starts; zero means 10s.
	SocketTimeout time.Duration
	// Verbose passes -v to cloud-hypervisor (its log goes to vmm.log).
	Verbose bool
}

// Driver boots microVMs under Cloud Hypervisor. It implements runtime.VMM.
type Driver struct {
	opts Options

	versionMu sync.Mutex
	version   string // cloud-hypervisor --version's, once asked (SnapshotID)
}

var _ runtime.VMM = (*Driver)(nil)

// New returns a driver. It does not check that the binary exists; Boot does.
func New(opts Options) *Driver {
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	if opts.SocketTimeout <= 0 {
		opts.SocketTimeout = 10 * time.Second
	}
	return &Driver{opts: opts}
}

// Name implements runtime.VMM. Cloud Hypervisor runs only on a hypervisor
// (KVM here; it has no software emulation).
func (d *Driver) Name() string { return "cloud-hypervisor/kvm" }

// Available returns the path of cloud-hypervisor on PATH, or an error saying
// how to get it.
func Available() (string, error) {
	return lookBinary(DefaultBinary)
}

func lookBinary(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			// exec's own text would name the binary a second time.
			return "", fmt.Errorf("chv: %s is not on $PATH; install a static build from https://github.com/cloud-hypervisor/cloud-hypervisor/releases onto PATH", bin)
		}
		return "", fmt.Errorf("chv: %s: %w", bin, errors.Unwrap(err))
	}
	return p, nil
}

// vmmArgs is the command line of one cloud-hypervisor process: the VM itself
// is configured later over the API socket.
func vmmArgs(p vmPaths, verbose bool) []string {
	args := []string{
		"--api-socket", "path=" + p.API,
		"--event-monitor", "path=" + p.Events,
		"--seccomp", "true",
	}
	if verbose {
		args = append(args, "-v")
	}
	return args
}

// Boot implements runtime.VMM: it starts virtiofsd for each share, starts
// cloud-hypervisor, waits for its API, then creates and boots the VM. On any
// failure everything it started is stopped before it returns.
func (d *Driver) Boot(ctx context.Context, cfg runtime.VMConfig) (runtime.Machine, error) {
	return d.boot(ctx, cfg)
}

// boot boots cfg; setup, if given, completes the machine before anything starts.
func (d *Driver) boot(ctx context.Context, cfg runtime.VMConfig, setup ...func(*machine)) (*machine, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	bin, paths, err := d.prepare(cfg)
	if err != nil {
		return nil, err
	}
	m := newMachine(cfg.Name, paths)
	m.consoleLine = cfg.ConsoleLine
	for _, f := range setup {
		f(m)
	}
	booted := false
	defer func() {
		if !booted {
			m.abort()
		}
	}()

	shares, err := d.startShares(ctx, m, cfg)
	if err != nil {
		return nil, fmt.Errorf("boot %s under cloud-hypervisor: %w", cfg.Name, err)
	}
	removeStale(paths)
	if cfg.NetworkSocket != "" {
		// The guest's forwarder connects to host port NetPort, which Cloud
		// Hypervisor turns into a connect to vsock.sock_<port>: a symlink there
		// leads it to the socket voidbox's network listens on.
		if err := os.Symlink(cfg.NetworkSocket, paths.netLink()); err != nil {
			return nil, fmt.Errorf("boot %s under cloud-hypervisor: network: %w", cfg.Name, err)
		}
	}
	if err := d.startVMM(ctx, m, bin); err != nil {
		return nil, err
	}
	vc := buildVMConfig(cfg, paths, nextCID(), shares)
	if err := m.api.put(ctx, "vm.create", vc); err != nil {
		return nil, m.bootErr("create", err)
	}
	if err := m.api.put(ctx, "vm.boot", nil); err != nil {
		return nil, m.bootErr("boot", err)
	}
	if err := m.checkRunning(ctx, "vm.boot"); err != nil {
		return nil, err
	}
	booted = true
	return m, nil
}

// checkRunning asks vm.info whether the VM runs after the call named after.
func (m *machine) checkRunning(ctx context.Context, after string) error {
	info, err := m.api.info(ctx)
	if err != nil {
		return m.bootErr("check state", err)
	}
	if info.State != "Running" {
		return m.bootErr("check state", fmt.Errorf("vm.info says the VM is %q after %s, want \"Running\"", info.State, after))
	}
	return nil
}

// prepare finds the binary and makes the VM's private state directory.
func (d *Driver) prepare(cfg runtime.VMConfig) (string, vmPaths, error) {
	paths, err := pathsIn(cfg.StateDir)
	if err != nil {
		return "", vmPaths{}, err
	}
	bin, err := lookBinary(d.opts.Binary)
	if err != nil {
		return "", vmPaths{}, err
	}
	if err := os.MkdirAll(paths.Dir, 0o700); err != nil {
		return "", vmPaths{}, fmt.Errorf("chv: vm %s: state dir: %w", cfg.Name, err)
	}
	if err := makePrivate(paths.Dir); err != nil {
		return "", vmPaths{}, fmt.Errorf("chv: vm %s: %w", cfg.Name, err)
	}
	return bin, paths, nil
}

// removeStale removes sockets an earlier VM left in a reused state dir.
func removeStale(paths vmPaths) {
	for _, f := range []string{paths.API, paths.Vsock, paths.netLink()} {
		os.Remove(f)
	}
}

// startVMM starts cloud-hypervisor for m, records its pids (and its virtiofsd
// daemons') for vmstate.Sweep, and waits until its API socket answers. On failure
// the caller aborts m, which stops what was started.
func (d *Driver) startVMM(ctx context.Context, m *machine, bin string) error {
	p, err := startProc("cloud-hypervisor", bin, vmmArgs(m.paths, d.opts.Verbose), m.paths.Log)
	if err != nil {
		return fmt.Errorf("%s %s under cloud-hypervisor: %w", m.action(), m.name, err)
	}
	m.start(p)
	procs := []*proc{p}
	for _, v := range m.fsd {
		procs = append(procs, v.p)
	}
	if err := writePids(m.paths.Dir, procs); err != nil {
		return m.bootErr("start", err)
	}
	sctx, cancel := context.WithTimeout(ctx, d.opts.SocketTimeout)
	_, err = m.api.waitPing(sctx, p.done)
	cancel()
	if err != nil {
		return m.bootErr("wait for the API socket", err)
	}
	return nil
}

func (d *Driver) startShares(ctx context.Context, m *machine, cfg runtime.VMConfig) ([]fsShare, error) {
	if len(cfg.Shares) == 0 {
		return nil, nil
	}
	bin, err := findVirtiofsd(d.opts.Virtiofsd)
	if err != nil {
		return nil, err
	}
	var shares []fsShare
	for i, s := range cfg.Shares {
		fs := fsShare{Share: s, Socket: filepath.Join(m.paths.Dir, fmt.Sprintf("fs%d.sock", i))}
		v, err := startVirtiofsd(ctx, bin, fs, filepath.Join(m.paths.Dir, fmt.Sprintf("virtiofsd%d.log", i)))
		if err != nil {
			return nil, err
		}
		m.fsd = append(m.fsd, v)
		shares = append(shares, fs)
	}
	return shares, nil
}

// bootErr wraps a failed boot step with what the VMM and guest said.
func (m *machine) bootErr(step string, err error) error {
	var apiErr *APIError
	if m.p != nil && m.p.exited() {
		err = fmt.Errorf("%w (cloud-hypervisor %s)", err, describeExit(m.p.waitErr))
	}
	detail := quoteTail("vmm.log", m.paths.Log, 2048)
	if errors.As(err, &apiErr) && apiErr.Status == 400 {
		detail = "" // a rejected config is the whole story
	}
	return fmt.Errorf("%s %s under cloud-hypervisor: %s: %w%s", m.action(), m.name, step, err, detail)
}
