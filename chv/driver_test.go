package chv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// fakeDriver returns a driver whose cloud-hypervisor is this test binary in
// the given fake mode (see fakeModeEnv).
func fakeDriver(t *testing.T, mode string) *Driver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeModeEnv, mode)
	return New(Options{Binary: exe, SocketTimeout: 20 * time.Second})
}

func testConfig(t *testing.T) runtime.VMConfig {
	return runtime.VMConfig{
		Name: "box1", Kernel: "/boot/vmlinuz", Initramfs: "/boot/initrd.img",
		Cmdline: "quiet voidbox.secret=abc", MemoryMB: 256, VCPUs: 2, StateDir: t.TempDir(),
	}
}

// checkGone asserts that the VMM was reaped, its sockets removed, and that
// the fake saw no contract violation.
func checkGone(t *testing.T, m *machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("machine not done")
	}
	if err := syscall.Kill(m.p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("cloud-hypervisor pid %d still exists (kill 0: %v)", m.p.cmd.Process.Pid, err)
	}
	for _, f := range []string{m.paths.API, m.paths.Vsock} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	checkNoViolations(t, m.paths.Log)
}

func checkNoViolations(t *testing.T, log string) {
	t.Helper()
	data, _ := os.ReadFile(log)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, violationMark) {
			t.Errorf("contract violation: %s", line)
		}
	}
}

func bootFake(t *testing.T, mode string) *machine {
	t.Helper()
	m, err := fakeDriver(t, mode).boot(context.Background(), testConfig(t))
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() { m.Kill() })
	return m
}

func TestBootAndShutdown(t *testing.T) {
	m := bootFake(t, "normal")

	// The config the VMM accepted (validated against the schema by the fake).
	var info struct {
		State  string
		Config vmConfig
	}
	if err := m.api.call(context.Background(), http.MethodGet, "vm.info", nil, &info); err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if info.State != "Running" {
		t.Errorf("state %q", info.State)
	}
	if c.CPUs.BootVCPUs != 2 || c.Memory.Size != 256<<20 || c.Memory.Shared {
		t.Errorf("cpus/memory: %+v %+v", c.CPUs, c.Memory)
	}
	if want := "console=ttyS0 reboot=k panic=-1 quiet voidbox.secret=abc"; c.Payload.Cmdline != want {
		t.Errorf("cmdline %q, want %q", c.Payload.Cmdline, want)
	}
	if c.Payload.Kernel != "/boot/vmlinuz" || c.Payload.Initramfs != "/boot/initrd.img" {
		t.Errorf("payload %+v", c.Payload)
	}
	if c.Serial.Mode != "File" || c.Serial.File != m.paths.Console || c.Console.Mode != "Off" || c.RNG.Src != "/dev/urandom" {
		t.Errorf("serial %+v console %+v rng %+v", c.Serial, c.Console, c.RNG)
	}
	if c.Vsock == nil || c.Vsock.CID < 3 || c.Vsock.Socket != m.paths.Vsock {
		t.Errorf("vsock %+v", c.Vsock)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("ping"))
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "ping" {
		t.Errorf("agent echo %q", got)
	}
	if tail := m.ConsoleTail(18); tail != "fake guest booted\n" {
		t.Errorf("ConsoleTail(18) = %q", tail)
	}
	for _, f := range []string{"events.json", "vmm.log"} {
		if _, err := os.Stat(filepath.Join(m.paths.Dir, f)); f == "vmm.log" && err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	pids, _ := os.ReadFile(filepath.Join(m.paths.Dir, vmstate.PidsFile))
	if want := fmt.Sprintf("%d\n", m.p.cmd.Process.Pid); string(pids) != want {
		t.Errorf("pids file %q, want %q", pids, want)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if m.Err() != nil {
		t.Errorf("Err after shutdown: %v", m.Err())
	}
	checkGone(t, m)
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
}

func TestBootCommandLine(t *testing.T) {
	got := vmmArgs(vmPaths{API: "/s/api.sock", Events: "/s/events.json"}, true)
	want := "--api-socket path=/s/api.sock --event-monitor path=/s/events.json --seccomp true -v"
	if strings.Join(got, " ") != want {
		t.Errorf("args %q, want %q", got, want)
	}
}

func TestBootFailures(t *testing.T) {
	cases := []struct {
		mode    string
		timeout time.Duration
		want    []string
	}{
		{"never-listen", 500 * time.Millisecond, []string{"wait for the API socket", "did not answer vmm.ping in time"}},
		{"exit-at-start", 0, []string{"exited before its api socket answered", "exit status 1", "Failed to open /dev/kvm"}},
		{"ping-fails", 0, []string{"chv: GET /api/v1/vmm.ping: 500 Internal Server Error: Error from API: API request send error"}},
		{"create-rejected", 0, []string{"boot box1 under cloud-hypervisor: create: chv: PUT /api/v1/vm.create: 400 Bad Request: Error from API: The VM could not be created: Error validating configuration: Invalid kernel path"}},
		{"boot-fails", 0, []string{"chv: PUT /api/v1/vm.boot: 500 Internal Server Error: Error from API: The VM could not boot: Cannot load the kernel into memory"}},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			d := fakeDriver(t, tc.mode)
			if tc.timeout > 0 {
				d.opts.SocketTimeout = tc.timeout
			}
			cfg := testConfig(t)
			start := time.Now()
			m, err := d.Boot(context.Background(), cfg)
			if err == nil {
				m.Kill()
				t.Fatal("boot succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			// Generous: these machines run other builds at the same time.
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("failure took %v", el)
			}
			// Nothing of the VM may remain: no socket, and (checked by
			// pgrep-free means) no child: the process table has no zombie
			// or live child of ours.
			for _, f := range []string{"api.sock", "vsock.sock"} {
				if _, err := os.Stat(filepath.Join(cfg.StateDir, f)); err == nil {
					t.Errorf("%s left behind", f)
				}
			}
			checkNoChildren(t)
			checkNoViolations(t, filepath.Join(cfg.StateDir, "vmm.log"))
		})
	}
}

// checkNoChildren asserts that this process has no child left (live or
// unreaped): every VMM and virtiofsd a test started was reaped.
func checkNoChildren(t *testing.T) {
	t.Helper()
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
	if !errors.Is(err, syscall.ECHILD) {
		t.Errorf("a child process remains (wait4: pid %d, %v)", pid, err)
	}
}

func TestCrashMidRun(t *testing.T) {
	m := bootFake(t, "crash-after-boot")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No agent in this mode: DialAgent must notice the VM died, not wait for ctx.
	_, err := m.DialAgent(ctx)
	if err == nil || !strings.Contains(err.Error(), "the VM stopped") {
		t.Fatalf("DialAgent on a crashing VM: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("DialAgent waited for its deadline")
	}
	<-m.Done()
	err = m.Err()
	for _, w := range []string{"exited unexpectedly", "exit status 1", "panicked at fake crash", "fake guest booted"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Err() = %v; want it to quote %q", err, w)
		}
	}
	checkGone(t, m)
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after crash: %v", err)
	}
}

