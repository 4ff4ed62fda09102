package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// StageCgroup is the cgroup v2 subtree every stage process of the VM runs in. Its
// limits (memory.max, memory.swap.max, pids.max) hold for all stage processes
// together; the agent stays outside it, in the root cgroup, so a stage at its limit
// cannot starve the agent. Each exec gets a child cgroup of its own: the kernel puts
// the process there as it is created (CLONE_INTO_CGROUP, so no child can be forked
// outside it), its OOM kills are counted there (memory.events), and its processes
// are killed together (cgroup.kill), also those that left the exec's process group.
type StageCgroup struct {
	dir  string
	next atomic.Uint64
	logf func(string, ...any)
}

// stageCgroupName is the stage cgroup's directory under the cgroup2 mount.
const stageCgroupName = "voidbox-stage"

// stageControllers are enabled for the stage cgroup and, inside it, for each exec.
const stageControllers = "+memory +pids"

// The cpu controller, where the kernel has it, makes the whole stage one entity for
// the scheduler, weighing as much as one agent thread: a fork bomb's hundreds of
// processes cannot starve the agent of the CPU it needs to enforce the timeout.
const cpuController = "cpu"

// NewStageCgroup creates the stage cgroup under root (the cgroup2 mount, e.g.
// /sys/fs/cgroup), enables the memory and pids controllers for it and its children
// and applies l. Swap is off for the stage when the kernel has swap at all.
func NewStageCgroup(root string, l proto.Limits, logf func(string, ...any)) (*StageCgroup, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	controllers := stageControllers
	if avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(avail)), cpuController) {
		controllers += " +" + cpuController
	}
	if err := writeCgroup(root, "cgroup.subtree_control", controllers); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, stageCgroupName)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create stage cgroup: %w", err)
	}
	if err := writeCgroup(dir, "cgroup.subtree_control", stageControllers); err != nil {
		return nil, err
	}
	if l.MemoryMB > 0 {
		if err := writeCgroup(dir, "memory.max", strconv.FormatInt(int64(l.MemoryMB)<<20, 10)); err != nil {
			return nil, err
		}
	}
	if l.Pids > 0 {
		if err := writeCgroup(dir, "pids.max", strconv.Itoa(l.Pids)); err != nil {
			return nil, err
		}
	}
	// memory.swap.max exists only when the kernel was built with swap.
	if err := writeCgroup(dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &StageCgroup{dir: dir, logf: logf}, nil
}

// Dir is the stage cgroup's directory.
func (c *StageCgroup) Dir() string { return c.dir }

// writeCgroup writes value to an existing control file of the cgroup at dir.
func writeCgroup(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", value, p, err)
	}
	return nil
}

// execCgroup is one exec's child of the stage cgroup.
type execCgroup struct {
	dir  string
	fd   int // open directory, for SysProcAttr.CgroupFD; -1 once closed
	logf func(string, ...any)
}

// newExec creates the next exec's cgroup. memory.oom.group makes the OOM killer take
// the whole exec when it picks one of its processes: the stage fails as a whole
// instead of going on with a pipeline that lost a member.
func (c *StageCgroup) newExec() (*execCgroup, error) {
	dir := filepath.Join(c.dir, "exec-"+strconv.FormatUint(c.next.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create exec cgroup: %w", err)
	}
	e := &execCgroup{dir: dir, fd: -1, logf: c.logf}
	if err := writeCgroup(dir, "memory.oom.group", "1"); err != nil {
		e.remove()
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		e.remove()
		return nil, fmt.Errorf("open exec cgroup %s: %w", dir, err)
	}
	e.fd = fd
	return e, nil
}

// closeFD releases the directory fd once the process was created in the cgroup.
func (e *execCgroup) closeFD() {
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

// kill sends SIGKILL to every process in the exec's cgroup.
func (e *execCgroup) kill() {
	if err := writeCgroup(e.dir, "cgroup.kill", "1"); err != nil {
		e.logf("kill exec cgroup: %v", err)
	}
}

// oomKilled reports whether the OOM killer killed a process of the exec.
func (e *execCgroup) oomKilled() bool {
	b, err := os.ReadFile(filepath.Join(e.dir, "memory.events"))
	if err != nil {
		e.logf("read exec cgroup memory.events: %v", err)
		return false
	}
	n, err := keyedCounter(b, "oom_kill")
	if err != nil {
		e.logf("%s/memory.events: %v", e.dir, err)
	}
	return n > 0
}

// keyedCounter returns the value of key in a cgroup "key value" file (memory.events).
func keyedCounter(b []byte, key string) (int64, error) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if !ok || string(k) != key {
			continue
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q is not a count: %w", key, v, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// removeWait bounds how long remove waits for killed processes to leave the cgroup.
const removeWait = 10 * time.Second

// remove deletes the exec's cgroup once its processes are gone (the caller killed
// them). A cgroup still in use after removeWait is left behind and logged.
func (e *execCgroup) remove() {
	e.closeFD()
	deadline := time.Now().Add(removeWait)
	for {
		err := unix.Rmdir(e.dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			e.logf("remove exec cgroup %s: %v", e.dir, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
