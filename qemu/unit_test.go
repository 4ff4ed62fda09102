package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

func argString(t *testing.T, cfg runtime.VMConfig, l launch) string {
	t.Helper()
	args, err := buildArgs(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(args, " ")
}

func TestBuildArgs(t *testing.T) {
	cfg := runtime.VMConfig{Name: "a,b", Kernel: "/k", Initramfs: "/i", Cmdline: "voidbox.boot=x -- y", MemoryMB: 512, VCPUs: 2}
	got := argString(t, cfg, launch{accel: "tcg", dir: "/s", tscKHz: 2445400})
	for _, want := range []string{
		"-M microvm,x-option-roms=off,isa-serial=on,rtc=on -name voidbox-a_b",
		"-accel tcg -cpu max -smp 2 -m 512M",
		"-nodefaults -no-user-config -nographic -no-reboot -sandbox on,",
		"-global virtio-mmio.force-legacy=false",
		"-append console=ttyS0 reboot=k panic=-1 tsc_early_khz=2445400 voidbox.boot=x -- y -chardev",
		"-chardev socket,id=console,path=/s/console.sock -serial chardev:console",
		"-chardev socket,id=qmp,path=/s/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-device virtio-serial-device,max_ports=2 -chardev socket,id=agent,path=/s/agent.sock,server=on,wait=off -device virtserialport,chardev=agent,name=voidbox.agent",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "memory-backend") || strings.Contains(got, "netdev") || strings.Contains(got, "-fw_cfg") || strings.Contains(got, "-runas") {
		t.Errorf("args without shares or network carry their devices:\n%s", got)
	}

	cfg.Shares = []runtime.Share{{Tag: "data", HostPath: "/h"}}
	cfg.NetworkSocket, cfg.MAC = "/n.sock", "52:54:00:12:34:56"
	got = argString(t, cfg, launch{accel: "kvm", dir: "/s", vsockCID: 7})
	for _, want := range []string{
		"-M microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem",
		"-accel kvm -cpu host",
		"-object memory-backend-memfd,id=mem,size=512M,share=on",
		"-device vhost-vsock-device,guest-cid=7",
		"-chardev socket,id=fs0,path=/s/fs0.sock -device vhost-user-fs-device,chardev=fs0,tag=data",
		"-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/n.sock -device virtio-net-device,netdev=n0,mac=52:54:00:12:34:56",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "virtio-serial") || strings.Contains(got, "tsc_early_khz") {
		t.Errorf("vsock/KVM args still carry virtio-serial or the TCG TSC hint:\n%s", got)
	}
}

func TestBuildArgsForwarder(t *testing.T) {
	cfg := runtime.VMConfig{Name: "x", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1,
		NetworkSocket: "/s/net.sock", NetworkAttach: runtime.AttachForwarder}
	got := argString(t, cfg, launch{accel: "tcg", dir: "/s"})
	for _, want := range []string{
		"-device virtio-serial-device,max_ports=3",
		"-chardev socket,id=net,path=/s/net.sock,server=off -device virtserialport,chardev=net,name=voidbox.net",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("forwarder args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "netdev") || strings.Contains(got, "virtio-net") {
		t.Errorf("the forwarder attachment also got a NIC:\n%s", got)
	}
	if _, err := buildArgs(cfg, launch{accel: "kvm", dir: "/s", vsockCID: 7}); err == nil || !strings.Contains(err.Error(), "virtio-serial") {
		t.Errorf("forwarder with vhost-vsock: got %v, want a refusal naming the virtio-serial channel it needs", err)
	}
}

func TestBuildArgsRejects(t *testing.T) {
	base := runtime.VMConfig{Name: "x", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1}
	cases := map[string]func(c *runtime.VMConfig){
		"Kernel and Initramfs": func(c *runtime.VMConfig) { c.Kernel = "" },
		"VCPUs 0":              func(c *runtime.VMConfig) { c.VCPUs = 0 },
		"tag":                  func(c *runtime.VMConfig) { c.Shares = []runtime.Share{{Tag: "a,b", HostPath: "/"}} },
		"MAC":                  func(c *runtime.VMConfig) { c.NetworkSocket = "/n" },
		"not a MAC address":    func(c *runtime.VMConfig) { c.NetworkSocket, c.MAC = "/n", "52:54:00:12:34:56,x=y" },
	}
	for want, mutate := range cases {
		c := base
		mutate(&c)
		if _, err := buildArgs(c, launch{accel: "tcg", dir: "/s"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: buildArgs error = %v", want, err)
		}
	}
	if _, err := buildArgs(base, launch{accel: "hvf", dir: "/s"}); err == nil {
		t.Error("accepted accelerator hvf")
	}
}

func TestNewAccel(t *testing.T) {
	t.Setenv(EnvAccel, "tcg")
	v, err := New(Options{})
	if err != nil || v.Name() != "qemu/tcg" {
		t.Fatalf("New with %s=tcg: %v, %v", EnvAccel, v, err)
	}
	if v, err := New(Options{Accel: "kvm"}); err != nil || v.Name() != "qemu/kvm" {
		t.Fatalf("explicit Accel must beat the environment: %v, %v", v, err)
	}
	t.Setenv(EnvAccel, "")
	if v, err := New(Options{}); err != nil || v.Name() != "qemu/auto" {
		t.Fatalf("default accel: %v, %v", v, err)
	}
	if _, err := New(Options{Accel: "fast"}); err == nil || !strings.Contains(err.Error(), "auto, kvm, tcg") {
		t.Fatalf("New(fast) = %v; want the valid choices listed", err)
	}
}

// fakeQMP serves one QMP session the way QEMU does: greeting, capabilities,
// an interleaved event, then a reply.
func fakeQMP(t *testing.T, reply string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "q.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		rd := bufio.NewReader(c)
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		rd.ReadString('\n')
		c.Write([]byte(`{"return": {}}` + "\n"))
		rd.ReadString('\n')
		c.Write([]byte(`{"event": "RESUME", "timestamp": {}}` + "\n"))
		c.Write([]byte(reply + "\n"))
	}()
	return sock
}

func TestQMPCommand(t *testing.T) {
	sock := fakeQMP(t, `{"return": {"running": true, "status": "running"}}`)
	raw, err := qmpCommand(context.Background(), sock, "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("status %+v, %v", st, err)
	}
	sock = fakeQMP(t, `{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}`)
	if _, err := qmpCommand(context.Background(), sock, "nope", nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") {
		t.Fatalf("QMP error reply gave %v", err)
	}
}

func TestParseCPUInfoTSC(t *testing.T) {
	info := "processor\t: 0\ncpu MHz\t\t: 2445.400\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n"
	if got := parseCPUInfoTSC(bufio.NewScanner(strings.NewReader(info))); got != 2445400 {
		t.Fatalf("tsc kHz = %d, want 2445400", got)
	}
	noConst := strings.Replace(info, " constant_tsc", "", 1)
	if got := parseCPUInfoTSC(bufio.NewScanner(strings.NewReader(noConst))); got != 0 {
		t.Fatalf("without constant_tsc got %d, want 0 (let the guest calibrate)", got)
	}
}

func FuzzDecodeQMP(f *testing.F) {
	f.Add([]byte(`{"QMP": {"version": {}}}`))
	f.Add([]byte(`{"error": {"class": "X", "desc": "y"}}`))
	f.Add([]byte(`{"return": {}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := decodeQMP(line)
		if err == nil && r.Error != nil && r.Return != nil && r.Event != "" {
			_ = r.Error.Desc // reachable without panicking
		}
	})
}