func TestGuestPowerOffIsNotAnError(t *testing.T) {
	m := bootFake(t, "poweroff-after-boot")
	select {
	case <-m.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("VMM did not exit after guest power off")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after power off: %v", err)
	}
	checkGone(t, m)
}

func TestShutdownHangs(t *testing.T) {
	m := bootFake(t, "ignore-vmm-shutdown")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "killed it") {
		t.Fatalf("Shutdown of a VMM that ignores vmm.shutdown: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Shutdown took %v past a 700ms deadline", el)
	}
	if m.Err() != nil {
		t.Errorf("a kill we asked for is not a VM failure: %v", m.Err())
	}
	checkGone(t, m)
}

func TestDialAgentRetriesUntilListening(t *testing.T) {
	m := bootFake(t, "agent-late")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := DialHybrid(ctx, m.paths.Vsock, AgentPort); !errors.Is(err, ErrPortRefused) {
		t.Fatalf("early dial: %v, want ErrPortRefused", err)
	}
	c, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	m.Shutdown(ctx)
	checkGone(t, m)
}

func TestDialAgentDeadline(t *testing.T) {
	m := bootFake(t, "agent-late")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := m.DialAgent(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "vsock port 1024") {
		t.Fatalf("DialAgent past its deadline: %v", err)
	}
}

func TestKill(t *testing.T) {
	m := bootFake(t, "normal")
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if m.Err() != nil {
		t.Errorf("Err after Kill: %v", m.Err())
	}
	checkGone(t, m)
}

func TestNetworkNICIsRefusedBeforeStarting(t *testing.T) {
	d := fakeDriver(t, "normal")
	cfg := testConfig(t)
	cfg.NetworkSocket = filepath.Join(cfg.StateDir, "net.sock")
	_, err := d.Boot(context.Background(), cfg)
	if !errors.Is(err, ErrNetworkUnsupported) {
		t.Fatalf("err %v, want ErrNetworkUnsupported", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "vmm.log")); err == nil {
		t.Error("a process was started for a config that cannot boot")
	}
}

