package agent

// The stage seccomp filter: an allow-list for x86_64 stage processes.
//
// It is a hand-written classic BPF program (assembled with golang.org/x/net/bpf)
// rather than a go-seccomp-bpf Policy, which cannot express three of its rules:
//   - go-seccomp-bpf sends every call of another architecture to the policy's default
//     action; this filter kills the process at its first i386 or x32 call whatever
//     the default is, as the first thing it checks.
//   - go-seccomp-bpf compares all 64 bits of an argument, but the kernel reads an int
//     argument (socket's family, personality's persona) from the low 32 bits only: a
//     caller who sets the high bits passes a 64-bit "!= AF_VSOCK" test and still gets
//     an AF_VSOCK socket. This filter compares the low 32 bits of such arguments.
//   - calls newer than the list answer ENOSYS, as on an older kernel, not the default
//     EPERM, so that libraries fall back instead of failing.
//
// The list is Docker's default profile (moby/profiles/seccomp/default.json) for
// x86_64 as it applies to a process without capabilities, less what no stage
// program (busybox, Go, Node/Bun, Python, git, compilers) needs and what reaches
// into the kernel beyond a stage's own processes and files: io_uring, personality
// other than the default, modify_ldt, the ptrace family, name_to_handle_at, clock
// adjustment, fanotify and the 32-bit TLS calls. Socket families are allowed by name.

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (include/uapi/linux/seccomp.h).
const (
	seccompNr   = 0  // int nr
	seccompArch = 4  // __u32 arch
	seccompArgs = 16 // __u64 args[6]; x86_64 is little-endian: an argument's low half comes first
)

// x32SyscallBit (__X32_SYSCALL_BIT) marks x32 calls. They arrive with arch
// AUDIT_ARCH_X86_64, so only the number tells them apart; no x86_64 call is that large.
const x32SyscallBit = 0x40000000

// reviewedThrough is the newest x86_64 call this list was reviewed against (listns,
// Linux 6.18). A larger number is a call the list cannot know: it answers ENOSYS.
const reviewedThrough = unix.SYS_LISTNS

// namespaceFlags are the clone flags that create namespaces (Docker's clone mask,
// 0x7E020000). clone() takes its flags from the low 32 bits of its first argument.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// personalityQuery is personality(0xffffffff), which reads the persona and changes nothing.
const personalityQuery = 0xffffffff

var (
	retAllow = bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	retEPERM = bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}
	// ENOSYS is "this kernel has no such call": what libraries fall back on.
	retENOSYS = bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}
	// Foreign-architecture calls kill the process: an errno would not stop a 32-bit
	// program that cannot even exit, and no stage program makes them (the guest
	// userland is x86_64 only).
	retKill = bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS}
)

