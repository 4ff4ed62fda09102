package agent

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// These tests run the stage filter's BPF program in golang.org/x/net/bpf's
// interpreter on hand-made struct seccomp_data. confine_test.go and the real-VM
// suite load it into the kernel.

const (
	auditArchI386    = 0x40000003 // AUDIT_ARCH_I386
	auditArchAARCH64 = 0xc00000b7 // AUDIT_ARCH_AARCH64
)

// filterVerdict is the stage filter's answer for one call: "allow", "kill" or an
// errno name. The interpreter loads words big-endian, as packet filters do, so the
// words of seccomp_data are written big-endian at the offsets the kernel uses: nr,
// arch, then each argument's low half before its high half (x86_64 is little-endian).
func filterVerdict(t *testing.T, arch, nr uint32, args ...uint64) string {
	t.Helper()
	prog, err := stageProgram()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("the stage filter is not a valid BPF program: %v", err)
	}
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[seccompNr:], nr)
	binary.BigEndian.PutUint32(data[seccompArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[seccompArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[seccompArgs+8*i+4:], uint32(a>>32))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatalf("run the filter on call %d: %v", nr, err)
	}
	switch r := uint32(ret); {
	case r == unix.SECCOMP_RET_ALLOW:
		return "allow"
	case r == unix.SECCOMP_RET_KILL_PROCESS:
		return "kill"
	case r&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
		return unix.ErrnoName(unix.Errno(r & unix.SECCOMP_RET_DATA))
	default:
		return fmt.Sprintf("action %#x", r)
	}
}

type call struct {
	name string
	nr   uint32
	args []uint64
}

func TestStageFilterArchCheck(t *testing.T) {
	prog, err := stageProgram()
	if err != nil {
		t.Fatal(err)
	}
	if want := (bpf.LoadAbsolute{Off: seccompArch, Size: 4}); prog[0] != want {
		t.Errorf("the filter must look at the architecture first; its first instruction is %v, want %v", prog[0], want)
	}
	for _, c := range []struct {
		name     string
		arch, nr uint32
	}{
		{"i386 unshare", auditArchI386, 310},
		{"i386 exit", auditArchI386, 1},
		{"i386 read", auditArchI386, 3},
		{"i386 call numbered like x86_64 read", auditArchI386, unix.SYS_READ},
		{"aarch64 read", auditArchAARCH64, 63},
		{"x32 unshare", unix.AUDIT_ARCH_X86_64, x32SyscallBit | unix.SYS_UNSHARE},
		{"x32 read", unix.AUDIT_ARCH_X86_64, x32SyscallBit | unix.SYS_READ},
		{"x32 exit", unix.AUDIT_ARCH_X86_64, x32SyscallBit | unix.SYS_EXIT},
		{"x86_64 call -1", unix.AUDIT_ARCH_X86_64, 0xffffffff},
	} {
		if got := filterVerdict(t, c.arch, c.nr); got != "kill" {
			t.Errorf("%s (arch %#x, nr %#x): %s, want kill", c.name, c.arch, c.nr, got)
		}
	}
}

