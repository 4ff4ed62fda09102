package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
)

// open boots a sandbox for spec and registers its teardown, which also checks that no
// VM process or state dir of it is left.
func open(t *testing.T, spec runtime.SandboxSpec) *Sandbox {
	t.Helper()
	return openOn(t, vmtest.TCG(t), spec)
}

func openOn(t *testing.T, vmm runtime.VMM, spec runtime.SandboxSpec) *Sandbox {
	t.Helper()
	img := vmtest.Image(t)
	p, err := New(Options{VMM: vmm, Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		t.Fatal(err)
	}
	return openWith(t, p, spec)
}

func openWith(t *testing.T, p *Provider, spec runtime.SandboxSpec) *Sandbox {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "t"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb, err := p.Open(ctx, spec)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	s := sb.(*Sandbox)
	// The VMM's command line names the driver's state dir (QEMU's own, where its
	// sockets live; Cloud Hypervisor's is the sandbox's).
	vmDir := s.stateDir
	if qm, ok := s.machine.(*qemu.Machine); ok {
		vmDir = qm.StateDir()
	}
	if len(vmtest.VMProcesses(vmDir)) != 1 {
		t.Fatalf("no QEMU process found for %s: the leak check below would prove nothing", vmDir)
	}
	t.Cleanup(func() {
		s.Close()
		vmtest.WaitNoVMs(t, vmDir, 10*time.Second)
		for _, dir := range []string{s.stateDir, vmDir} {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state dir %s still exists after Close (stat: %v)", dir, err)
			}
		}
	})
	return s
}

func run(t *testing.T, s *Sandbox, stdin string, args ...string) (stdout, stderr string, res runtime.ExecResult) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Exec(ctx, runtime.ExecRequest{Args: args, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %q: %v", args, err)
	}
	return out.String(), errb.String(), res
}

// One VM serves several checks: each boot costs seconds under TCG.
func TestGuestBasics(t *testing.T) {
	vmtest.Require(t)
	t.Run("qemu", func(t *testing.T) { testGuestBasics(t, vmtest.TCG(t)) })
	t.Run("cloud-hypervisor", func(t *testing.T) { testGuestBasics(t, vmtest.CloudHypervisor(t, vmtest.Image(t))) })
}

