package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guestimage"
)

// syncBuffer collects the console while QEMU writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAgentInRealVM boots the agent as /init of the real guest image under QEMU/TCG
// with a virtio-serial agent port, and drives it through proto.Client.
func TestAgentInRealVM(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real VM boot; run without -short")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	dir := t.TempDir()
	agentBin := filepath.Join(dir, "voidbox-agent")
	build := exec.Command("go", "build", "-trimpath", "-o", agentBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	img, err := guestimage.Build(ctx, guestimage.BuildOptions{AgentPath: agentBin, CacheDir: filepath.Join(dir, "image"),
		DebDir: filepath.Join(os.TempDir(), "voidbox_test_debs")})
	if err != nil {
		t.Skipf("cannot build the guest image here (needs the Debian mirror): %v", err)
	}
	// The two ways a session ends: the host asks for a shutdown, or the host goes away.
	t.Run("shutdown", func(t *testing.T) { runVM(t, qemu, img, true) })
	t.Run("host-closes", func(t *testing.T) { runVM(t, qemu, img, false) })
}

func runVM(t *testing.T, qemu string, img guestimage.Image, full bool) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	secret, _ := proto.NewSecret()
	bootArg, err := proto.BootConfig{Secret: secret, Hostname: "vmtest", Allow: []string{"sh", "cat", "id", "grep"},
		Rlimits: proto.Rlimits{NOFILE: 256}, UnixTime: time.Now().Unix(), Debug: true}.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	consolePath := filepath.Join(dir, "console.log")
	var qemuOut syncBuffer
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-cpu", "max", "-m", "512",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "file:"+consolePath,
		"-global", "virtio-mmio.force-legacy=false",
		"-kernel", img.Kernel, "-initrd", img.Initramfs,
		"-append", "console=ttyS0 reboot=k panic=-1 "+tscHint()+bootArg,
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=ag,path="+sock+",server=on,wait=off",
		"-device", "virtserialport,chardev=ag,name="+proto.SerialPortName)
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(consolePath)
			t.Logf("qemu: %s\nconsole:\n%s", qemuOut.String(), b)
		}
	}()

	var conn net.Conn
	for conn == nil {
		if conn, err = net.Dial("unix", sock); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("agent socket never appeared: %v", err)
			}
			conn = nil
			time.Sleep(20 * time.Millisecond)
		}
	}
	begin := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
	client, err := proto.Connect(cctx, conn, secret)
	ccancel()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Logf("session up %v after connecting", time.Since(begin))

	if !full {
		if err := client.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		client.Close()
		select {
		case <-exited:
			exited <- nil
		case <-time.After(30 * time.Second):
			t.Fatal("VM did not power off when the host closed the session")
		}
		if b, _ := os.ReadFile(consolePath); !bytes.Contains(b, []byte("host closed the session")) {
			t.Error("console does not say the host closed the session")
		}
		return
	}
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
		t.Errorf("wget not in the allow list: err %v", err)
	}
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300000)
	if err := client.WriteFile(ctx, "/workspace/in/data.bin", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := client.ReadFile(ctx, "/workspace/in/data.bin"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("file round trip in the VM: %d bytes, %v", len(got), err)
	}
	if _, err := client.ReadFile(ctx, "/etc/passwd"); !errors.As(err, &re) || re.Code != proto.CodeBadPath {
		t.Errorf("/etc/passwd must be outside the roots: %v", err)
	}
	if err := client.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		exited <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("VM did not power off after Shutdown")
	}
	b, _ := os.ReadFile(consolePath)
	for _, want := range []string{"voidbox-agent: ", `exec ["sh" "-c"`, `exec "wget" refused`, "powering off"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// tscHint tells a TCG guest the host TSC rate: on a loaded host the 6.1 kernel cannot
// calibrate it against the emulated PIT and hangs before "Calibrating delay loop"
// (the qemu driver does the same; see qemu/tsc.go).
func tscHint() string {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		return "tsc_early_khz=" + strings.TrimSpace(string(b)) + " "
	}
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && mhz > 0 {
				return fmt.Sprintf("tsc_early_khz=%d ", int(mhz*1000))
			}
		}
	}
	return ""
}
