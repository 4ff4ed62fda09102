package main

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
)

// TestFileSystemsInRealVM boots the agent with a box's file systems and checks from a
// stage what package rootfs mounted before the first exec: an image's ext4 disk as the
// stages' root (with a network, so its /etc gets the resolver), a skill disk, virtio-fs
// shares read-only and read-write; the same mounts in the initramfs when there is no
// image; and a boot whose share does not exist, which must fail naming it.
func TestFileSystemsInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	if _, err := os.Stat(qemu.DefaultVirtiofsd); err != nil {
		t.Fatalf("the virtio-fs checks need %s (apt-get install qemu-system-common): %v", qemu.DefaultVirtiofsd, err)
	}
	dir := t.TempDir()
	root := buildExt4(t, dir, "root", map[string]string{
		"bin/imagehello": "#!/bin/sh\necho hello from the image\n",
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\nstage:x:1000:1000:stage:/workspace:/bin/sh\n",
		"etc/marker":     "image etc\n",
	}, "scratch")
	skill := buildExt4(t, dir, "skill", map[string]string{"bin/skilltool": "#!/bin/sh\necho skill tool ran\n"})
	data, out := shareDir(t, "in.txt", "from the host\n"), shareDir(t, "", "")
	disks := []runtime.Disk{{ID: "root", Path: root, ReadOnly: true}, {ID: "skill", Path: skill, ReadOnly: true}}
	rootSum := fileSum(t, root)

	t.Run("image-root", func(t *testing.T) {
		n := testNetwork(t)
		boot := proto.BootConfig{Root: "root", Limits: proto.Limits{TmpMB: 32}, Mounts: []proto.Mount{
			{Kind: proto.MountDisk, Source: "skill", Path: "/opt/skill", ReadOnly: true},
			{Kind: proto.MountVirtiofs, Source: "data", Path: "/data", ReadOnly: true},
			{Kind: proto.MountVirtiofs, Source: "out", Path: "/workspace/out"},
		}}
		shares := []runtime.Share{{Tag: "data", HostPath: data, ReadOnly: true}, {Tag: "out", HostPath: out}}
		m, client := bootWith(t, vmm, img, boot, runtime.VMConfig{Disks: disks, Shares: shares}, n)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := client.WriteFile(ctx, "/workspace/input", []byte("stage input\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got := stageRun(ctx, t, client, nil, `imagehello; cat /workspace/input; ls /; test -e /init && echo has-init
cat /etc/marker /etc/resolv.conf; echo "$PATH"; id -u
touch /rootfile 2>&1; echo overlay > /scratch/f && cat /scratch/f
/opt/skill/bin/skilltool; touch /opt/skill/x 2>&1
cat /data/in.txt; { echo no > /data/new; } 2>&1
echo from-guest > /workspace/out/result && echo wrote; true`)
		want := `hello from the image
stage input
bin
data
dev
etc
lost+found
opt
proc
scratch
sys
tmp
workspace
image etc
nameserver ` + n.Guest().DNS.String() + `
/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
1000
touch: /rootfile: Permission denied
overlay
skill tool ran
touch: /opt/skill/x: Read-only file system
from the host
sh: can't create /data/new: Read-only file system
wrote
`
		if got != want {
			t.Errorf("a stage in the image's root sees:\n%s\nwant:\n%s", got, want)
		}
		// The agent's /workspace is the stage's: the share under it is the agent's too.
		if b, err := client.ReadFile(ctx, "/workspace/out/result"); err != nil || string(b) != "from-guest\n" {
			t.Errorf("the agent reads /workspace/out/result as %q, %v; want the stage's write", b, err)
		}
		if console := m.ConsoleTail(64 << 10); !strings.Contains(console, `file systems: stage root /run/voidbox/root is root disk "root" (/dev/vd`) ||
			!strings.Contains(console, `disk "skill" at /opt/skill (read-only) from /dev/vd`) {
			t.Errorf("console does not say what was mounted:\n%s", console)
		}
		shutdown(t, client, m)
		checkHostFile(t, filepath.Join(out, "result"), "from-guest\n")
		if _, err := os.Stat(filepath.Join(data, "new")); err == nil {
			t.Error("a write under the read-only share reached the host")
		}
		if fileSum(t, root) != rootSum {
			t.Error("the image's disk changed on the host: stage writes must stay in the overlay")
		}
	})

	t.Run("initramfs", func(t *testing.T) {
		boot := proto.BootConfig{Mounts: []proto.Mount{
			{Kind: proto.MountVirtiofs, Source: "data", Path: "/data", ReadOnly: true},
			{Kind: proto.MountVirtiofs, Source: "out", Path: "/out"},
			{Kind: proto.MountDisk, Source: "skill", Path: "/opt/skill", ReadOnly: true},
		}}
		shares := []runtime.Share{{Tag: "data", HostPath: data, ReadOnly: true}, {Tag: "out", HostPath: out}}
		m, client := bootWith(t, vmm, img, boot, runtime.VMConfig{Disks: disks[1:], Shares: shares}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		got := stageRun(ctx, t, client, nil, `test -x /init && echo has-init
cat /data/in.txt; { echo no > /data/new; } 2>&1; stat -c '%a %u' /data /out /opt/skill
echo second > /out/second && echo wrote; /opt/skill/bin/skilltool; true`)
		want := `has-init
from the host
sh: can't create /data/new: Read-only file system
755 0
777 0
755 0
wrote
skill tool ran
`
		if got != want {
			t.Errorf("a stage in the initramfs sees:\n%s\nwant:\n%s", got, want)
		}
		if console := m.ConsoleTail(64 << 10); !strings.Contains(console, `file systems: stages run in the initramfs; virtiofs share "data" at /data (read-only)`) {
			t.Errorf("console does not say what was mounted:\n%s", console)
		}
		shutdown(t, client, m)
		checkHostFile(t, filepath.Join(out, "second"), "second\n")
	})

	t.Run("missing-share", func(t *testing.T) {
		// The VM has no share with the tag the boot config names: the boot fails (no
		// session), the console naming the mount.
		boot := proto.BootConfig{Mounts: []proto.Mount{{Kind: proto.MountVirtiofs, Source: "nope", Path: "/data", ReadOnly: true}}}
		m := startVM(t, vmm, img, &boot, runtime.VMConfig{}, nil)
		select {
		case <-m.Done():
		case <-time.After(runtime.BootTimeout):
			t.Fatalf("the guest did not power off within %v after a failed mount", runtime.BootTimeout)
		}
		console := m.ConsoleTail(64 << 10)
		if !strings.Contains(console, `fatal: mount virtiofs share "nope" at /data (read-only): virtiofs nope on /data`) ||
			!strings.Contains(console, "the VMM has no virtio-fs share with this tag") {
			t.Errorf("console does not name the failed mount:\n%s", console)
		}
	})
}

// buildExt4 makes DIR/name.ext4 with mkfs.ext4 -d from a tree holding a static busybox
// (as /bin/busybox, with /bin/sh and the applets the checks use linked to it), files
// (mode 0755) and world-writable dirs.
func buildExt4(t *testing.T, dir, name string, files map[string]string, openDirs ...string) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatalf("needs mkfs.ext4 (apt-get install e2fsprogs): %v", err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("needs a static /bin/busybox (apt-get install busybox-static): %v", err)
	}
	tree := filepath.Join(dir, name+".tree")
	files["bin/busybox"] = string(bb)
	for p, data := range files {
		full := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"sh", "cat", "ls", "id", "touch", "test", "stat"} {
		if err := os.Symlink("/bin/busybox", filepath.Join(tree, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range openDirs {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(tree, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	image := filepath.Join(dir, name+".ext4")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", tree, image, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d %s: %v\n%s", tree, err, out)
	}
	return image
}

// shareDir makes a host directory for a share that the stage user (1000) can write,
// holding file (when not "") with data.
func shareDir(t *testing.T, file, data string) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if file != "" {
		if err := os.WriteFile(filepath.Join(d, file), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func checkHostFile(t *testing.T, p, want string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != want {
		t.Errorf("host file %s = %q, %v; want %q written by the stage", p, b, err, want)
	}
}

// shutdown ends the session the way voidbox does and waits for the clean poweroff, so
// the shares' data is on the host when it returns.
func shutdown(t *testing.T, client *proto.Client, m *qemu.Machine) {
	t.Helper()
	if err := client.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown request: %v", err)
	}
	waitPoweroff(t, m, "after the shutdown request")
}

// testNetwork is a network that answers the guest's DNS questions with nothing and
// dials nowhere: enough for the agent to configure eth0 and /etc.
func testNetwork(t *testing.T) *network.Network {
	t.Helper()
	n, err := network.New(network.Config{Policy: mustPolicy(t, "svc.example.test:443"),
		Resolver: resolverFunc{"svc.example.test": {netip.MustParseAddr("203.0.113.10")}}, Dialer: refuseDialer{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// bootWith boots the agent with boot (its secret, hostname and clock filled in) in a VM
// with vmc's disks and shares and n as its network (attached as a NIC) when not nil,
// and opens a session.
func bootWith(t *testing.T, vmm *qemu.VMM, img guestimage.Image, boot proto.BootConfig, vmc runtime.VMConfig, n *network.Network) (*qemu.Machine, *proto.Client) {
	t.Helper()
	m := startVM(t, vmm, img, &boot, vmc, n)
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	client, err := proto.Connect(ctx, conn, boot.Secret)
	if err != nil {
		conn.Close()
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return m, client
}

// startVM boots the VM for bootWith, filling in boot's secret, hostname and clock and
// vmc's kernel, size and state dir. Its cleanup kills a VM the test left running and
// checks no QEMU remains. (bootAgentSecret and bootNetAgent could be built on it.)
func startVM(t *testing.T, vmm *qemu.VMM, img guestimage.Image, boot *proto.BootConfig, vmc runtime.VMConfig, n *network.Network) *qemu.Machine {
	t.Helper()
	stateDir, err := vmstate.NewDir() // short: unix socket paths stay under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	if boot.Secret, err = proto.NewSecret(); err != nil {
		t.Fatal(err)
	}
	boot.Hostname, boot.UnixTime = "vmtest", time.Now().Unix()
	vmc.Name, vmc.Kernel, vmc.Initramfs = "fs-"+strings.ReplaceAll(t.Name(), "/", "-"), img.Kernel, img.Initramfs
	vmc.MemoryMB, vmc.VCPUs, vmc.StateDir = 256, 1, stateDir
	if n != nil {
		g := n.Guest()
		boot.Net = &proto.NetConfig{MAC: g.MAC, Address: g.Address.String(), Gateway: g.Gateway.String(), DNS: g.DNS.String(),
			MTU: g.MTU, HostName: g.HostName, HostAddr: g.HostAddr.String()}
		vmc.NetworkSocket, vmc.NetworkAttach, vmc.MAC = filepath.Join(stateDir, "net.sock"), runtime.AttachNIC, g.MAC
		serveNetwork(t, n, vmc.NetworkSocket)
	}
	if vmc.Cmdline, err = boot.KernelArg(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	m, err := vmm.BootMachine(ctx, vmc)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	marker := m.StateDir()
	cleanUpVM(t, m, marker)
	return m
}
