package agent

import (
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the seccomp half of the stage probe (VOIDBOX_TEST_HELPER=syscalls):
// the test binary, copied into a workspace and run as a confined stage, tries the
// calls the stage filter must refuse and the calls stages need, and prints one
// "name=result" line each. The host suite (confine_test.go) and the real-VM suite
// (../seccomp_vm_test.go) run the same probe and read the same lines.

// perLinux32 is PER_LINUX32 from <linux/personality.h> (x/sys/unix lacks it).
const perLinux32 = 0x0008

// EnvIA32 tells the probe whether the kernel runs i386 code ("yes" or "no"; unset:
// either), which decides how the foreign-architecture programs must end.
const envIA32 = "VOIDBOX_TEST_IA32"

// probeSyscalls tries each call the stage filter decides on and prints
// "name=result" for it and, when the result is not what the filter must produce, a
// line "MISMATCH name: ...". It returns the number of mismatches; the probe's exit
// status says whether there were any.
func probeSyscalls() int {
	mismatches := 0
	check := func(name, got string, want ...string) {
		os.Stdout.WriteString(name + "=" + got + "\n")
		if !slices.Contains(want, got) {
			mismatches++
			os.Stdout.WriteString("MISMATCH " + name + ": got " + got + ", want one of " + strings.Join(want, " ") + "\n")
		}
	}
	raw := func(nr uintptr, args ...uintptr) string {
		var a [6]uintptr
		copy(a[:], args)
		_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		return errName(errnoErr(e))
	}
	socket := func(domain, typ, proto uintptr) string {
		fd, _, e := unix.Syscall(unix.SYS_SOCKET, domain, typ|unix.SOCK_CLOEXEC, proto)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errName(errnoErr(e))
	}
	// Refused. mount, reboot, keyctl and bpf would succeed or fail otherwise for an
	// unconfined uid 1000, and unshare fails with EINVAL in a threaded process.
	check("mount", errName(unix.Mount("none", "/mnt", "tmpfs", 0, "")), "EPERM")
	check("unshare", errName(unix.Unshare(unix.CLONE_NEWNS)), "EPERM")
	check("ptrace", raw(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1), "EPERM")
	check("reboot", errName(unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)), "EPERM")
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	check("keyctl", errName(err), "EPERM")
	check("bpf", raw(unix.SYS_BPF, 0, 0, 0), "EPERM")
	// A child in a new user or network namespace: refused at creation. A plain fork
	// with SIGCHLD only is what every shell does; it must still work. clone3 hides its
	// flags from the filter and answers ENOSYS, so that libc falls back to clone.
	check("clone-newuser", errName(cloneProbe(unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD))), "EPERM")
	check("clone-newnet", errName(cloneProbe(unix.CLONE_NEWNET|uintptr(unix.SIGCHLD))), "EPERM")
	check("clone-plain", errName(cloneProbe(uintptr(unix.SIGCHLD))), "ok")
	check("clone3", raw(unix.SYS_CLONE3, 0, 0), "ENOSYS")

	// Each of the next would succeed (or fail otherwise) for an unconfined uid 1000 on a
	// kernel that has it; the filter answers before the kernel looks the call up, so
	// its EPERM or ENOSYS comes back even where the kernel lacks the call.
	var params [120]byte // struct io_uring_params
	check("io_uring_setup", raw(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0]))), "ENOSYS")
	check("io_uring_enter", raw(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0), "ENOSYS")
	check("io_uring_register", raw(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0), "ENOSYS")
	check("socket-vsock", socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0), "EPERM")
	// The kernel reads the family as an int: bits above 31 must not smuggle it past.
	check("socket-vsock-highbits", socket(1<<32|unix.AF_VSOCK, unix.SOCK_STREAM, 0), "EPERM")
	check("socket-packet", socket(unix.AF_PACKET, unix.SOCK_DGRAM, 0), "EPERM")
	check("socket-alg", socket(unix.AF_ALG, unix.SOCK_SEQPACKET, 0), "EPERM")
	check("socket-netlink-uevent", socket(unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_KOBJECT_UEVENT), "EPERM")
	check("personality-linux32", raw(unix.SYS_PERSONALITY, perLinux32), "EPERM")
	check("personality-linux32-highbits", raw(unix.SYS_PERSONALITY, 1<<32|perLinux32), "EPERM")
	var ldt [16]byte
	check("modify_ldt", raw(unix.SYS_MODIFY_LDT, 0, uintptr(unsafe.Pointer(&ldt[0])), uintptr(len(ldt))), "EPERM")
	check("add_key", raw(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0), "EPERM")
	check("userfaultfd", raw(unix.SYS_USERFAULTFD, unix.O_CLOEXEC), "EPERM")
	check("perf_event_open", raw(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0), "EPERM")
	check("setns", raw(unix.SYS_SETNS, ^uintptr(0), 0), "EPERM")
	check("process_vm_readv", raw(unix.SYS_PROCESS_VM_READV, uintptr(os.Getppid()), 0, 0, 0, 0, 0), "EPERM")
	root := []byte("/\x00")
	check("chroot", raw(unix.SYS_CHROOT, uintptr(unsafe.Pointer(&root[0]))), "EPERM")

	// Needed by busybox, Go, Node, Python, git and compilers. They pass the filter:
	// ok, or the kernel's own error for the probe's harmless arguments.
	check("socket-unix", socket(unix.AF_UNIX, unix.SOCK_STREAM, 0), "ok")
	check("socket-inet", socket(unix.AF_INET, unix.SOCK_DGRAM, 0), "ok")
	check("socket-inet6", socket(unix.AF_INET6, unix.SOCK_DGRAM, 0), "ok", "EAFNOSUPPORT") // a kernel without IPv6
	check("socket-netlink-route", socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), "ok")
	check("personality-query", raw(unix.SYS_PERSONALITY, 0xffffffff), "ok")
	check("personality-linux", raw(unix.SYS_PERSONALITY, 0), "ok")
	var stx unix.Statx_t
	check("statx", errName(unix.Statx(unix.AT_FDCWD, "/", 0, unix.STATX_BASIC_STATS, &stx)), "ok")
	check("faccessat2", errName(unix.Faccessat2(unix.AT_FDCWD, "/", unix.R_OK, unix.AT_EACCESS)), "ok")
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err == nil {
		unix.Close(pidfd)
	}
	check("pidfd_open", errName(err), "ok")
	check("close_range", errName(unix.CloseRange(1<<20, 1<<20+1, 0)), "ok")
	// Unregistering nothing: EINVAL, or ENOSYS from a kernel built without
	// CONFIG_RSEQ (the voidbox kernel); the filter's own answer would be EPERM.
	check("rseq", raw(unix.SYS_RSEQ, 0, 0, 1, 0), "EINVAL", "ENOSYS")
	var buf [8]byte
	_, err = unix.Getrandom(buf[:], 0)
	check("getrandom", errName(err), "ok")
	mfd, err := unix.MemfdCreate("probe", unix.MFD_CLOEXEC)
	if err == nil {
		unix.Close(mfd)
	}
	check("memfd_create", errName(err), "ok")
	var events [12]byte // struct epoll_event
	check("epoll_pwait2", raw(unix.SYS_EPOLL_PWAIT2, ^uintptr(0), uintptr(unsafe.Pointer(&events[0])), 1, 0, 0, 0), "EBADF")
	check("arch_prctl", raw(unix.SYS_ARCH_PRCTL, 0x1003, uintptr(unsafe.Pointer(&buf[0]))), "ok") // ARCH_GET_FS

	// The foreign-architecture programs: killed by the filter at their first call
	// where the kernel runs i386 code; where it does not, the i386 ELF cannot exec and
	// int $0x80 faults. The x32 call is always the filter's (no kernel here has x32).
	refused := map[string][]string{
		"yes": {"signal:SIGSYS"},
		"no":  {"exec:ENOEXEC", "signal:SIGSEGV"},
		"":    {"signal:SIGSYS", "exec:ENOEXEC", "signal:SIGSEGV"},
	}[os.Getenv(envIA32)]
	for _, p := range foreignProbes {
		want := refused
		if p.name == "elf-x32-unshare" {
			want = []string{"signal:SIGSYS"}
		}
		check(p.name, runForeign(p.name, p.elf()), want...)
	}
	return mismatches
}