// stageAllowed are the calls a stage makes freely. Every other call answers EPERM,
// except the conditional ones (stageProgram) and stageENOSYS. Entries follow
// Docker's list; the comments say why a call a reader might not expect is here.
var stageAllowed = []uint32{
	// files and directories
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_OPEN, unix.SYS_CLOSE, unix.SYS_STAT, unix.SYS_FSTAT,
	unix.SYS_LSTAT, unix.SYS_LSEEK, unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_READV,
	unix.SYS_WRITEV, unix.SYS_ACCESS, unix.SYS_PIPE, unix.SYS_DUP, unix.SYS_DUP2, unix.SYS_DUP3,
	unix.SYS_SENDFILE, unix.SYS_FCNTL, unix.SYS_FLOCK, unix.SYS_FSYNC, unix.SYS_FDATASYNC,
	unix.SYS_TRUNCATE, unix.SYS_FTRUNCATE, unix.SYS_GETDENTS, unix.SYS_GETDENTS64, unix.SYS_GETCWD,
	unix.SYS_CHDIR, unix.SYS_FCHDIR, unix.SYS_RENAME, unix.SYS_MKDIR, unix.SYS_RMDIR, unix.SYS_CREAT,
	unix.SYS_LINK, unix.SYS_UNLINK, unix.SYS_SYMLINK, unix.SYS_READLINK, unix.SYS_CHMOD,
	unix.SYS_FCHMOD, unix.SYS_CHOWN, unix.SYS_FCHOWN, unix.SYS_LCHOWN, unix.SYS_UMASK,
	unix.SYS_MKNOD, // without CAP_MKNOD: FIFOs, sockets and regular files only
	unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT, unix.SYS_UTIMENSAT, unix.SYS_STATFS,
	unix.SYS_FSTATFS, unix.SYS_OPENAT, unix.SYS_OPENAT2, unix.SYS_MKDIRAT, unix.SYS_MKNODAT,
	unix.SYS_FCHOWNAT, unix.SYS_NEWFSTATAT, unix.SYS_UNLINKAT, unix.SYS_RENAMEAT,
	unix.SYS_RENAMEAT2, unix.SYS_LINKAT, unix.SYS_SYMLINKAT, unix.SYS_READLINKAT,
	unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2,
	unix.SYS_STATX, unix.SYS_SPLICE, unix.SYS_TEE, unix.SYS_VMSPLICE, unix.SYS_SYNC_FILE_RANGE,
	unix.SYS_SYNC, unix.SYS_SYNCFS, unix.SYS_FALLOCATE, unix.SYS_FADVISE64, unix.SYS_READAHEAD,
	unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_COPY_FILE_RANGE,
	unix.SYS_CLOSE_RANGE, unix.SYS_PIPE2, unix.SYS_CACHESTAT,
	unix.SYS_FILE_GETATTR, unix.SYS_FILE_SETATTR, // the FS_IOC_FS[GS]ETXATTR ioctls as calls
	unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, unix.SYS_GETXATTR,
	unix.SYS_LGETXATTR, unix.SYS_FGETXATTR, unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR,
	unix.SYS_FLISTXATTR, unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR,
	unix.SYS_SETXATTRAT, unix.SYS_GETXATTRAT, unix.SYS_LISTXATTRAT, unix.SYS_REMOVEXATTRAT,
	unix.SYS_INOTIFY_INIT, unix.SYS_INOTIFY_INIT1, unix.SYS_INOTIFY_ADD_WATCH, unix.SYS_INOTIFY_RM_WATCH,
	unix.SYS_IOCTL, // terminals and files; device ioctls are the device's own business
	unix.SYS_MEMFD_CREATE, unix.SYS_MEMFD_SECRET,
	// Linux AIO (io_setup...), unlike io_uring, is a small, old interface databases use.
	unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_GETEVENTS, unix.SYS_IO_SUBMIT,
	unix.SYS_IO_CANCEL, unix.SYS_IO_PGETEVENTS,

	// memory
	unix.SYS_MMAP, unix.SYS_MPROTECT, unix.SYS_MUNMAP, unix.SYS_BRK, unix.SYS_MREMAP,
	unix.SYS_MSYNC, unix.SYS_MINCORE, unix.SYS_MADVISE, unix.SYS_REMAP_FILE_PAGES,
	unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCKALL, unix.SYS_MUNLOCKALL, unix.SYS_MLOCK2, // RLIMIT_MEMLOCK bounds them
	unix.SYS_PKEY_MPROTECT, unix.SYS_PKEY_ALLOC, unix.SYS_PKEY_FREE, // V8 protects JIT code with them
	unix.SYS_MEMBARRIER, unix.SYS_MSEAL,
	unix.SYS_MAP_SHADOW_STACK, // glibc's CET shadow stacks

	// processes, threads and signals (clone is conditional, below)
	unix.SYS_FORK, unix.SYS_VFORK, unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_EXIT,
	unix.SYS_EXIT_GROUP, unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_KILL, unix.SYS_TKILL,
	unix.SYS_TGKILL, unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN,
	unix.SYS_RT_SIGPENDING, unix.SYS_RT_SIGTIMEDWAIT, unix.SYS_RT_SIGQUEUEINFO,
	unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_TGSIGQUEUEINFO, unix.SYS_SIGALTSTACK, unix.SYS_PAUSE,
	unix.SYS_RESTART_SYSCALL, unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL,
	unix.SYS_PROCESS_MRELEASE, // reaps a process being killed; needs it already SIGKILLed
	unix.SYS_ARCH_PRCTL,       // TLS of every x86_64 static binary
	unix.SYS_SET_TID_ADDRESS, unix.SYS_SET_ROBUST_LIST, unix.SYS_GET_ROBUST_LIST,
	unix.SYS_RSEQ, // glibc registers it at thread start
	unix.SYS_FUTEX, unix.SYS_FUTEX_WAITV, unix.SYS_FUTEX_WAKE, unix.SYS_FUTEX_WAIT, unix.SYS_FUTEX_REQUEUE,
	unix.SYS_PRCTL,   // no_new_privs is set and the stage has no capabilities
	unix.SYS_SECCOMP, // a stage may only add filters of its own
	unix.SYS_LANDLOCK_CREATE_RULESET, unix.SYS_LANDLOCK_ADD_RULE, unix.SYS_LANDLOCK_RESTRICT_SELF,
	unix.SYS_CAPGET, unix.SYS_CAPSET, // a process without capabilities can only drop
	unix.SYS_GETPID, unix.SYS_GETPPID, unix.SYS_GETTID, unix.SYS_GETUID, unix.SYS_GETGID,
	unix.SYS_GETEUID, unix.SYS_GETEGID, unix.SYS_GETGROUPS, unix.SYS_GETRESUID, unix.SYS_GETRESGID,
	unix.SYS_GETPGID, unix.SYS_GETPGRP, unix.SYS_GETSID, unix.SYS_SETPGID, unix.SYS_SETSID,
	// The set*id calls only move among the ids the stage already has.
	unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID, unix.SYS_SETREGID, unix.SYS_SETRESUID,
	unix.SYS_SETRESGID, unix.SYS_SETGROUPS, unix.SYS_SETFSUID, unix.SYS_SETFSGID,
	unix.SYS_GETRLIMIT, unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64, unix.SYS_GETRUSAGE, unix.SYS_TIMES,
	unix.SYS_GETPRIORITY, unix.SYS_SETPRIORITY, unix.SYS_IOPRIO_GET, unix.SYS_IOPRIO_SET,
	unix.SYS_SCHED_YIELD, unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_GETPARAM,
	unix.SYS_SCHED_SETSCHEDULER, unix.SYS_SCHED_GETSCHEDULER, unix.SYS_SCHED_GET_PRIORITY_MAX,
	unix.SYS_SCHED_GET_PRIORITY_MIN, unix.SYS_SCHED_RR_GET_INTERVAL, unix.SYS_SCHED_SETAFFINITY,
	unix.SYS_SCHED_GETAFFINITY, unix.SYS_SCHED_SETATTR, unix.SYS_SCHED_GETATTR, unix.SYS_GETCPU,

	// time
	unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_GETITIMER, unix.SYS_SETITIMER,
	unix.SYS_ALARM, unix.SYS_GETTIMEOFDAY, unix.SYS_TIME, unix.SYS_CLOCK_GETTIME,
	unix.SYS_CLOCK_GETRES, unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_GETTIME,
	unix.SYS_TIMER_GETOVERRUN, unix.SYS_TIMER_DELETE, unix.SYS_TIMERFD_CREATE,
	unix.SYS_TIMERFD_SETTIME, unix.SYS_TIMERFD_GETTIME,

	// polling and events
	unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_SELECT, unix.SYS_PSELECT6, unix.SYS_EPOLL_CREATE,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT,
	unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD, unix.SYS_EVENTFD2, unix.SYS_SIGNALFD, unix.SYS_SIGNALFD4,

	// sockets (socket itself is conditional, below)
	unix.SYS_SOCKETPAIR, unix.SYS_CONNECT, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_SENDTO,
	unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG, unix.SYS_RECVMMSG,
	unix.SYS_SHUTDOWN, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME,
	unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT,

	// System V and POSIX IPC, within the stage's own IPC objects
	unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMCTL, unix.SYS_SHMDT, unix.SYS_SEMGET,
	unix.SYS_SEMOP, unix.SYS_SEMCTL, unix.SYS_SEMTIMEDOP, unix.SYS_MSGGET, unix.SYS_MSGSND,
	unix.SYS_MSGRCV, unix.SYS_MSGCTL, unix.SYS_MQ_OPEN, unix.SYS_MQ_UNLINK, unix.SYS_MQ_TIMEDSEND,
	unix.SYS_MQ_TIMEDRECEIVE, unix.SYS_MQ_NOTIFY, unix.SYS_MQ_GETSETATTR,

	// system information
	unix.SYS_UNAME, unix.SYS_SYSINFO, unix.SYS_GETRANDOM,
}