// refusedCalls are the calls issue 8 names, and their neighbours: none may reach the
// kernel from a stage. Arguments are those that would make the call do harm.
var refusedCalls = []call{
	{"unshare", unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWUSER}},
	{"setns", unix.SYS_SETNS, []uint64{3, 0}},
	{"clone CLONE_NEWUSER", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}},
	{"clone CLONE_NEWNS", unix.SYS_CLONE, []uint64{unix.CLONE_NEWNS}},
	{"clone CLONE_NEWPID", unix.SYS_CLONE, []uint64{unix.CLONE_NEWPID}},
	{"clone CLONE_NEWNET", unix.SYS_CLONE, []uint64{unix.CLONE_NEWNET}},
	{"clone CLONE_NEWIPC", unix.SYS_CLONE, []uint64{unix.CLONE_NEWIPC}},
	{"clone CLONE_NEWUTS", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUTS}},
	{"clone CLONE_NEWCGROUP", unix.SYS_CLONE, []uint64{unix.CLONE_NEWCGROUP}},
	{"clone CLONE_NEWUSER, high bits set", unix.SYS_CLONE, []uint64{0xffffffff_00000000 | unix.CLONE_NEWUSER}},
	{"mount", unix.SYS_MOUNT, nil},
	{"umount2", unix.SYS_UMOUNT2, nil},
	{"fsopen", unix.SYS_FSOPEN, nil},
	{"fsconfig", unix.SYS_FSCONFIG, nil},
	{"fsmount", unix.SYS_FSMOUNT, nil},
	{"move_mount", unix.SYS_MOVE_MOUNT, nil},
	{"open_tree", unix.SYS_OPEN_TREE, nil},
	{"open_tree_attr", unix.SYS_OPEN_TREE_ATTR, nil},
	{"fspick", unix.SYS_FSPICK, nil},
	{"mount_setattr", unix.SYS_MOUNT_SETATTR, nil},
	{"statmount", unix.SYS_STATMOUNT, nil},
	{"listmount", unix.SYS_LISTMOUNT, nil},
	{"pivot_root", unix.SYS_PIVOT_ROOT, nil},
	{"chroot", unix.SYS_CHROOT, nil},
	{"ptrace", unix.SYS_PTRACE, []uint64{unix.PTRACE_ATTACH, 1}},
	{"process_vm_readv", unix.SYS_PROCESS_VM_READV, nil},
	{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, nil},
	{"process_madvise", unix.SYS_PROCESS_MADVISE, nil},
	{"pidfd_getfd", unix.SYS_PIDFD_GETFD, nil},
	{"kcmp", unix.SYS_KCMP, nil},
	{"bpf", unix.SYS_BPF, nil},
	{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, nil},
	{"userfaultfd", unix.SYS_USERFAULTFD, nil},
	{"keyctl", unix.SYS_KEYCTL, nil},
	{"add_key", unix.SYS_ADD_KEY, nil},
	{"request_key", unix.SYS_REQUEST_KEY, nil},
	{"kexec_load", unix.SYS_KEXEC_LOAD, nil},
	{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, nil},
	{"init_module", unix.SYS_INIT_MODULE, nil},
	{"finit_module", unix.SYS_FINIT_MODULE, nil},
	{"delete_module", unix.SYS_DELETE_MODULE, nil},
	{"reboot", unix.SYS_REBOOT, nil},
	{"swapon", unix.SYS_SWAPON, nil},
	{"swapoff", unix.SYS_SWAPOFF, nil},
	{"personality PER_LINUX32", unix.SYS_PERSONALITY, []uint64{perLinux32}},
	{"personality ADDR_NO_RANDOMIZE", unix.SYS_PERSONALITY, []uint64{0x0040000}},
	{"personality READ_IMPLIES_EXEC", unix.SYS_PERSONALITY, []uint64{0x0400000}},
	{"personality PER_LINUX32, high bits set", unix.SYS_PERSONALITY, []uint64{1<<32 | perLinux32}},
	{"modify_ldt", unix.SYS_MODIFY_LDT, []uint64{1}},
	{"set_thread_area", unix.SYS_SET_THREAD_AREA, nil},
	{"iopl", unix.SYS_IOPL, []uint64{3}},
	{"ioperm", unix.SYS_IOPERM, nil},
	{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, nil},
	{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, nil},
	{"socket AF_VSOCK", unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, unix.SOCK_STREAM}},
	{"socket AF_VSOCK, high bits set", unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_VSOCK, unix.SOCK_STREAM}},
	{"socket AF_PACKET", unix.SYS_SOCKET, []uint64{unix.AF_PACKET, unix.SOCK_RAW}},
	{"socket AF_ALG", unix.SYS_SOCKET, []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET}},
	{"socket AF_KEY", unix.SYS_SOCKET, []uint64{unix.AF_KEY, unix.SOCK_RAW}},
	{"socket AF_TIPC", unix.SYS_SOCKET, []uint64{unix.AF_TIPC, unix.SOCK_RDM}},
	{"socket AF_NETLINK NETLINK_KOBJECT_UEVENT", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_KOBJECT_UEVENT}},
	{"socket AF_NETLINK NETLINK_AUDIT", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}},
	{"socket AF_NETLINK NETLINK_NETFILTER", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER}},
	{"socket AF_NETLINK NETLINK_SOCK_DIAG", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG}},
	{"socket AF_NETLINK, protocol high bits set", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, 1<<32 | unix.NETLINK_AUDIT}},
	{"acct", unix.SYS_ACCT, nil},
	{"settimeofday", unix.SYS_SETTIMEOFDAY, nil},
	{"clock_settime", unix.SYS_CLOCK_SETTIME, nil},
	{"adjtimex", unix.SYS_ADJTIMEX, nil},
	{"clock_adjtime", unix.SYS_CLOCK_ADJTIME, nil},
	{"sethostname", unix.SYS_SETHOSTNAME, nil},
	{"setdomainname", unix.SYS_SETDOMAINNAME, nil},
	{"quotactl", unix.SYS_QUOTACTL, nil},
	{"quotactl_fd", unix.SYS_QUOTACTL_FD, nil},
	{"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE, nil},
	{"vhangup", unix.SYS_VHANGUP, nil},
	{"syslog", unix.SYS_SYSLOG, nil},
	{"nfsservctl", unix.SYS_NFSSERVCTL, nil},
	{"uselib", unix.SYS_USELIB, nil},
	{"fanotify_init", unix.SYS_FANOTIFY_INIT, nil},
	{"fanotify_mark", unix.SYS_FANOTIFY_MARK, nil},
	{"listns", unix.SYS_LISTNS, nil},
}

