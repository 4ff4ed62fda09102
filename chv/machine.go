package chv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// machine is one running Cloud Hypervisor VM. It implements runtime.Machine.
type machine struct {
	name  string
	paths vmPaths
	api   *client
	p     *proc        // nil until the VMM started
	fsd   []*virtiofsd // one per share
	// consoleLine, when set, gets the console file's lines as capConsole finds them.
	consoleLine func(string)
	// restored is set for a VM started by Restore, snapDir for one started by
	// SnapshotBoot (the directory SaveSnapshot must save it into).
	restored bool
	snapDir  string
	// ownDir is a state dir the driver made itself (a snapshot boot given none),
	// removed with the VM.
	ownDir string

	consoleLimit int64         // ConsoleLimit when the VM started
	stopping     atomic.Bool   // set when voidbox ends the VM, so an exit is expected
	flooded      atomic.Bool   // set when the guest's console outgrew ConsoleLimit
	done         chan struct{} // closed after exit and cleanup
	consoleDone  chan struct{} // closed when capConsole has returned (its last lines handed on)
	mu           sync.Mutex
	err          error
	cleanup      sync.Once
}

var _ runtime.Machine = (*machine)(nil)

func newMachine(name string, p vmPaths) *machine {
	return &machine{name: name, paths: p, api: newClient(p.API), done: make(chan struct{}), consoleDone: make(chan struct{})}
}

// action is what starting the VM is called in errors.
func (m *machine) action() string {
	if m.restored {
		return "restore"
	}
	return "boot"
}

// ConsoleLimit caps the serial console file Cloud Hypervisor writes: the guest
// decides what it prints, and a file the VMM appends to would grow until the
// host's disk is full. Past the limit the VM is stopped, with an error saying
// why. (Under QEMU voidbox reads the console itself and keeps head and tail.)
var ConsoleLimit int64 = 64 << 20

// consolePoll is how often the console file's size is checked.
const consolePoll = 250 * time.Millisecond

// start adopts the VMM process and watches for its exit and its console's size.
func (m *machine) start(p *proc) {
	m.p = p
	// Read here, not in the goroutines: a test changes the knob between VMs.
	m.consoleLimit = ConsoleLimit
	go m.watch()
	go m.capConsole()
}

// capConsole stops the VM once its console file outgrows ConsoleLimit, and hands
// the lines Cloud Hypervisor appended to consoleLine on each poll.
func (m *machine) capConsole() {
	defer close(m.consoleDone)
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	var follow *consoleFollower
	if m.consoleLine != nil {
		follow = &consoleFollower{path: m.paths.Console, lines: vmstate.NewLineSplitter(m.consoleLine)}
		defer follow.close()
	}
	for {
		select {
		case <-m.p.done:
			return // follow.close reads what the VMM wrote last
		case <-tick.C:
			if st, err := os.Lstat(m.paths.Console); err == nil && st.Size() > m.consoleLimit {
				m.flooded.Store(true)
				m.p.kill()
				return
			}
			follow.poll()
		}
	}
}

// consoleFollower reads what was appended to the console file since its last poll.
type consoleFollower struct {
	path  string
	f     *os.File
	lines *vmstate.LineSplitter
}

func (c *consoleFollower) poll() {
	if c == nil {
		return
	}
	if c.f == nil {
		f, err := vmstate.OpenRegular(c.path)
		if err != nil {
			return // not created yet
		}
		c.f = f
	}
	// Bounded per poll; the rest is read on the next one.
	_, _ = io.Copy(c.lines, io.LimitReader(c.f, 1<<20))
}

func (c *consoleFollower) close() {
	c.poll()
	c.lines.Flush()
	if c.f != nil {
		c.f.Close()
	}
}