// stageENOSYS answer ENOSYS, as on a kernel built without them, because that is the
// answer their users fall back on:
//   - clone3 passes its flags in memory, out of a filter's reach; glibc's
//     pthread_create and posix_spawn then use clone, whose flags are checked.
//   - io_uring has been the source of a long run of kernel privilege escalations;
//     libuv (Node), Bun and liburing users fall back to epoll and threads.
var stageENOSYS = []uint32{
	unix.SYS_CLONE3, unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
}

// stageSocketFamilies are the socket families a stage may create: local, IPv4 and
// IPv6 sockets, and netlink for NETLINK_ROUTE only (getaddrinfo, getifaddrs, Go's
// net.Interfaces, `ip` read the routing tables through it). Every other family
// answers EPERM: AF_VSOCK would reach the host's vsock ports, AF_PACKET and the
// other netlink protocols reach the network stack and kernel subsystems beneath the
// stage's own connections, and the rest (AF_ALG, AF_TIPC, AF_RDS, ...) are kernel
// code no stage program uses and a known source of exploitable bugs.
var stageSocketFamilies = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// argLow loads the low 32 bits of syscall argument i into A.
func argLow(i uint32) bpf.Instruction {
	return bpf.LoadAbsolute{Off: seccompArgs + 8*i, Size: 4}
}