// TestNetworkForwarderPort checks the host end of the agent's TAP forwarder: what
// Cloud Hypervisor connects to when the guest dials host port NetPort reaches the
// network's socket, and is gone with the VM.
func TestNetworkForwarderPort(t *testing.T) {
	d := fakeDriver(t, "normal")
	cfg := testConfig(t)
	cfg.NetworkSocket = filepath.Join(t.TempDir(), "net.sock")
	cfg.NetworkAttach = runtime.AttachForwarder
	ln, err := net.Listen("unix", cfg.NetworkSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, err := d.boot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	port := m.paths.Vsock + "_1025"
	c, err := net.Dial("unix", port) // what Cloud Hypervisor does for the guest
	if err != nil {
		t.Fatalf("connect %s: %v", port, err)
	}
	c.Close()
	ln.(*net.UnixListener).SetDeadline(time.Now().Add(5 * time.Second))
	if a, err := ln.Accept(); err != nil {
		t.Fatalf("the network socket got no connection: %v", err)
	} else {
		a.Close()
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m)
	if _, err := os.Lstat(port); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after Kill: %v", port, err)
	}
}

func TestMissingBinary(t *testing.T) {
	d := New(Options{Binary: "cloud-hypervisor-does-not-exist"})
	_, err := d.Boot(context.Background(), testConfig(t))
	if err == nil || !strings.Contains(err.Error(), "cloud-hypervisor/releases") {
		t.Fatalf("err %v", err)
	}
}

func TestVersion(t *testing.T) {
	exe, _ := os.Executable()
	t.Setenv(fakeModeEnv, "normal")
	v, err := Version(context.Background(), exe)
	if err != nil || v != "v53.0-fake" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	checkNoChildren(t)
	t.Setenv(fakeModeEnv, "exit-at-start")
	if _, err := Version(context.Background(), exe); err == nil || !strings.Contains(err.Error(), "/dev/kvm") {
		t.Fatalf("Version of a VMM that exits: %v", err)
	}
}

func TestCIDsAreUniqueAndValid(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		c := nextCID()
		if c < 3 || c >= 0xFFFFFFFF || seen[c] {
			t.Fatalf("bad or repeated CID %d", c)
		}
		seen[c] = true
	}
	if got := cidOf(cidRange); got != 3 {
		t.Errorf("wrap: cidOf(cidRange) = %d, want 3", got)
	}
	if got := cidOf(cidRange - 1); got != 0xFFFFFFFE {
		t.Errorf("cidOf(cidRange-1) = %#x, want 0xfffffffe", got)
	}
}

func TestProbeBoot(t *testing.T) {
	ok, detail := fakeDriver(t, "normal").ProbeBoot(context.Background(), "/k", "/i")
	if !ok || !strings.Contains(detail, "guest agent answered") {
		t.Errorf("probe of a working VMM: %v %q", ok, detail)
	}
	ok, detail = fakeDriver(t, "exit-at-start").ProbeBoot(context.Background(), "/k", "/i")
	if ok || !strings.Contains(detail, "/dev/kvm") {
		t.Errorf("probe of a VMM without KVM: %v %q", ok, detail)
	}
	ok, detail = fakeDriver(t, "crash-after-boot").ProbeBoot(context.Background(), "/k", "/i")
	if ok || !strings.Contains(detail, "exited unexpectedly") {
		t.Errorf("probe of a crashing guest: %v %q", ok, detail)
	}
	checkNoChildren(t)
}

func TestLookBinaryNamesItOnce(t *testing.T) {
	_, err := lookBinary("voidbox-no-such-vmm")
	if err == nil || strings.Count(err.Error(), "voidbox-no-such-vmm") != 1 || !strings.Contains(err.Error(), "is not on $PATH") {
		t.Fatalf("lookBinary(missing) = %v; want the binary named once and $PATH named", err)
	}
}

// A guest that floods its console is stopped once the file passes ConsoleLimit,
// with an error saying so, instead of filling the host's disk.
func TestConsoleFloodStopsVM(t *testing.T) {
	old := ConsoleLimit
	ConsoleLimit = 1 << 20
	t.Cleanup(func() { ConsoleLimit = old })
	m := bootFake(t, "console-flood")
	select {
	case <-m.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("a flooding guest was not stopped")
	}
	err := m.Err()
	if err == nil || !strings.Contains(err.Error(), "console passed 1048576 bytes") || !strings.Contains(err.Error(), "flood flood") {
		t.Fatalf("Err() = %v; want the console cap named and the console quoted", err)
	}
	if st, statErr := os.Stat(m.paths.Console); statErr == nil && st.Size() > 64<<20 {
		t.Errorf("console grew to %d bytes", st.Size())
	}
	checkGone(t, m)
}

func TestStateDirWithCommaRefused(t *testing.T) {
	_, err := pathsIn("/tmp/a,b/voidbox-1-x")
	if err == nil || !strings.Contains(err.Error(), `"/tmp/a,b/voidbox-1-x" contains a comma`) || !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("pathsIn(comma) = %v; want a clear refusal naming the dir and TMPDIR", err)
	}
}