func testGuestBasics(t *testing.T, vmm runtime.VMM) {
	s := openOn(t, vmm, runtime.SandboxSpec{Name: "basics", MemoryMB: 256})
	img := vmtest.Image(t)

	t.Run("uname is the guest kernel", func(t *testing.T) {
		out, _, _ := run(t, s, "", "uname", "-r")
		host, _ := exec.Command("uname", "-r").Output()
		if strings.TrimSpace(out) != img.Release || strings.TrimSpace(out) == strings.TrimSpace(string(host)) {
			t.Fatalf("guest uname -r = %q; image release %q, host %q", out, img.Release, host)
		}
	})
	t.Run("unprivileged stage user and hostname", func(t *testing.T) {
		out, _, _ := run(t, s, "", "sh", "-c", "id -u; hostname; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status")
		want := "1000\nbasics\nNoNewPrivs:\t1\nSeccomp:\t2\n"
		if out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
	})
	t.Run("exit code and stderr", func(t *testing.T) {
		out, errOut, res := run(t, s, "", "sh", "-c", "echo out; echo err >&2; exit 7")
		if res.ExitCode != 7 || out != "out\n" || errOut != "err\n" {
			t.Fatalf("exit %d stdout %q stderr %q", res.ExitCode, out, errOut)
		}
	})
	t.Run("stdin and input file", func(t *testing.T) {
		if err := s.WriteFile(context.Background(), "/workspace/input", []byte("from file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, _, _ := run(t, s, "from stdin\n", "sh", "-c", "tr a-z A-Z; cat /workspace/input")
		if out != "FROM STDIN\nfrom file\n" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("binary file round trip", func(t *testing.T) {
		data := make([]byte, 3<<20+17)
		rand.Read(data)
		data[0], data[1] = 0, '\n'
		ctx := context.Background()
		if err := s.WriteFile(ctx, "/workspace/blob", data, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := s.ReadFile(ctx, "/workspace/blob")
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("read back %d bytes (err %v), wrote %d", len(back), err, len(data))
		}
		sum := sha256.Sum256(data)
		out, _, _ := run(t, s, "", "sha256sum", "/workspace/blob")
		if !strings.HasPrefix(out, hex.EncodeToString(sum[:])) {
			t.Fatalf("guest sha256 %q, host %x", out, sum)
		}
	})
	t.Run("path escapes refused", func(t *testing.T) {
		run(t, s, "", "ln", "-s", "/etc", "/workspace/etc")
		ctx := context.Background()
		for _, p := range []string{"/etc/passwd", "/workspace/../etc/passwd", "/workspace/etc/passwd", "../x"} {
			_, err := s.ReadFile(ctx, p)
			var remote *proto.RemoteError
			if !errors.As(err, &remote) {
				t.Errorf("ReadFile(%q) = %v, want a refusal from the agent", p, err)
			}
			if err := s.WriteFile(ctx, p, []byte("x"), 0o644); err == nil {
				t.Errorf("WriteFile(%q) succeeded", p)
			}
		}
	})
	t.Run("exec timeout kills the process group", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", "sleep 300 & sleep 300"}, Timeout: 2 * time.Second})
		if err != nil || !res.TimedOut {
			t.Fatalf("res %+v err %v after %s", res, err, time.Since(start))
		}
		out, _, _ := run(t, s, "", "sh", "-c", "ps -o comm | grep -c sleep || true")
		if strings.TrimSpace(out) != "0" {
			t.Fatalf("sleep processes left in the guest: %q", out)
		}
	})
	t.Run("64 MiB of stdout streamed intact", func(t *testing.T) {
		const size = 64 << 20
		h := sha256.New()
		var n countWriter
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", "yes voidbox | head -c 67108864"}, Stdout: io.MultiWriter(h, &n)})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("res %+v err %v", res, err)
		}
		want := sha256.Sum256(bytes.Repeat([]byte("voidbox\n"), size/8))
		if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("got %d bytes, sha256 %x; want %d bytes, %x", n, h.Sum(nil), size, want)
		}
	})
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func TestAllowListRefusesOtherCommands(t *testing.T) {
	s := open(t, runtime.SandboxSpec{Name: "allow", Allow: []string{"cat", "echo"}})
	out, _, res := run(t, s, "", "echo", "allowed")
	if out != "allowed\n" || res.ExitCode != 0 {
		t.Fatalf("allowed command: %q %+v", out, res)
	}
	_, err := s.Exec(context.Background(), runtime.ExecRequest{Args: []string{"sh", "-c", "id"}})
	if err == nil || !strings.Contains(err.Error(), `command "sh" is not allowed by this box's allow list [cat echo]`) {
		t.Fatalf("sh under allow=[cat echo]: %v", err)
	}
}

func TestUnsupportedCapabilitiesRefusedBeforeBoot(t *testing.T) {
	p, err := New(Options{VMM: fakeVMM{}, Kernel: "/dev/null", Initramfs: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []runtime.SandboxSpec{
		{Name: "e", Network: true, Egress: []string{"bad entry"}},
		{Name: "i", Image: "alpine:3"},
		{Name: "s", Skills: []runtime.Skill{{Kind: runtime.SkillCLI, Name: "git"}}},
	} {
		_, err := p.Open(context.Background(), spec)
		if !errors.Is(err, runtime.ErrUnsupported) && spec.Name != "e" || err == nil || !strings.Contains(err.Error(), "box "+spec.Name+":") {
			t.Errorf("spec %+v: err %v", spec, err)
		}
	}
}

// Host paths of mounts are checked before anything boots.
func TestMountHostPathsCheckedBeforeBoot(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(home+"/.voidbox/oci", 0o700)
	os.WriteFile(home+"/file", nil, 0o600)
	os.Symlink("/", home+"/toroot")
	p, err := New(Options{VMM: fakeVMM{}, Kernel: "/dev/null", Initramfs: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		mode runtime.MountMode
		want string
	}{
		{home + "/missing", runtime.MountRO, "does not exist"},
		{home + "/file", runtime.MountRO, "is not a directory"},
		{"/", runtime.MountRO, "root directory cannot be shared"},
		{home + "/toroot", runtime.MountRO, "root directory cannot be shared"},
		{home + "/.voidbox/oci", runtime.MountRO, "voidbox's own state"},
		{home, runtime.MountRW, "holds voidbox's own state"},
	} {
		spec := runtime.SandboxSpec{Name: "m", Mounts: []runtime.Mount{{Host: tc.host, Guest: "/data", Mode: tc.mode}}}
		_, err := p.Open(context.Background(), spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "box m: mount "+tc.host) {
			t.Errorf("mount %s (%s): err %v, want one naming the mount and %q", tc.host, tc.mode, err, tc.want)
		}
	}
}

// fakeVMM fails the test if anything boots: refusals must come first.
type fakeVMM struct{}

func (fakeVMM) Name() string { return "fake" }
func (fakeVMM) Boot(context.Context, runtime.VMConfig) (runtime.Machine, error) {
	return nil, errNothingBoots
}

var errNothingBoots = errors.New("fakeVMM: nothing should boot")

func TestHostnameFromStageName(t *testing.T) {
	for in, want := range map[string]string{"sort_lines": "sort-lines", "a.b-c9": "a.b-c9", strings.Repeat("x", 70): strings.Repeat("x", 63)} {
		if got := hostname(in); got != want {
			t.Errorf("hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

// A stage writing to an rw mount runs as the user who invoked voidbox (through
// sudo), so its files on the host are that user's; as plain root, the default
// stage user (never root).
func TestRWMountStageUser(t *testing.T) {
	p, err := New(Options{VMM: fakeVMM{}, Kernel: "/dev/null", Initramfs: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		sudoUID, sudoGID string
		mode             runtime.MountMode
		wantUID, wantGID int
	}{
		{"1234", "1235", runtime.MountRW, 1234, 1235},
		{"1234", "1235", runtime.MountRO, 0, 0},
		{"0", "0", runtime.MountRW, 0, 0},
	} {
		t.Setenv("SUDO_UID", tc.sudoUID)
		t.Setenv("SUDO_GID", tc.sudoGID)
		fs, err := p.openFS(context.Background(), runtime.SandboxSpec{Name: "m", Mounts: []runtime.Mount{{Host: dir, Guest: "/out", Mode: tc.mode}}})
		if err != nil {
			t.Fatal(err)
		}
		want := [2]int{tc.wantUID, tc.wantGID}
		if os.Getuid() != 0 && tc.wantUID == 0 && tc.mode == runtime.MountRW {
			want = [2]int{os.Getuid(), os.Getgid()}
		}
		if os.Getuid() != 0 && tc.mode == runtime.MountRW && tc.sudoUID != "0" {
			want = [2]int{os.Getuid(), os.Getgid()} // sudo is only looked at as root
		}
		if got := [2]int{fs.uid, fs.gid}; got != want {
			t.Errorf("SUDO_UID=%s %s mount: stage ids %v, want %v", tc.sudoUID, tc.mode, got, want)
		}
	}
}
