package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// shimArg0 marks a re-exec of the agent binary as the confinement shim.
const shimArg0 = "voidbox-shim"

// RunShimIfRequested turns this process into the confinement shim when it was
// started as one (argv[0] "voidbox-shim") and never returns in that case. The agent's
// main (and a test binary's TestMain) call it first thing.
func RunShimIfRequested() {
	if len(os.Args) == 2 && os.Args[0] == shimArg0 {
		runShim(os.Args[1])
	}
}

// runShim applies the stage policy to itself and execs the stage program: rlimits
// (as root, so hard limits can be set), the stage root when there is one,
// supplementary groups, gid, uid, no_new_privs, seccomp. Any failure is written to fd 3 for the agent to report.
func runShim(arg string) {
	runtime.LockOSThread()
	status := os.NewFile(3, "status")
	fail := func(format string, args ...any) {
		fmt.Fprintf(status, format, args...)
		os.Exit(127)
	}
	if _, err := unix.FcntlInt(3, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		fmt.Fprintf(os.Stderr, "voidbox-shim: status fd: %v\n", err)
		os.Exit(127)
	}
	var cfg shimConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		fail("shim config: %v", err)
	}
	if err := applyRlimits(cfg.Rlimits); err != nil {
		fail("%v", err)
	}
	if cfg.Root != "" {
		if err := enterRoot(cfg.Root); err != nil {
			fail("%v", err)
		}
		if err := syscall.Chdir(cfg.Dir); err != nil {
			fail("chdir %s: %v", cfg.Dir, err)
		}
	}
	if err := syscall.Setgroups([]int{cfg.GID}); err != nil {
		fail("setgroups [%d]: %v", cfg.GID, err)
	}
	if err := syscall.Setgid(cfg.GID); err != nil {
		fail("setgid %d: %v", cfg.GID, err)
	}
	if err := syscall.Setuid(cfg.UID); err != nil {
		fail("setuid %d: %v", cfg.UID, err)
	}
	if err := loadStageFilter(); err != nil { // seccomp.go
		fail("%v", err)
	}
	err := syscall.Exec(cfg.Path, cfg.Args, os.Environ())
	fail("exec %s: %v", cfg.Path, err)
}

func applyRlimits(l proto.Rlimits) error {
	for _, r := range []struct {
		name string
		res  int
		v    uint64
	}{
		{"NOFILE", unix.RLIMIT_NOFILE, l.NOFILE},
		{"NPROC", unix.RLIMIT_NPROC, l.NPROC},
		{"FSIZE", unix.RLIMIT_FSIZE, l.FSIZE},
		{"CPU", unix.RLIMIT_CPU, l.CPU},
	} {
		if r.v == 0 {
			continue
		}
		if err := unix.Setrlimit(r.res, &unix.Rlimit{Cur: r.v, Max: r.v}); err != nil {
			return fmt.Errorf("setrlimit %s=%d: %w", r.name, r.v, err)
		}
	}
	return nil
}

// enterRoot makes root (a mount point) this process's "/", in the private mount
// namespace the agent started it in. pivot_root cannot do it: the agent's root is the
// initramfs, the kernel's rootfs, which pivot_root refuses to move (EINVAL). So, as
// switch_root does, root is moved over "/" and entered with chroot: the initramfs and
// the agent's mounts stay in this namespace, covered and out of reach of every path
// (".." at the root stays there). Unmounting or moving the cover would take
// CAP_SYS_ADMIN, which the stage never has, and a user namespace (which seccomp
// refuses anyway) would get the mounts locked together.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("stage root: chdir %s: %w", root, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("stage root: move %s over /: %w", root, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("stage root: chroot %s: %w", root, err)
	}
	return nil
}
