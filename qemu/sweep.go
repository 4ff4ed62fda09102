package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// SweepStale removes VM state directories (os.TempDir()/voidbox-<pid>-*)
// whose owning voidbox process is gone, first killing any VM process listed
// in them that still runs. PR_SET_PDEATHSIG normally kills those processes
// already; this covers what it cannot (a reused pid, a crash mid-start).
// The CLI calls it at start. It returns the directories it removed.
func SweepStale() ([]string, error) { return sweepIn(os.TempDir()) }

func sweepIn(root string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "voidbox-*-*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range dirs {
		owner, ok := ownerPid(filepath.Base(dir))
		if !ok || owner == os.Getpid() || processAlive(owner) {
			continue
		}
		if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
			continue
		}
		killListed(dir)
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove stale VM dir: %w", err))
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// ownerPid parses "voidbox-<pid>-<suffix>".
func ownerPid(base string) (int, bool) {
	rest, ok := strings.CutPrefix(base, "voidbox-")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killListed SIGKILLs the processes in dir's pids file, but only those whose
// command line still mentions dir, so a recycled pid is never hit.
func killListed(dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, pidsFile))
	if err != nil {
		return
	}
	for _, pid := range parsePids(raw) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func parsePids(raw []byte) []int {
	var pids []int
	for _, line := range strings.Split(string(raw), "\n") {
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}
