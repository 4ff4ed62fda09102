// Package vm is the microVM sandbox: it boots one VM per stage attempt through a
// runtime.VMM, authenticates to the guest agent with a fresh per-VM secret and serves
// runtime.Sandbox calls over the agent's protocol. It owns the VM's lifetime: whatever
// happens (timeout, Ctrl-C, guest crash), Close leaves no VM process, socket or temp dir.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/runtime"
)

// Options configures the VM sandbox provider.
type Options struct {
	VMM       runtime.VMM
	Kernel    string
	Initramfs string
	// KernelArgs are appended to the guest kernel command line (diagnostics, tests).
	KernelArgs []string
	// Debug makes the guest agent log every exec on the console (quoted in errors).
	Debug bool
	// ShutdownGrace bounds a graceful guest poweroff before the VMM is killed.
	ShutdownGrace time.Duration
	// Network is the template of every networked box's network (its Policy comes from
	// the box's egress): Resolver and Dialer (tests map names to 127.0.0.1), Log (one
	// line per egress decision, with the stage's name), Limits.
	Network network.Config
	// NetForwarder attaches networked guests through the agent's TAP forwarder even
	// when the VMM can attach a NIC (tests run the forwarder's guest half under QEMU).
	NetForwarder bool
	// Images pulls box and skill images and builds their disks; nil refuses image=.
	Images *oci.Store
	// ImagePull says when a tag is resolved against its registry (once per provider).
	ImagePull oci.PullPolicy
	// AgentVersion and AgentCache choose claude-code for agent stages (empty: the
	// pinned version, ~/.voidbox/agents/claude-code).
	AgentVersion, AgentCache string
	// ClaudeBaseURL replaces https://api.anthropic.com for llm.claude (tests).
	ClaudeBaseURL string
	// Getenv reads the host's environment for provider keys; nil is os.Getenv.
	Getenv func(string) string
	// Console, when set, receives each line of every VM's serial console (the kernel's
	// and the agent's messages) with the stage's name, as it arrives: `--verbose`.
	// The line is guest text: untrusted, to be cleaned before a terminal shows it.
	Console func(stage, line string)
	// Warm, when set, starts the stages a snapshot can carry from one (warm.go); nil
	// cold-boots every stage.
	Warm *WarmOptions
}

// Provider opens microVM sandboxes.
type Provider struct {
	opts   Options
	images *images
}

// New returns a provider that boots every sandbox with opts.VMM.
func New(opts Options) (*Provider, error) {
	if opts.VMM == nil {
		return nil, errors.New("vm sandbox: no VMM")
	}
	for _, f := range []struct{ what, path string }{{"kernel", opts.Kernel}, {"initramfs", opts.Initramfs}} {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("vm sandbox: guest %s: %w", f.what, err)
		}
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	return &Provider{opts: opts, images: &images{store: opts.Images, policy: opts.ImagePull, pulled: map[string]*pulled{}}}, nil
}

// Name implements runtime.Provider.
func (p *Provider) Name() string { return "vm/" + p.opts.VMM.Name() }

// Open boots a VM for one stage attempt and returns once its agent answers.
func (p *Provider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	prepared := time.Now()
	fs, err := p.openFS(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("box %s: %w", spec.Name, err)
	}
	stateDir, err := vmstate.NewDir()
	if err != nil {
		return nil, fmt.Errorf("box %s: state dir: %w", spec.Name, err)
	}
	ag, err := p.openAgent(ctx, spec, stateDir, fs)
	if err != nil {
		os.RemoveAll(stateDir)
		return nil, fmt.Errorf("box %s: %w", spec.Name, err)
	}
	bn, err := p.openNetwork(ctx, spec, stateDir)
	if err != nil {
		ag.close()
		os.RemoveAll(stateDir)
		return nil, fmt.Errorf("box %s: %w", spec.Name, err)
	}
	runtime.ReportPhase(ctx, runtime.Phase{Name: runtime.PhasePrepare, Start: prepared, Duration: time.Since(prepared)})
	sb, err := p.boot(ctx, spec, stateDir, bn, fs, ag)
	if err != nil {
		bn.close()
		ag.close()
		os.RemoveAll(stateDir)
		return nil, err
	}
	return sb, nil
}