// watch waits for the VMM to exit, records why, and releases everything the
// VM held, so that a crash leaves nothing behind either.
func (m *machine) watch() {
	<-m.p.done
	var err error
	if m.flooded.Load() {
		err = fmt.Errorf("chv: vm %s: stopped: the guest's console passed %d bytes (the cap on what a guest may write to the host's disk)%s", m.name, m.consoleLimit, quoteTail("console", m.paths.Console, 1024))
	} else if !m.stopping.Load() && m.p.waitErr != nil {
		err = fmt.Errorf("chv: vm %s: cloud-hypervisor exited unexpectedly (%s)%s%s", m.name,
			describeExit(m.p.waitErr), quoteTail("vmm.log", m.paths.Log, 2048), quoteTail("console", m.paths.Console, 2048))
	}
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
	m.release()
	// Every console line is handed on before the VM is reported gone.
	<-m.consoleDone
	close(m.done)
}

// release stops the virtiofsd daemons and removes every socket of the VM.
// Logs stay for the caller, who removes the state directory.
func (m *machine) release() {
	m.cleanup.Do(func() {
		for _, v := range m.fsd {
			v.stop()
		}
		guest, _ := filepath.Glob(m.paths.Vsock + "_*")
		for _, f := range append([]string{m.paths.API, m.paths.API + ".lock", m.paths.Vsock}, guest...) {
			os.Remove(f)
		}
		if m.ownDir != "" {
			os.RemoveAll(m.ownDir)
		}
	})
}

// abort undoes a failed boot.
func (m *machine) abort() {
	m.stopping.Store(true)
	if m.p == nil {
		m.release()
		return
	}
	m.p.kill()
	<-m.done
}

func (m *machine) Done() <-chan struct{} { return m.done }

func (m *machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *machine) ConsoleTail(n int) string { return vmstate.Tail(m.paths.Console, n) }

// DialAgent connects to the guest agent's vsock port, retrying while the guest
// boots (a refused CONNECT means nothing listens yet) until ctx ends or the
// VM stops.
func (m *machine) DialAgent(ctx context.Context) (net.Conn, error) {
	wait := 20 * time.Millisecond
	for {
		c, err := DialHybrid(ctx, m.paths.Vsock, AgentPort)
		if err == nil {
			return c, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("chv: vm %s: dial guest agent: the VM stopped: %w", m.name, errors.Join(err, m.Err()))
		case <-ctx.Done():
			return nil, fmt.Errorf("chv: vm %s: guest agent did not answer on vsock port %d: %w (last attempt: %v)%s",
				m.name, AgentPort, ctx.Err(), err, quoteTail("console", m.paths.Console, 1024))
		case <-time.After(wait):
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// apiCallTimeout caps one API call during shutdown: a wedged API thread must
// not stop us from reaching the kill.
const apiCallTimeout = 5 * time.Second

// Shutdown stops the VM (vm.shutdown), then the VMM (vmm.shutdown), and waits
// for the process to exit; when ctx ends first it kills the process. Either
// way no process or socket of the VM remains when it returns. The error is
// non-nil only if the process had to be killed.
func (m *machine) Shutdown(ctx context.Context) error {
	if m.p.exited() {
		<-m.done
		return nil
	}
	m.stopping.Store(true)
	var notes []error
	call := func(endpoint string) {
		cctx, cancel := context.WithTimeout(ctx, apiCallTimeout)
		defer cancel()
		err := m.api.put(cctx, endpoint, nil)
		var apiErr *APIError
		switch {
		case err == nil, m.p.exited():
		case errors.As(err, &apiErr) && apiErr.notRunning():
			// The guest already powered off: nothing to shut down.
		default:
			notes = append(notes, err)
		}
	}
	call("vm.shutdown")
	call("vmm.shutdown")
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
	}
	m.p.kill()
	<-m.done
	err := fmt.Errorf("chv: vm %s: cloud-hypervisor did not exit after vmm.shutdown (%w); killed it", m.name, ctx.Err())
	return errors.Join(append([]error{err}, notes...)...)
}

// Kill stops the VMM immediately and cleans up.
func (m *machine) Kill() error {
	m.stopping.Store(true)
	m.p.kill()
	<-m.done
	return nil
}
