package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// console writes short "voidbox-agent: ..." lines to /dev/console with the time since
// boot: the host quotes the console tail when a boot fails.
type console struct {
	mu    sync.Mutex
	out   *os.File
	start time.Time
}

func newConsole() *console { return &console{out: os.Stderr, start: time.Now()} }

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
	fmt.Fprintf(c.out, "voidbox-agent: [%6.3fs] %s\n", time.Since(c.start).Seconds(), msg)
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
