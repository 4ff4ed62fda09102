package chv

import (
	"errors"
	"fmt"
	"github.com/voidbox/voidbox/internal/termsafe"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
)

// proc is a child process the driver owns: started with vmstate.StartPinned,
// it runs in its own process group (so a kill reaches anything it forks) and
// gets SIGKILL if voidbox dies.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed after Wait returned
	waitErr error         // Wait's result, readable after done
}

func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	exited, err := vmstate.StartPinned(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = <-exited
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL to the process group; it is harmless after exit.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return // reaped: the pid may already belong to someone else
	default:
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err != nil {
		syscall.Kill(pid, sig)
	}
}

// stop asks with SIGTERM, waits up to grace, then kills and reaps.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
		<-p.done
	}
	// The leader is gone; a forked helper in its group may not be.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// describeExit renders how a process ended, e.g. "exit status 1" or
// "signal: killed".
func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// quoteTail is a file's tail made fit for an error message.
func quoteTail(label, path string, n int) string {
	t := strings.TrimSpace(termsafe.Clean(vmstate.Tail(path, n)))
	if t == "" {
		return ""
	}
	return fmt.Sprintf("\n--- %s (last %d bytes) ---\n%s", label, len(t), t)
}

// writePids records the VM's processes in its state dir, where
// vmstate.Sweep finds them after a voidbox crash.
func writePids(dir string, procs []*proc) error {
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.cmd.Process.Pid
	}
	return vmstate.WritePids(dir, pids)
}
