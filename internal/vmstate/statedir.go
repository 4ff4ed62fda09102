package vmstate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PidsFile is the name, inside a VM's state dir, of the file listing the
// VM's host processes (VMM and helpers), one decimal pid per line. Sweep
// reads it to kill what a dead voidbox left running.
const PidsFile = "pids"

// Prefix is the name prefix of every state dir voidbox process pid creates:
// "voidbox-<pid>-". The owner pid in the name is how Sweep tells a dead
// voidbox's directories from a live one's.
func Prefix(pid int) string { return "voidbox-" + strconv.Itoa(pid) + "-" }

// NewDir creates a fresh state dir os.TempDir()/voidbox-<ownpid>-XXXX. The
// caller removes it when the VM is gone; if voidbox dies first, Sweep does.
func NewDir() (string, error) {
	dir, err := os.MkdirTemp(os.TempDir(), Prefix(os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("create VM state dir: %w", err)
	}
	return dir, nil
}

// WritePids records a VM's processes in dir's PidsFile for Sweep.
func WritePids(dir string, pids []int) error {
	var b strings.Builder
	for _, p := range pids {
		b.WriteString(strconv.Itoa(p))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, PidsFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("record VM pids: %w", err)
	}
	return nil
}

// maxPidsFile bounds how much of a pids file Sweep reads: a VM lists a handful
// of processes, a few bytes each.
const maxPidsFile = 4 << 10

// Sweep removes the state dirs in os.TempDir() whose owning voidbox process
// is gone, first killing any VM process listed in them that still runs.
// PR_SET_PDEATHSIG (see StartPinned) normally kills those processes already;
// this covers what it cannot (a reused pid, a crash mid-start, a VMM that
// changed its uid, which clears the death signal). The CLI calls it at start.
// It returns the directories it removed.
//
// The temp dir is shared with every local user, so Sweep only touches what
// NewDir could have made: a real directory (not a symlink) owned by our
// effective uid with mode 0700. Anything else, planted or left by another
// user's voidbox, is left alone.
func Sweep() ([]string, error) { return SweepIn(os.TempDir()) }

// SweepIn is Sweep over the state dirs directly under root.
func SweepIn(root string) ([]string, error) {
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
		if !ownStateDir(dir) {
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

// ownStateDir reports whether dir is a directory NewDir could have made: not a
// symlink, owned by our effective uid, mode exactly 0700.
func ownStateDir(dir string) bool {
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) != os.Geteuid() {
		return false
	}
	return st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) == 0o700
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killListed SIGKILLs the processes in dir's pids file, but only those whose
// command line still mentions dir, so a recycled pid is never hit.
func killListed(dir string) {
	raw, err := readSmallRegular(filepath.Join(dir, PidsFile), maxPidsFile)
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

// OpenRegular opens path for reading without following a final symlink and
// without blocking on a FIFO or device, and returns it only if it is a regular
// file: whoever can write to a directory must not be able to make voidbox hang
// or read somewhere else.
func OpenRegular(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is a %v, not a regular file", path, st.Mode().Type())
	}
	return f, nil
}

// readSmallRegular reads at most max bytes of the regular file at path (see
// OpenRegular).
func readSmallRegular(path string, max int64) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// parsePids reads a pids file, skipping lines that are not a positive pid: a
// voidbox that died mid-write leaves a truncated file, and a pid of 0 or -1
// would make kill(2) hit a whole process group or everything.
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
