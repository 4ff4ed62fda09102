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
// (as root, so hard limits can be set), supplementary groups, gid, uid,
// no_new_privs, seccomp. Any failure is written to fd 3 for the agent to report.
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
