package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
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
	if err := seccomp.LoadFilter(StageFilter()); err != nil {
		fail("install seccomp filter: %v", err)
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

// deniedSyscalls fail with EPERM in stage processes: they would let a stage change
// the VM's kernel, mounts, clock or identity, or inspect other processes.
var deniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
	"fsconfig", "fsmount", "fspick", "mount_setattr",
	"kexec_load", "kexec_file_load", "reboot",
	"init_module", "finit_module", "delete_module",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"swapon", "swapoff", "acct", "quotactl", "syslog",
	"unshare", "setns",
	"open_by_handle_at", "name_to_handle_at",
	"settimeofday", "clock_settime", "clock_adjtime",
	"sethostname", "setdomainname", "iopl", "ioperm", "vhangup",
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// StageFilter is the seccomp filter every stage process runs under.
func StageFilter() seccomp.Filter {
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{{
				Action: seccomp.ActionErrno,
				Names:  deniedSyscalls,
			}, {
				// clone is how threads and processes start, so only its namespace flags
				// are denied: unshare and setns are denied above, and this closes the
				// same door when it is opened at creation time.
				Action: seccomp.ActionErrno,
				NamesWithCondtions: []seccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
				}},
			}, {
				// clone3 passes its flags in memory, out of a filter's reach. ENOSYS
				// makes libc fall back to clone, whose flags are checked above.
				Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
				Names:  []string{"clone3"},
			}},
		},
	}
}