// Machine code of the foreign-architecture probes. Each calls
// unshare(CLONE_NEWUSER) and exits with its return value: 0 would mean the stage
// made itself a user namespace, the way out of every namespace rule above.
var (
	// i386, through int $0x80 (i386 unshare is 310, exit is 1).
	codeI386Unshare = []byte{
		0xb8, 0x36, 0x01, 0x00, 0x00, // mov eax, 310
		0xbb, 0x00, 0x00, 0x00, 0x10, // mov ebx, CLONE_NEWUSER
		0xcd, 0x80, // int $0x80
		0x89, 0xc3, // mov ebx, eax
		0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
		0xcd, 0x80, // int $0x80
	}
	// x86_64 code entering the i386 syscall table through int $0x80.
	codeInt80Unshare = []byte{
		0xb8, 0x36, 0x01, 0x00, 0x00, // mov eax, 310
		0xbb, 0x00, 0x00, 0x00, 0x10, // mov ebx, CLONE_NEWUSER
		0xcd, 0x80, // int $0x80
		0x89, 0xc7, // mov edi, eax
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
		0x0f, 0x05, // syscall
	}
	// x86_64 code making the x32 call: unshare is 272 | __X32_SYSCALL_BIT.
	codeX32Unshare = []byte{
		0xb8, 0x10, 0x01, 0x00, 0x40, // mov eax, 0x40000110
		0xbf, 0x00, 0x00, 0x00, 0x10, // mov edi, CLONE_NEWUSER
		0x0f, 0x05, // syscall
		0x89, 0xc7, // mov edi, eax
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
		0x0f, 0x05, // syscall
	}
	// i386 exit(42): tells whether the kernel runs i386 programs at all.
	codeI386Exit42 = []byte{
		0xbb, 0x2a, 0x00, 0x00, 0x00, // mov ebx, 42
		0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
		0xcd, 0x80, // int $0x80
	}
)

