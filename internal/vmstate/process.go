package vmstate

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"syscall"
)

// StartPinned starts cmd so that the kernel kills it (SIGKILL) when voidbox
// dies, in its own process group. PR_SET_PDEATHSIG fires when the *thread*
// that forked the child exits, and Go may retire threads, so the start happens
// on a goroutine locked to its thread, which then stays in Wait for the
// child's whole life. The returned channel yields Wait's result once. The
// error from a failed start is returned as is; callers add which process.
func StartPinned(cmd *exec.Cmd) (<-chan error, error) { return startPinned(cmd, false) }

// StartPinnedAcrossSetuid is StartPinned for a process that changes its user
// ids itself (QEMU's -runas): the kernel then forgets PR_SET_PDEATHSIG, and
// such a process would outlive a voidbox that was killed. A lifeline keeps
// the tie: the process inherits one end of a socket pair (as an extra fd it
// never uses) whose open file is set, by voidbox, to send SIGKILL to the
// process on I/O events (F_SETOWN, F_SETSIG, O_ASYNC); voidbox holds the other
// end until the process has exited. When voidbox dies, the kernel closes that
// end, the hang-up on the inherited end signals the process, and, since root
// set the owner, the signal reaches it whatever user it became. The lifeline is
// armed right after the start, long before QEMU drops privileges (the last
// step of its start-up, after the machine is built); until then the death
// signal still covers it.
func StartPinnedAcrossSetuid(cmd *exec.Cmd) (<-chan error, error) { return startPinned(cmd, true) }

func startPinned(cmd *exec.Cmd, lifeline bool) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Own process group: a kill of the group reaches what the process forks,
	// and a Ctrl-C at the terminal reaches only voidbox, which then stops the
	// VM in order instead of having it killed under it.
	cmd.SysProcAttr.Setpgid = true
	var ours, theirs *os.File
	if lifeline {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("lifeline socket pair: %w", err)
		}
		ours, theirs = os.NewFile(uintptr(fds[0]), "lifeline"), os.NewFile(uintptr(fds[1]), "lifeline")
		cmd.ExtraFiles = append(cmd.ExtraFiles, theirs)
	}
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		err := cmd.Start()
		if err == nil && lifeline {
			if err = armLifeline(theirs, cmd.Process.Pid); err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		}
		if theirs != nil {
			theirs.Close() // the child has its own copy of the open file
		}
		if err != nil {
			if ours != nil {
				ours.Close()
			}
			started <- err
			return
		}
		started <- nil
		werr := cmd.Wait()
		if ours != nil {
			ours.Close() // only now: closing it earlier would kill the process
		}
		exited <- werr
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// armLifeline makes any I/O event on f's open file (the peer's hang-up) send
// SIGKILL to pid.
func armLifeline(f *os.File, pid int) error {
	fd := f.Fd()
	const fSetSig = 10 // F_SETSIG
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETOWN, uintptr(pid)); e != 0 {
		return fmt.Errorf("lifeline: F_SETOWN: %w", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, fSetSig, uintptr(syscall.SIGKILL)); e != 0 {
		return fmt.Errorf("lifeline: F_SETSIG: %w", e)
	}
	fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	if e == 0 {
		_, _, e = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, fl|syscall.O_ASYNC)
	}
	if e != 0 {
		return fmt.Errorf("lifeline: O_ASYNC: %w", e)
	}
	return nil
}

// MaxTail bounds what Tail reads, whatever n a caller asks for.
const MaxTail = 1 << 20

// Tail returns the last n bytes (at most MaxTail) of the regular file at path:
// "" when n <= 0 or the file cannot be opened, is a symlink, a FIFO or a
// device, and what could be read if reading fails midway. It never reads
// before the tail, so a huge log costs no more than a small one. It is meant
// for logs and consoles quoted in error messages.
func Tail(path string, n int) string {
	if n <= 0 {
		return ""
	}
	n = min(n, MaxTail)
	f, err := OpenRegular(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-int64(n), 0)
	buf, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(buf)
}