// whenSyscall guards body, which must end in a return, with a test of the call
// number in A: body runs for call nr, and every other call skips it.
func whenSyscall(nr uint32, body ...bpf.Instruction) ([]bpf.Instruction, error) {
	if len(body) > 255 {
		return nil, fmt.Errorf("seccomp: the rule for call %d has %d instructions, more than a jump can skip (255)", nr, len(body))
	}
	return append([]bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: nr, SkipTrue: uint8(len(body))}}, body...), nil
}

// retIfIn returns ret for the call numbers in nrs (A holds the call number), sorted
// into runs of consecutive numbers so each run is one range test.
func retIfIn(nrs []uint32, ret bpf.RetConstant) []bpf.Instruction {
	sorted := slices.Clone(nrs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var prog []bpf.Instruction
	for i := 0; i < len(sorted); {
		lo, hi := sorted[i], sorted[i]
		for i++; i < len(sorted) && sorted[i] == hi+1; i++ {
			hi = sorted[i]
		}
		if lo == hi {
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipFalse: 1}, ret)
		} else {
			prog = append(prog,
				bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: lo, SkipFalse: 2},
				bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: hi, SkipTrue: 1},
				ret)
		}
	}
	return prog
}

// stageProgram is the stage filter as BPF instructions.
func stageProgram() ([]bpf.Instruction, error) {
	prog := []bpf.Instruction{
		// The architecture first: a process may enter the kernel through the i386
		// table (int $0x80, or an i386 binary) wherever the kernel has IA32
		// emulation, and those calls have other numbers. Kill them all.
		bpf.LoadAbsolute{Off: seccompArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		retKill,
		bpf.LoadAbsolute{Off: seccompNr, Size: 4},
		// x32 calls come with the x86_64 arch and the x32 bit in the number.
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
		retKill,
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: reviewedThrough, SkipFalse: 1},
		retENOSYS,
	}
	// clone without namespace flags: fork, vfork-style spawns and threads. unshare
	// and setns are denied; this closes the same door at process creation.
	clone, err := whenSyscall(unix.SYS_CLONE,
		argLow(0),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: namespaceFlags, SkipTrue: 1},
		retAllow,
		retEPERM)
	if err != nil {
		return nil, err
	}
	// socket: the families of stageSocketFamilies, and netlink for NETLINK_ROUTE.
	// The kernel reads family and protocol as ints, so the low halves decide.
	sock := []bpf.Instruction{argLow(0)}
	for i, fam := range stageSocketFamilies {
		// Skip the remaining family tests, the netlink test (3) and the EPERM to the allow.
		sock = append(sock, bpf.JumpIf{Cond: bpf.JumpEqual, Val: fam, SkipTrue: uint8(len(stageSocketFamilies) - i - 1 + 4)})
	}
	sock = append(sock,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_NETLINK, SkipFalse: 2},
		argLow(2),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.NETLINK_ROUTE, SkipTrue: 1},
		retEPERM,
		retAllow)
	socket, err := whenSyscall(unix.SYS_SOCKET, sock...)
	if err != nil {
		return nil, err
	}
	// personality: only PER_LINUX, the default, and the query. The other personas
	// change how the kernel treats the process (PER_LINUX32's 32-bit uname,
	// READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE turning off ASLR for what it execs next).
	// The kernel reads the persona as an unsigned int.
	personality, err := whenSyscall(unix.SYS_PERSONALITY,
		argLow(0),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: personalityQuery, SkipTrue: 1},
		retEPERM,
		retAllow)
	if err != nil {
		return nil, err
	}
	prog = slices.Concat(prog, clone, socket, personality,
		retIfIn(stageENOSYS, retENOSYS),
		retIfIn(stageAllowed, retAllow),
		[]bpf.Instruction{retEPERM})
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: the stage filter has %d instructions, more than the kernel takes (%d)", len(prog), unix.BPF_MAXINSNS)
	}
	return prog, nil
}

// loadStageFilter sets no_new_privs and installs the stage filter on every thread
// of the calling process (SECCOMP_FILTER_FLAG_TSYNC: the Go runtime has several);
// the program the process execs next runs under it.
func loadStageFilter() error {
	prog, err := stageProgram()
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("seccomp: assemble the stage filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: install the stage filter (%d instructions): %w", len(filter), errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not take the stage filter", r)
	}
	return nil
}
