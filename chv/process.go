package chv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the driver owns: it runs in its own process group
// (so a kill reaches anything it forks) and gets SIGKILL if voidbox dies.
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
	// Own process group: a kill reaches what it forks, and a Ctrl-C at the
	// terminal reaches voidbox, which then stops the VM in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits,
	// and Go may retire threads: start from a goroutine locked to its thread,
	// which then stays in Wait for the child's whole life.
	started := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
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

// tailFile returns the last n bytes of a file, or "" when it cannot be read.
func tailFile(path string, n int) string {
	if n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - int64(n)
	if off < 0 {
		off = 0
	}
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	return string(buf)
}

// quoteTail is a file's tail made fit for an error message.
func quoteTail(label, path string, n int) string {
	t := strings.TrimSpace(strings.ToValidUTF8(tailFile(path, n), "?"))
	if t == "" {
		return ""
	}
	return fmt.Sprintf("\n--- %s (last %d bytes) ---\n%s", label, len(t), t)
}

// pidsFile lists, one per line, the processes of a VM in its state dir. It
// has the name and format the QEMU driver's SweepStale reads, so a sweep after
// a voidbox crash also finds Cloud Hypervisor VMs.
const pidsFile = "pids"

func writePids(dir string, procs []*proc) error {
	var b strings.Builder
	for _, p := range procs {
		b.WriteString(strconv.Itoa(p.cmd.Process.Pid))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(dir+"/"+pidsFile, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("record VM pids: %w", err)
	}
	return nil
}