// foreignProbes are the static ELF programs probeForeignArch writes and runs.
var foreignProbes = []struct {
	name string
	elf  func() []byte
}{
	{"elf-i386-unshare", func() []byte { return elf32(codeI386Unshare) }},
	{"elf-int80-unshare", func() []byte { return elf64(codeInt80Unshare) }},
	{"elf-x32-unshare", func() []byte { return elf64(codeX32Unshare) }},
}

// envELFDir names the directory, writable by the stage, where the probe writes the
// foreign-architecture programs (default: ./foreign-arch). They stay there for the VM
// test to run again straight from a stage's shell.
const envELFDir = "VOIDBOX_TEST_ELF_DIR"

// runForeign writes an ELF program into $VOIDBOX_TEST_ELF_DIR and runs it (see runOutcome).
func runForeign(name string, prog []byte) string {
	dir := cmp.Or(os.Getenv(envELFDir), "foreign-arch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "error:" + err.Error()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		return "error:" + err.Error()
	}
	return runOutcome(path)
}

// runOutcome runs a program and says how it ended: "exit:N", "signal:SIGNAME", or
// "exec:ERRNO" when it could not start (ENOEXEC: the kernel cannot run its format).
func runOutcome(path string) string {
	err := exec.Command(path).Run()
	var ee *exec.ExitError
	var errno syscall.Errno
	switch {
	case err == nil:
		return "exit:0"
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return "signal:" + unix.SignalName(ws.Signal())
		}
		return "exit:" + strconv.Itoa(ws.ExitStatus())
	case errors.As(err, &errno):
		return "exec:" + unix.ErrnoName(errno)
	}
	return "error:" + err.Error()
}

// elf32 wraps i386 code in the smallest static executable: an ELF header and one
// loadable, executable segment holding the whole file.
func elf32(code []byte) []byte {
	const base = 0x08048000
	const hdrs = 52 + 32 // sizeof(Elf32_Ehdr) + sizeof(Elf32_Phdr)
	size := uint32(hdrs + len(code))
	h := elf.Header32{Ident: elfIdent(elf.ELFCLASS32), Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_386),
		Version: uint32(elf.EV_CURRENT), Entry: base + hdrs, Phoff: 52, Ehsize: 52, Phentsize: 32, Phnum: 1}
	p := elf.Prog32{Type: uint32(elf.PT_LOAD), Vaddr: base, Paddr: base, Filesz: size, Memsz: size,
		Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}
	return elfFile(h, p, code)
}

// elf64 is elf32 for x86_64 code.
func elf64(code []byte) []byte {
	const base = 0x400000
	const hdrs = 64 + 56 // sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr)
	size := uint64(hdrs + len(code))
	h := elf.Header64{Ident: elfIdent(elf.ELFCLASS64), Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64),
		Version: uint32(elf.EV_CURRENT), Entry: base + hdrs, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1}
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Vaddr: base, Paddr: base, Filesz: size, Memsz: size,
		Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}
	return elfFile(h, p, code)
}

// elfIdent is e_ident of a little-endian ELF file of class c.
func elfIdent(c elf.Class) [elf.EI_NIDENT]byte {
	var id [elf.EI_NIDENT]byte
	copy(id[:], elf.ELFMAG)
	id[elf.EI_CLASS], id[elf.EI_DATA], id[elf.EI_VERSION] = byte(c), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	return id
}

// elfFile lays out the header, the program header and the code.
func elfFile(header, prog any, code []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, header) // fixed-size structs into a bytes.Buffer: cannot fail
	_ = binary.Write(&b, binary.LittleEndian, prog)
	b.Write(code)
	return b.Bytes()
}