// enosysCalls answer ENOSYS so that their users fall back (see stageENOSYS).
var enosysCalls = []call{
	{"clone3", unix.SYS_CLONE3, nil},
	{"io_uring_setup", unix.SYS_IO_URING_SETUP, nil},
	{"io_uring_enter", unix.SYS_IO_URING_ENTER, nil},
	{"io_uring_register", unix.SYS_IO_URING_REGISTER, nil},
	{"a call newer than the list", reviewedThrough + 1, nil},
	{"a call far newer than the list", x32SyscallBit - 1, nil},
}

func TestStageFilterRefuses(t *testing.T) {
	for _, c := range refusedCalls {
		if got := filterVerdict(t, unix.AUDIT_ARCH_X86_64, c.nr, c.args...); got != "EPERM" {
			t.Errorf("%s (nr %d, args %#x): %s, want EPERM", c.name, c.nr, c.args, got)
		}
	}
	for _, c := range enosysCalls {
		if got := filterVerdict(t, unix.AUDIT_ARCH_X86_64, c.nr, c.args...); got != "ENOSYS" {
			t.Errorf("%s (nr %d): %s, want ENOSYS", c.name, c.nr, got)
		}
	}
}

// threadFlags are the clone flags of glibc's pthread_create and Go's newosproc.
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
	unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID

