package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// console writes short "voidbox-agent: ..." lines to /dev/console with the time since
// boot: the host quotes the console tail when a boot fails.
//
// Until the agent serves, its lines are batched into one write: under TCG every write
// to the serial console costs a tty wakeup and UART interrupts, about 10 ms, and a
// boot's lines one at a time cost 65-80 ms of every cold start (measured beside a
// batched agent). endBatch writes them (serving, a fatal error, power-off); a line
// still held after batchFlushAfter is written then, so a boot that hangs still shows
// how far it got.
type console struct {
	mu       sync.Mutex
	out      io.Writer
	start    time.Time
	batching bool
	held     []byte
	timer    *time.Timer
}

// batchFlushAfter bounds how long a boot line waits in the batch.
const batchFlushAfter = time.Second

func newConsole() *console { return &console{out: os.Stderr, start: time.Now(), batching: true} }

// endBatch writes the held lines and makes every later line a write of its own.
func (c *console) endBatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	c.flushLocked()
}

func (c *console) flushLocked() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if len(c.held) > 0 {
		_, _ = c.out.Write(c.held)
		c.held = c.held[:0]
	}
}

// reopen switches to /dev/console once devtmpfs is mounted (the kernel may have
// started PID 1 without a console fd when the initramfs has no /dev/console).
func (c *console) reopen() {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		c.mu.Lock()
		c.out = f
		c.mu.Unlock()
	}
}

func (c *console) logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	c.mu.Lock()
	defer c.mu.Unlock()
	line := fmt.Appendf(nil, "voidbox-agent: [%6.3fs] %s\n", time.Since(c.start).Seconds(), msg)
	if !c.batching {
		_, _ = c.out.Write(line)
		return
	}
	c.held = append(c.held, line...)
	if c.timer == nil {
		c.timer = time.AfterFunc(batchFlushAfter, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.timer = nil
			if len(c.held) > 0 {
				_, _ = c.out.Write(c.held)
				c.held = c.held[:0]
			}
		})
	}
}

// mountBase mounts the pseudo filesystems PID 1 needs.
func mountBase() error {
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

// setupStageUser adds the unprivileged "stage" user and group and gives it /workspace.
func setupStageUser(uid, gid int) error {
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return err
	}
	for _, e := range []struct{ file, line string }{
		{"/etc/passwd", "root:x:0:0:root:/root:/bin/sh"},
		{"/etc/passwd", fmt.Sprintf("stage:x:%d:%d:voidbox stage:/workspace:/bin/sh", uid, gid)},
		{"/etc/group", "root:x:0:"},
		{"/etc/group", fmt.Sprintf("stage:x:%d:", gid)},
	} {
		if err := ensureLine(e.file, e.line); err != nil {
			return fmt.Errorf("create stage user: %w", err)
		}
	}
	if err := os.MkdirAll("/workspace", 0o755); err != nil {
		return fmt.Errorf("mkdir /workspace: %w", err)
	}
	if err := os.Chown("/workspace", uid, gid); err != nil {
		return fmt.Errorf("chown /workspace to %d:%d: %w", uid, gid, err)
	}
	return nil
}

// ensureLine appends line unless an entry with the same name (first field) exists.
func ensureLine(path, line string) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	name, _, _ := strings.Cut(line, ":")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+":") {
			return nil
		}
	}
	if len(b) > 0 && !strings.HasSuffix(string(b), "\n") {
		line = "\n" + line
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