func (p *Provider) boot(ctx context.Context, spec runtime.SandboxSpec, stateDir string, bn *boxNetwork, fs *boxFS, ag *agentBox) (*Sandbox, error) {
	secret, err := proto.NewSecret()
	if err != nil {
		return nil, fmt.Errorf("box %s: secret: %w", spec.Name, err)
	}
	memory, vcpus := spec.MemoryMB, spec.VCPUs
	if memory <= 0 {
		memory = 512
	}
	if vcpus <= 0 {
		vcpus = 1
	}
	limits, rlimits := proto.LimitsForBox(memory)
	boot := proto.BootConfig{
		Secret:   secret,
		Hostname: hostname(spec.Name),
		Allow:    spec.Allow,
		Limits:   limits,
		Rlimits:  rlimits,
		UnixTime: time.Now().Unix(),
		Debug:    p.opts.Debug,
		UID:      fs.uid,
		GID:      fs.gid,
		Root:     fs.root,
		Mounts:   fs.mounts,
	}
	vmcfg := runtime.VMConfig{
		Name:      spec.Name,
		Kernel:    p.opts.Kernel,
		Initramfs: p.opts.Initramfs,
		MemoryMB:  memory,
		VCPUs:     vcpus,
		StateDir:  stateDir,
		Disks:     fs.disks,
		Shares:    fs.shares,
	}
	if ag != nil {
		boot.Forwards = append(boot.Forwards, proto.Forward{Name: llmForward, Port: llmGuestPort})
	}
	if console := p.opts.Console; console != nil {
		vmcfg.ConsoleLine = func(line string) { console(spec.Name, line) }
	}
	if bn != nil {
		boot.Net = bn.guest()
		vmcfg.NetworkSocket, vmcfg.NetworkAttach, vmcfg.MAC = bn.socket, bn.attach, boot.Net.MAC
	}
	newSandbox := func(m runtime.Machine) *Sandbox {
		return &Sandbox{name: spec.Name, machine: m, stateDir: stateDir, grace: p.opts.ShutdownGrace, memoryMB: limits.MemoryMB, net: bn, fs: fs, agent: ag, secret: secret}
	}
	sb, detail, err := p.warmStart(ctx, boot, vmcfg, newSandbox)
	if sb != nil || err != nil {
		return sb, err
	}
	arg, err := boot.KernelArg()
	if err != nil {
		return nil, fmt.Errorf("box %s: boot config: %w", spec.Name, err)
	}
	vmcfg.Cmdline = strings.Join(append([]string{arg}, p.opts.KernelArgs...), " ")
	booting := time.Now()
	m, err := p.opts.VMM.Boot(ctx, vmcfg)
	if err != nil {
		err = fmt.Errorf("box %s: boot %s: %w", spec.Name, p.opts.VMM.Name(), err)
		p.reportStart(ctx, time.Time{}, booting, detail, err)
		return nil, err
	}
	sb = newSandbox(m)
	client, err := p.connect(ctx, m, func(ctx context.Context, c net.Conn) (*proto.Client, error) {
		return proto.Connect(ctx, c, secret)
	}, booting, detail)
	if err != nil {
		sb.kill()
		return nil, fmt.Errorf("box %s: %w", spec.Name, sb.explain(err))
	}
	sb.client = client
	ag.serve(client)
	return sb, nil
}

// connect dials the agent and authenticates, giving up when the VM dies or ctx ends;
// a ctx without a deadline gets runtime.BootTimeout (the executor sets its own, so its
// BootTimeout governs).
func (p *Provider) connect(ctx context.Context, m runtime.Machine, handshake func(context.Context, net.Conn) (*proto.Client, error), booting time.Time, detail string) (client *proto.Client, err error) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, runtime.BootTimeout)
	}
	defer cancel()
	go func() {
		select {
		case <-m.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		err = fmt.Errorf("reach guest agent: %w", err)
		p.reportStart(ctx, time.Time{}, booting, detail, err)
		return nil, err
	}
	watched := &firstWord{Conn: conn}
	defer func() { p.reportStart(ctx, watched.spoke(), booting, detail, err) }()
	client, err = handshake(ctx, watched)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("guest agent handshake: %w", err)
	}
	return client, nil
}

// reportStart reports vm.boot (until the guest first spoke) and agent.connect (from
// then to the end of the handshake). A guest that never spoke failed to boot.
func (p *Provider) reportStart(ctx context.Context, spoke, booting time.Time, detail string, err error) {
	now := time.Now()
	boot := runtime.Phase{Name: runtime.PhaseBoot, Start: booting, Detail: strings.TrimSpace(p.opts.VMM.Name() + " " + detail)}
	if spoke.IsZero() {
		boot.Duration = now.Sub(booting)
		if err != nil {
			boot.Error = err.Error()
		}
		runtime.ReportPhase(ctx, boot)
		return
	}
	boot.Duration = spoke.Sub(booting)
	runtime.ReportPhase(ctx, boot)
	connect := runtime.Phase{Name: runtime.PhaseConnect, Start: spoke, Duration: now.Sub(spoke)}
	if err != nil {
		connect.Error = err.Error()
	}
	runtime.ReportPhase(ctx, connect)
}

// Sandbox is one booted VM with an authenticated agent session.
type Sandbox struct {
	name     string
	machine  runtime.Machine
	client   *proto.Client
	stateDir string
	grace    time.Duration
	memoryMB int         // the stage cgroup's memory limit
	net      *boxNetwork // nil without network = True
	fs       *boxFS
	agent    *agentBox // nil for a command stage
	// secret is the session secret the guest proved it holds in the handshake (a
	// restored VM's is the one its re-key gave it).
	secret   string
	once     sync.Once
	closeErr error
}

// Exec implements runtime.Sandbox.
func (s *Sandbox) Exec(ctx context.Context, req runtime.ExecRequest) (runtime.ExecResult, error) {
	return s.exec(ctx, req, true)
}

