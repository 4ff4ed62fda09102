package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// ErrKilled is wrapped by Machine.Err when the VM was stopped with Kill or
// had to be killed because Shutdown's context ended.
var ErrKilled = errors.New("vm killed")

// PoweroffGrace is how long Shutdown waits for a guest that may already be
// powering itself off (after the agent's shutdown request) before it asks
// QEMU to quit.
var PoweroffGrace = 500 * time.Millisecond

// errTailBytes is how much console a failure message quotes.
const errTailBytes = 2048

// keptConsole is how much of the console's end stays in memory, also after the
// state dir is gone.
const keptConsole = 64 << 10

// consoleLogLimit bounds the head of the console kept in console.log (see
// vmstate.Console): a guest that floods its console costs voidbox neither disk
// nor memory past it. A variable so that tests can flood past it quickly.
var consoleLogLimit int64 = 1 << 20

// consoleDrain bounds the wait, after QEMU exited, for the console's last bytes.
const consoleDrain = 2 * time.Second

// Machine is one running QEMU process and its helpers.
type Machine struct {
	cfg     runtime.VMConfig
	l       launch
	opts    Options
	cmd     *exec.Cmd
	stderr  *tailBuffer
	console *vmstate.Console
	done    chan struct{}

	mu       sync.Mutex
	err      error
	finished bool
	killedBy string // why voidbox killed the VM, empty otherwise
	helpers  []*exec.Cmd
	waits    []<-chan error
}

var _ runtime.Machine = (*Machine)(nil)

