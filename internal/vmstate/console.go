package vmstate

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Console captures a VM's serial console from a unix socket that the VMM
// connects to (QEMU: -chardev socket,path=SOCK), instead of letting the VMM
// append to a file: the guest controls what it prints, and a file the VMM
// writes grows without bound until the disk is full. Here voidbox reads every
// byte and decides what to keep: the log file gets at most Limit bytes of the
// start of the output (where the boot is told), memory keeps the last Keep
// bytes (where a failure is told), and when the output was longer the file is
// completed with a marker line and that tail once the console ends. The guest
// is never slowed down or stopped by the cap; what falls between head and tail
// is dropped.
type Console struct {
	ln      net.Listener
	file    *os.File
	limit   int64
	keep    int
	done    chan struct{}
	closing sync.Once

	mu      sync.Mutex
	conn    net.Conn
	cut     bool   // Close stopped waiting: a connection accepted now is closed at once
	written int64  // bytes written to file
	total   int64  // bytes received
	tail    []byte // the last keep bytes received (up to 2*keep before trimming)
	lines   *LineSplitter
}

// OnLine hands every console line to f as it arrives (see LineSplitter), besides
// keeping it; f runs on the capture's goroutine and must not block for long. Call it
// before the VMM starts.
func (c *Console) OnLine(f func(string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = NewLineSplitter(f)
}

// ListenConsole listens on the unix socket sock, creates logPath (mode 0600,
// truncated), and serves the first connection in the background: that is the
// VMM's console. limit bounds the log file's head, keep the tail kept in
// memory (both > 0). The caller starts the VMM next and, once the VMM has
// exited, calls Close.
func ListenConsole(sock, logPath string, limit int64, keep int) (*Console, error) {
	if limit <= 0 || keep <= 0 {
		return nil, fmt.Errorf("console capture: limit %d and keep %d must be positive", limit, keep)
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Close()
		os.Remove(logPath)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	c := &Console{ln: ln, file: f, limit: limit, keep: keep, done: make(chan struct{})}
	go c.serve()
	return c, nil
}

func (c *Console) serve() {
	defer close(c.done)
	conn, err := c.ln.Accept()
	c.ln.Close() // one VMM, one connection: nobody else gets to write the console
	if err != nil {
		return
	}
	c.mu.Lock()
	c.conn = conn
	if c.cut {
		conn.Close()
	}
	c.mu.Unlock()
	defer conn.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			c.record(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// record appends p to the log head (while under the limit) and to the tail.
func (c *Console) record(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	if room := c.limit - c.written; room > 0 {
		head := p[:min(int64(len(p)), room)]
		if n, err := c.file.Write(head); err == nil {
			c.written += int64(n)
		} else {
			c.written = c.limit // a failing disk: stop writing, keep capturing
		}
	}
	if c.lines != nil {
		_, _ = c.lines.Write(p)
	}
	c.tail = append(c.tail, p...)
	if len(c.tail) > 2*c.keep {
		c.tail = append([]byte(nil), c.tail[len(c.tail)-c.keep:]...)
	}
}

// Tail returns the last n bytes the console received (at most keep).
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tail
	if len(t) > c.keep {
		t = t[len(t)-c.keep:]
	}
	if n < len(t) {
		t = t[len(t)-max(n, 0):]
	}
	return string(t)
}

// Total is how many bytes the console received, kept or not.
func (c *Console) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// acceptGrace bounds how long Close waits for the VMM's connection to be
// accepted: a VMM that has exited made it already if it ever did (it is queued
// on the listener), so only a VMM that never connected costs this wait.
const acceptGrace = 100 * time.Millisecond

// Close ends the capture once the VMM has exited: it waits up to grace for
// the console to reach its end (the VMM's last words are still in the socket),
// then stops reading, completes the log file (marker and tail when the output
// exceeded the limit) and closes it. It is safe to call more than once.
func (c *Console) Close(grace time.Duration) error {
	var err error
	c.closing.Do(func() {
		if ul, ok := c.ln.(*net.UnixListener); ok {
			_ = ul.SetDeadline(time.Now().Add(min(grace, acceptGrace)))
		} else {
			c.ln.Close()
		}
		select {
		case <-c.done:
		case <-time.After(grace):
			c.mu.Lock()
			c.cut = true
			if c.conn != nil {
				c.conn.Close()
			}
			c.mu.Unlock()
			<-c.done
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.lines != nil {
			c.lines.Flush()
		}
		if c.total > c.written && c.written >= c.limit {
			tail := c.tail
			if len(tail) > c.keep {
				tail = tail[len(tail)-c.keep:]
			}
			skipped := c.total - c.written - int64(len(tail))
			if skipped > 0 {
				_, err = fmt.Fprintf(c.file, "\n[voidbox: console output capped: %d bytes not logged; the last %d bytes follow]\n", skipped, len(tail))
			}
			if err == nil {
				_, err = c.file.Write(tail[max(int64(len(tail))-(c.total-c.written), 0):])
			}
		}
		err = errors.Join(err, c.file.Close())
	})
	return err
}

// CopyLog writes at most max bytes of the log file at logPath to w, for callers
// that keep the log elsewhere after the state dir is removed. It opens the file
// as Tail does: no symlink, regular files only.
func CopyLog(w io.Writer, logPath string, max int64) error {
	f, err := OpenRegular(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, io.LimitReader(f, max))
	return err
}