// exec runs req with the image's Env under its own, and, when workingDir is set, the
// image's WorkingDir in place of the stage's default directory (an agent keeps
// /workspace, its project directory).
func (s *Sandbox) exec(ctx context.Context, req runtime.ExecRequest, workingDir bool) (runtime.ExecResult, error) {
	if len(req.Args) == 0 {
		return runtime.ExecResult{}, errors.New("empty command") // execError needs Args[0]
	}
	interval, onStats := guestSampling(ctx)
	res, err := s.client.Exec(ctx, s.fs.execRequest(proto.ExecRequest{
		Args: req.Args, Env: req.Env, Dir: req.Dir,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr,
		Timeout: req.Timeout, StatsInterval: interval, OnStats: onStats,
	}, workingDir))
	if err != nil {
		return runtime.ExecResult{}, execError(req.Args[0], s.explain(err))
	}
	out := runtime.ExecResult{ExitCode: res.ExitCode, Signal: res.Signal, TimedOut: res.TimedOut}
	if res.OOM {
		// The OOM killer's SIGKILL, or the timeout it may have raced with, is not
		// the cause a user needs to see.
		return out, fmt.Errorf("%w: the stage used its %d MiB limit", ErrOutOfMemory, s.memoryMB)
	}
	return out, nil
}

// ErrOutOfMemory is wrapped by Exec when the guest's OOM killer ended the command: its
// processes together reached the stage's memory limit (proto.LimitsForBox).
var ErrOutOfMemory = errors.New("out of memory")

// errNotInGuestPath is the local sandbox's wording for a missing program, said of the
// guest: the agent's own message lists the guest's PATH and repeats the name, which the
// executor already gives ("exec NAME: ...").
var errNotInGuestPath = fmt.Errorf("%w in the guest's $PATH", runtime.ErrCommandNotFound)

// execError rewords the agent's refusal of a program it found nowhere in PATH. A name
// with a slash was not searched for; the agent's message (which says whether the file
// is missing or not executable) stands.
func execError(name string, err error) error {
	var remote *proto.RemoteError
	if errors.As(err, &remote) && remote.Code == proto.CodeNotFound && !strings.Contains(name, "/") {
		return errNotInGuestPath
	}
	return err
}

// WriteFile implements runtime.Sandbox.
func (s *Sandbox) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	return s.explain(s.client.WriteFile(ctx, path, data, mode))
}

// ReadFile implements runtime.Sandbox.
func (s *Sandbox) ReadFile(ctx context.Context, path string) ([]byte, error) {
	data, err := s.client.ReadFile(ctx, path)
	return data, s.explain(err)
}

// NetworkCounts implements runtime.NetworkReporter.
func (s *Sandbox) NetworkCounts() (runtime.NetworkCounts, bool) {
	if s.net == nil {
		return runtime.NetworkCounts{}, false
	}
	return s.net.counts(), true
}

// Machine exposes the VM, for tests and diagnostics.
func (s *Sandbox) Machine() runtime.Machine { return s.machine }

// Close powers the guest off, stops the VMM and removes the state dir.
func (s *Sandbox) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.grace)
		defer cancel()
		select {
		case <-s.machine.Done():
		default:
			if s.client != nil {
				// The agent powers the guest off; the VMM then exits by itself.
				_ = s.client.Shutdown(ctx)
			}
		}
		if s.client != nil {
			s.client.Close()
		}
		s.agent.close()
		s.closeErr = s.machine.Shutdown(ctx)
		s.net.close()
		if err := os.RemoveAll(s.stateDir); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Sandbox) kill() {
	s.once.Do(func() {
		s.closeErr = s.machine.Kill()
		if s.client != nil {
			s.client.Close()
		}
		s.agent.close()
		s.net.close()
		os.RemoveAll(s.stateDir)
	})
}

// explain turns a transport error into one that says why the VM went away, quoting
// the guest console when the VM died (kernel panic, agent crash).
func (s *Sandbox) explain(err error) error {
	if err == nil {
		return nil
	}
	var remote *proto.RemoteError
	if errors.As(err, &remote) {
		return err // the agent answered: the VM is fine
	}
	select {
	case <-s.machine.Done():
	case <-time.After(200 * time.Millisecond):
		// The session can break a moment before the VMM process is reaped.
		select {
		case <-s.machine.Done():
		default:
			return err
		}
	}
	why := "the VM stopped"
	if merr := s.machine.Err(); merr != nil {
		why = merr.Error()
	}
	tail := strings.TrimSpace(s.machine.ConsoleTail(2048))
	if tail == "" || strings.Contains(why, "console tail:") {
		// The VMM's own error already quotes the console.
		return fmt.Errorf("%s: %w", why, err)
	}
	return fmt.Errorf("%s: %w\n--- guest console (last lines) ---\n%s", why, err, indentConsole(tail))
}

func indentConsole(tail string) string {
	lines := strings.Split(tail, "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return strings.Join(lines, "\n")
}

// hostname turns a stage name (which may hold '_') into a valid host name.
func hostname(stage string) string {
	h := []byte(stage)
	for i, c := range h {
		if !(c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			h[i] = '-'
		}
	}
	if len(h) > 63 {
		h = h[:63]
	}
	return string(h)
}