func newMachine(cfg runtime.VMConfig, l launch, opts Options) *Machine {
	return &Machine{cfg: cfg, l: l, opts: opts, stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
}

// start launches virtiofsd per share, then QEMU, and returns once QEMU has
// parsed its arguments and opened its QMP socket (or has exited, whose
// reason it returns).
func (m *Machine) start(ctx context.Context, bin string, args []string) error {
	var pids []int
	for i, s := range m.cfg.Shares {
		cmd, wait, err := startVirtiofsd(ctx, m.opts.Virtiofsd, shareSocket(m.l.dir, i), s)
		if err != nil {
			m.abort()
			return err
		}
		m.helpers = append(m.helpers, cmd)
		m.waits = append(m.waits, wait)
		pids = append(pids, cmd.Process.Pid)
	}
	console, err := vmstate.ListenConsole(m.l.path(consoleSocket), m.l.path(consoleFile), consoleLogLimit, keptConsole)
	if err != nil {
		m.abort()
		return err
	}
	m.console = console
	if m.cfg.ConsoleLine != nil {
		console.OnLine(m.cfg.ConsoleLine)
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdin = nil
	m.cmd.ExtraFiles = m.l.extraFiles()
	m.cmd.Stdout = m.stderr
	m.cmd.Stderr = m.stderr
	// QEMU drops privileges itself (-runas), which cancels the death signal.
	exited, err := vmstate.StartPinnedAcrossSetuid(m.cmd)
	if err != nil {
		m.abort()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	pids = append(pids, m.cmd.Process.Pid)
	if err := vmstate.WritePids(m.l.dir, pids); err != nil {
		_ = m.cmd.Process.Kill()
	}
	go m.reap(exited)

	// QEMU answers QMP only once its main loop runs, i.e. after it has
	// loaded the kernel and initramfs and built the machine: a status reply
	// means the boot is under way, so configuration errors surface here.
	qmp := m.l.path(qmpFile)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(qmp); err == nil {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := qmpCommand(qctx, qmp, "query-status", nil)
			cancel()
			if err == nil {
				// QEMU has read the fw_cfg file: the secret need not stay on disk.
				if m.l.bootConfig {
					os.Remove(m.l.path(bootConfigFile))
				}
				return nil
			}
		}
		select {
		case <-m.done:
			if err := m.Err(); err != nil {
				return err
			}
			return fmt.Errorf("qemu exited during start-up")
		case <-ctx.Done():
			_ = m.Kill()
			return fmt.Errorf("wait for qemu to start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// abort undoes a partial start: helpers killed, console closed, state dir removed.
func (m *Machine) abort() {
	m.stopHelpers()
	if m.console != nil {
		_ = m.console.Close(0)
	}
	os.RemoveAll(m.l.dir)
}

func (m *Machine) stopHelpers() {
	for i, h := range m.helpers {
		_ = h.Process.Kill()
		<-m.waits[i]
	}
	m.helpers, m.waits = nil, nil
}

// reap runs when QEMU exits: it stops the helpers, keeps the console tail,
// works out why the VM ended, removes the state dir and closes Done.
func (m *Machine) reap(exited <-chan error) {
	werr := <-exited
	m.stopHelpers()
	_ = m.console.Close(consoleDrain)
	console := m.console.Tail(keptConsole)
	if m.cfg.StateDir != "" {
		// The caller's StateDir outlives ours: leave the (capped) log there.
		m.keepLog(filepath.Join(m.cfg.StateDir, consoleFile))
	}
	os.RemoveAll(m.l.dir)

	m.mu.Lock()
	m.finished = true
	m.err = m.exitError(werr, console)
	m.mu.Unlock()
	close(m.done)
}

// keepLog copies the capped console log to path (mode 0600: guest output).
func (m *Machine) keepLog(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_ = vmstate.CopyLog(f, m.l.path(consoleFile), consoleLogLimit+keptConsole+4096)
}

func (m *Machine) exitError(werr error, console string) error {
	name := m.cfg.Name
	if i := strings.Index(console, "Kernel panic"); i >= 0 {
		line := console[i:]
		if j := strings.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		// Quote the console up to the end of the panic report: what follows is the
		// reboot that -no-reboot turns into QEMU's exit, noise for the reader.
		upTo := len(console)
		for _, last := range []string{"---[ end Kernel panic", "Kernel Offset:"} {
			if j := strings.Index(console[i:], last); j >= 0 {
				upTo = i + j
				if k := strings.IndexByte(console[upTo:], '\n'); k >= 0 {
					upTo += k
				}
				break
			}
		}
		return fmt.Errorf("vm %s: guest kernel panic: %s\nconsole tail:\n%s", name, termsafe.Clean(strings.TrimSpace(line)), termsafe.Clean(lastBytes(console[:upTo], errTailBytes)))
	}
	if m.killedBy != "" {
		return fmt.Errorf("vm %s: %w (%s)", name, ErrKilled, m.killedBy)
	}
	if werr != nil {
		msg := fmt.Sprintf("vm %s: qemu exited: %v", name, werr)
		if s := strings.TrimSpace(m.stderr.String()); s != "" {
			msg += "\nqemu stderr:\n" + termsafe.Clean(lastBytes(s, errTailBytes))
		}
		if c := strings.TrimSpace(console); c != "" {
			msg += "\nconsole tail:\n" + termsafe.Clean(lastBytes(c, errTailBytes))
		}
		return errors.New(msg)
	}
	return nil
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Done is closed once QEMU has exited and everything is cleaned up.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Err says why the VM ended: nil while running or after a clean poweroff,
// a "guest kernel panic" error quoting the console, ErrKilled, or QEMU's exit
// status with its stderr and the console tail.
func (m *Machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Pid is the QEMU process id.
func (m *Machine) Pid() int { return m.cmd.Process.Pid }

// StateDir is the private directory holding the VM's sockets and console log;
// it is removed when the VM ends.
func (m *Machine) StateDir() string { return m.l.dir }

// ConsoleTail returns the last n bytes of the serial console (up to 64 KiB are
// kept), also after the VM has ended, with terminal controls removed
// (termsafe.Clean): the guest wrote it, and callers print it.
func (m *Machine) ConsoleTail(n int) string {
	if m.console == nil {
		return ""
	}
	return termsafe.Clean(m.console.Tail(n))
}

// DialAgent connects to the guest agent's channel, retrying until the
// transport accepts, ctx ends or the VM exits. Over virtio-serial the host
// end is QEMU's unix socket, which takes one connection at a time: keep one
// connection and multiplex on it.
func (m *Machine) DialAgent(ctx context.Context) (net.Conn, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		conn, err := m.dialOnce(ctx)
		if err == nil {
			return conn, nil
		}
		last = err
		select {
		case <-m.done:
			return nil, fmt.Errorf("dial agent of vm %s: vm exited: %w", m.cfg.Name, m.exitReason())
		case <-ctx.Done():
			return nil, fmt.Errorf("dial agent of vm %s: %w (last attempt: %v)\nconsole tail:\n%s", m.cfg.Name, ctx.Err(), last, m.ConsoleTail(errTailBytes))
		case <-tick.C:
		}
	}
}

func (m *Machine) exitReason() error {
	if err := m.Err(); err != nil {
		return err
	}
	return errors.New("guest powered off")
}

func (m *Machine) dialOnce(ctx context.Context) (net.Conn, error) {
	if m.l.vsockCID != 0 {
		// Not exercised on the development machines: their host kernel has
		// no vhost-vsock (see ENVIRONMENT.md).
		return vsock.Dial(m.l.vsockCID, AgentVsockPort, nil)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", m.l.path(agentFile))
}

// Status asks QEMU for the VM's run state over QMP.
func (m *Machine) Status(ctx context.Context) (Status, error) {
	var st Status
	raw, err := qmpCommand(ctx, m.l.path(qmpFile), "query-status", nil)
	if err != nil {
		return st, fmt.Errorf("vm %s: %w", m.cfg.Name, err)
	}
	if err := jsonUnmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("vm %s: query-status reply: %w", m.cfg.Name, err)
	}
	return st, nil
}

// InjectNMI delivers a non-maskable interrupt to the guest's CPUs (QMP inject-nmi).
// A microvm guest sees it as a PCI SERR and, booted with sysctl.kernel.panic_on_unrecovered_nmi=1,
// panics: that is how tests crash a guest kernel from outside, with the stage
// running unprivileged.
func (m *Machine) InjectNMI(ctx context.Context) error {
	if _, err := qmpCommand(ctx, m.l.path(qmpFile), "inject-nmi", nil); err != nil {
		return fmt.Errorf("vm %s: %w", m.cfg.Name, err)
	}
	return nil
}

// Shutdown gives a guest that is powering itself off PoweroffGrace to do so,
// then asks QEMU to quit over QMP, and kills it when ctx ends. When it
// returns, no process, socket or directory of the VM remains.
func (m *Machine) Shutdown(ctx context.Context) error {
	grace := time.NewTimer(PoweroffGrace)
	defer grace.Stop()
	select {
	case <-m.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := qmpCommand(qctx, m.l.path(qmpFile), "quit", nil)
		cancel()
		if err == nil {
			// QEMU acknowledged; it exits promptly. Bound the wait anyway in
			// case ctx has no deadline.
			wait := time.NewTimer(10 * time.Second)
			defer wait.Stop()
			select {
			case <-m.done:
				return nil
			case <-ctx.Done():
			case <-wait.C:
			}
		}
	}
	select {
	case <-m.done:
		return nil
	default:
	}
	m.kill("shutdown did not finish in time")
	<-m.done
	return fmt.Errorf("vm %s: shutdown: killed the VM: %v", m.cfg.Name, context.Cause(ctx))
}

// Kill stops QEMU with SIGKILL and waits until it is reaped and cleaned up.
func (m *Machine) Kill() error {
	m.kill("killed on request")
	<-m.done
	return nil
}

func (m *Machine) kill(why string) {
	m.mu.Lock()
	if !m.finished && m.killedBy == "" {
		m.killedBy = why
	}
	m.mu.Unlock()
	// An error means the process is gone already; reap closes Done either way.
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
}