// neededCalls are calls busybox, Go, Node, Python, git and compilers make, with
// the arguments they use.
var neededCalls = []call{
	{"read", unix.SYS_READ, nil},
	{"write", unix.SYS_WRITE, nil},
	{"openat", unix.SYS_OPENAT, nil},
	{"openat2", unix.SYS_OPENAT2, nil},
	{"close", unix.SYS_CLOSE, nil},
	{"newfstatat", unix.SYS_NEWFSTATAT, nil},
	{"statx", unix.SYS_STATX, nil},
	{"getdents64", unix.SYS_GETDENTS64, nil},
	{"faccessat2", unix.SYS_FACCESSAT2, nil},
	{"fchmodat2", unix.SYS_FCHMODAT2, nil},
	{"close_range", unix.SYS_CLOSE_RANGE, nil},
	{"ioctl", unix.SYS_IOCTL, nil},
	{"mmap", unix.SYS_MMAP, nil},
	{"mprotect", unix.SYS_MPROTECT, nil},
	{"madvise", unix.SYS_MADVISE, nil},
	{"execve", unix.SYS_EXECVE, nil},
	{"exit_group", unix.SYS_EXIT_GROUP, nil},
	{"wait4", unix.SYS_WAIT4, nil},
	{"fork", unix.SYS_FORK, nil},
	{"vfork", unix.SYS_VFORK, nil},
	{"clone fork", unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}},
	{"clone thread", unix.SYS_CLONE, []uint64{threadFlags}},
	{"clone vfork (posix_spawn, Go os/exec)", unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)}},
	{"clone with a pidfd (Go os/exec)", unix.SYS_CLONE, []uint64{unix.CLONE_PIDFD | uint64(unix.SIGCHLD)}},
	{"arch_prctl", unix.SYS_ARCH_PRCTL, nil},
	{"set_tid_address", unix.SYS_SET_TID_ADDRESS, nil},
	{"rseq", unix.SYS_RSEQ, nil},
	{"futex", unix.SYS_FUTEX, nil},
	{"rt_sigaction", unix.SYS_RT_SIGACTION, nil},
	{"rt_sigreturn", unix.SYS_RT_SIGRETURN, nil},
	{"sigaltstack", unix.SYS_SIGALTSTACK, nil},
	{"tgkill (Go's preemption signal)", unix.SYS_TGKILL, nil},
	{"prctl", unix.SYS_PRCTL, nil},
	{"seccomp", unix.SYS_SECCOMP, nil},
	{"getrandom", unix.SYS_GETRANDOM, nil},
	{"pipe2", unix.SYS_PIPE2, nil},
	{"epoll_pwait", unix.SYS_EPOLL_PWAIT, nil},
	{"epoll_pwait2", unix.SYS_EPOLL_PWAIT2, nil},
	{"pidfd_open", unix.SYS_PIDFD_OPEN, nil},
	{"memfd_create", unix.SYS_MEMFD_CREATE, nil},
	{"copy_file_range", unix.SYS_COPY_FILE_RANGE, nil},
	{"sched_getaffinity", unix.SYS_SCHED_GETAFFINITY, nil},
	{"uname", unix.SYS_UNAME, nil},
	{"prlimit64", unix.SYS_PRLIMIT64, nil},
	{"personality PER_LINUX", unix.SYS_PERSONALITY, []uint64{0}},
	{"personality query", unix.SYS_PERSONALITY, []uint64{personalityQuery}},
	{"socket AF_UNIX", unix.SYS_SOCKET, []uint64{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC}},
	{"socket AF_INET", unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_NONBLOCK, unix.IPPROTO_TCP}},
	{"socket AF_INET6", unix.SYS_SOCKET, []uint64{unix.AF_INET6, unix.SOCK_DGRAM}},
	{"socket AF_NETLINK NETLINK_ROUTE", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE}},
	{"socketpair", unix.SYS_SOCKETPAIR, nil},
	{"connect", unix.SYS_CONNECT, nil},
	{"sendmsg", unix.SYS_SENDMSG, nil},
}

func TestStageFilterAllowsNeededCalls(t *testing.T) {
	for _, c := range neededCalls {
		if got := filterVerdict(t, unix.AUDIT_ARCH_X86_64, c.nr, c.args...); got != "allow" {
			t.Errorf("%s (nr %d, args %#x): %s, want allow", c.name, c.nr, c.args, got)
		}
	}
}

// TestStageFilterFollowsItsLists checks the assembled program against the lists it
// is built from, call by call: every x86_64 call number answers as the lists say.
func TestStageFilterFollowsItsLists(t *testing.T) {
	conditional := []uint32{unix.SYS_CLONE, unix.SYS_SOCKET, unix.SYS_PERSONALITY}
	for nr := uint32(0); nr <= reviewedThrough; nr++ {
		want := "EPERM"
		switch {
		case slices.Contains(conditional, nr):
			continue // TestStageFilterRefuses and TestStageFilterAllowsNeededCalls
		case slices.Contains(stageENOSYS, nr):
			want = "ENOSYS"
		case slices.Contains(stageAllowed, nr):
			want = "allow"
		}
		if got := filterVerdict(t, unix.AUDIT_ARCH_X86_64, nr); got != want {
			t.Errorf("call %d: %s, want %s", nr, got, want)
		}
	}
	for _, c := range refusedCalls {
		if slices.Contains(stageAllowed, c.nr) || slices.Contains(stageENOSYS, c.nr) {
			t.Errorf("%s (nr %d) is on a list of calls the filter lets through or answers ENOSYS", c.name, c.nr)
		}
	}
}
