package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
)

// poweroffWait bounds how long a guest may take to power itself off once the session ends.
const poweroffWait = 30 * time.Second

// TestAgentInRealVM boots the agent as /init of the real guest image through the qemu
// driver (TCG) and drives it through proto.Client, then checks both ways a session
// ends: in each, the guest must power itself off cleanly with no help from the host.
func TestAgentInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	t.Run("shutdown", func(t *testing.T) {
		m, client := bootAgent(t, vmm, img)
		checkSession(t, client)
		if err := client.Shutdown(context.Background()); err != nil {
			t.Fatalf("shutdown request: %v", err)
		}
		waitPoweroff(t, m, "after the shutdown request")
		console := m.ConsoleTail(64 << 10)
		for _, want := range []string{"voidbox-agent: ", `exec ["sh" "-c"`, `exec "wget" refused`, "powering off"} {
			if !strings.Contains(console, want) {
				t.Errorf("console lacks %q", want)
			}
		}
	})
	t.Run("host-closes", func(t *testing.T) {
		m, client := bootAgent(t, vmm, img)
		if err := client.Ping(context.Background()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		client.Close()
		waitPoweroff(t, m, "when the host closed the session")
		if console := m.ConsoleTail(64 << 10); !strings.Contains(console, "host closed the session") {
			t.Error("console does not say the host closed the session")
		}
	})
}

// bootAgent boots one VM around the agent and opens an authenticated session with it.
// Its cleanup kills the VM only if the test left it running (a failure), and then
// insists that no QEMU process of it remains.
func bootAgent(t *testing.T, vmm *qemu.VMM, img guestimage.Image) (*qemu.Machine, *proto.Client) {
	t.Helper()
	m, client, _, _ := bootAgentSecret(t, vmm, img)
	return m, client
}

// bootAgentSecret is bootAgent that also returns the VM's secret and its
// voidbox.boot= word, for tests that look for them where they must not be.
func bootAgentSecret(t *testing.T, vmm *qemu.VMM, img guestimage.Image) (m *qemu.Machine, client *proto.Client, secret, bootArg string) {
	t.Helper()
	// A short state dir: the driver's unix sockets must stay under 108 bytes.
	stateDir, err := vmstate.NewDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	secret, err = proto.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	bootArg, err = proto.BootConfig{Secret: secret, Hostname: "vmtest", Allow: []string{"sh", "cat", "id", "grep"},
		Rlimits: proto.Rlimits{NOFILE: 256}, UnixTime: time.Now().Unix(), Debug: true}.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	m, err = vmm.BootMachine(ctx, runtime.VMConfig{Name: "agent-" + t.Name(), Kernel: img.Kernel, Initramfs: img.Initramfs,
		Cmdline: bootArg, MemoryMB: 256, VCPUs: 1, StateDir: stateDir})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	// The QEMU command line names the driver's own state dir, not the caller's.
	marker := m.StateDir()
	if len(vmtest.VMProcesses(marker)) == 0 {
		_ = m.Kill()
		t.Fatalf("no QEMU process names the state dir %s: the final no-VM-left check would prove nothing", marker)
	}
	cleanUpVM(t, m, marker)
	begin := time.Now()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	client, err = proto.Connect(ctx, conn, secret)
	if err != nil {
		conn.Close()
		t.Fatalf("connect: %v", err)
	}
	t.Logf("session up %v after boot", time.Since(begin))
	return m, client, secret, bootArg
}

// checkSession exercises what a stage relies on: the exec sandbox (uid, no_new_privs,
// seccomp, rlimits, hostname, hidden boot secret), the allow list and the file roots.
func checkSession(t *testing.T, client *proto.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	res, err := client.Exec(ctx, proto.ExecRequest{Args: []string{"sh", "-c",
		"id -u; hostname; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n; cat /proc/cmdline | wc -c; cat"},
		Stdin: strings.NewReader("from-stdin\n"), Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v stderr=%q", res, err, errb.String())
	}
	if want := "1000\nvmtest\nNoNewPrivs:\t1\nSeccomp:\t2\n256\n0\nfrom-stdin\n"; out.String() != want {
		t.Errorf("guest exec output\n%q\nwant\n%q", out.String(), want)
	}
	_, err = client.Exec(ctx, proto.ExecRequest{Args: []string{"wget", "http://x"}})
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != proto.CodeNotAllowed {
		t.Errorf("wget is not in the allow list, want a %s error; got %v", proto.CodeNotAllowed, err)
	}
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300000)
	if err := client.WriteFile(ctx, "/workspace/in/data.bin", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := client.ReadFile(ctx, "/workspace/in/data.bin"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("file round trip in the VM: %d bytes of %d, %v", len(got), len(data), err)
	}
	if _, err := client.ReadFile(ctx, "/etc/passwd"); !errors.As(err, &re) || re.Code != proto.CodeBadPath {
		t.Errorf("/etc/passwd is outside the roots, want a %s error; got %v", proto.CodeBadPath, err)
	}
}

// waitPoweroff waits for the guest to power itself off: the host neither shuts the
// machine down nor kills it, so a nil Err means the guest ended cleanly on its own.
func waitPoweroff(t *testing.T, m *qemu.Machine, when string) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(poweroffWait):
		t.Fatalf("VM did not power off within %s %s", poweroffWait, when)
	}
	if err := m.Err(); err != nil {
		t.Fatalf("VM ended %s with an error, want a clean poweroff: %v", when, err)
	}
}

// cleanUpVM registers the end of a test's VM: killed if still running, its console
// logged when the test failed, and no VMM process left that names marker.
func cleanUpVM(t *testing.T, m *qemu.Machine, marker string) {
	t.Cleanup(func() {
		select {
		case <-m.Done():
		default:
			_ = m.Kill()
		}
		if t.Failed() {
			t.Logf("vm err: %v\nconsole:\n%s", m.Err(), m.ConsoleTail(16<<10))
		}
		vmtest.WaitNoVMs(t, marker, 10*time.Second)
	})
}
