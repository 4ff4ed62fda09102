package vmstate

import (
	"io"
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
func StartPinned(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Own process group: a kill of the group reaches what the process forks,
	// and a Ctrl-C at the terminal reaches only voidbox, which then stops the
	// VM in order instead of having it killed under it.
	cmd.SysProcAttr.Setpgid = true
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
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
	f, err := openRegular(path)
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
