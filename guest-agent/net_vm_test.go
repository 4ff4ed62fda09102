package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
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

// TestNetworkInRealVM boots the agent with each attachment of a box's network (QEMU's
// virtio-net NIC, and the agent's own TAP forwarder over virtio-serial) and without one,
// and checks from a stage what the agent set up before the first exec. The policy,
// DNS filter and flows are package network's and sandbox/vm's tests; here the guest half:
// eth0 configured, the resolver reached through the attachment, lo up in every VM.
func TestNetworkInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	t.Run("nic", func(t *testing.T) { testGuestNetwork(t, vmm, img, runtime.AttachNIC, "virtio-net NIC") })
	t.Run("forwarder", func(t *testing.T) {
		testGuestNetwork(t, vmm, img, runtime.AttachForwarder, "TAP forwarder over virtio-serial")
	})
	t.Run("none", func(t *testing.T) {
		m, client := bootNetAgent(t, vmm, img, nil, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// lo is up (IFF_UP|IFF_LOOPBACK is 0x9) and carries a TCP connection; there is no
		// other interface, and /etc has no resolver.
		out := stageRun(ctx, t, client, nil, `ls /sys/class/net; cat /sys/class/net/lo/flags
mkdir -p /tmp/www && echo hello-lo > /tmp/www/x
httpd -f -p 127.0.0.1:8080 -h /tmp/www & pid=$!
for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/x 2>/dev/null && break; sleep 0.1; done
kill $pid
test -e /etc/resolv.conf && echo has-resolv-conf; true`)
		if want := "lo\n0x9\nhello-lo\n"; out != want {
			t.Errorf("a VM without network: stage printed\n%q\nwant\n%q", out, want)
		}
		if console := m.ConsoleTail(64 << 10); !strings.Contains(console, "network: lo only") {
			t.Errorf("console does not say the VM has lo only:\n%s", console)
		}
	})
}

// resolverFunc is a network.Resolver over a map: nothing leaves the machine.
type resolverFunc map[string][]netip.Addr

func (r resolverFunc) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// refuseDialer fails the test: these checks make no flow that leaves the gateway.
type refuseDialer struct{ t *testing.T }

func (d refuseDialer) DialContext(_ context.Context, netw, addr string) (net.Conn, error) {
	d.t.Errorf("the network dialled %s %s; this test opens no flow beyond the gateway", netw, addr)
	return nil, fmt.Errorf("test: no dialling")
}

func testGuestNetwork(t *testing.T, vmm *qemu.VMM, img guestimage.Image, attach runtime.NetAttach, via string) {
	const mtu = 1400 // not the default, so the check sees the agent set it
	n, err := network.New(network.Config{
		Policy: mustPolicy(t, "svc.example.test:443"),
		// A documentation address: the resolver never hands out loopback for a name.
		Resolver: resolverFunc{"svc.example.test": {netip.MustParseAddr("203.0.113.10")}},
		Dialer:   refuseDialer{t},
		MTU:      mtu,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	m, client := bootNetAgent(t, vmm, img, n, attach)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := stageRun(ctx, t, client, nil, `ls /sys/class/net | tr '\n' ' '; echo
cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu /sys/class/net/eth0/flags
ip -4 addr show eth0 | grep -o 'inet [0-9./]*'
ip route | grep default
stat -c '%a %u:%g %n' /etc/resolv.conf /etc/hosts
cat /etc/resolv.conf /etc/hosts
nslookup svc.example.test | grep -A1 '^Name:' | tail -1`)
	g := n.Guest()
	want := fmt.Sprintf(`eth0 lo 
%s
%d
0x1003
inet %s
default via %s dev eth0 
644 0:0 /etc/resolv.conf
644 0:0 /etc/hosts
nameserver %s
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
%s	vmtest
%s	%s
Address: 203.0.113.10
`, g.MAC, mtu, g.Address, g.Gateway, g.DNS, g.Address.Addr(), g.HostAddr, g.HostName)
	if out != want {
		t.Errorf("the guest's network as a stage sees it:\n%s\nwant:\n%s", out, want)
	}
	if s := n.Stats(); s.DNS.Allowed == 0 {
		t.Errorf("the network answered no allowed DNS question (stats %+v): the lookup did not go through the %s", s, via)
	}
	if console := m.ConsoleTail(64 << 10); !strings.Contains(console, "network: eth0 ("+via) {
		t.Errorf("console does not say eth0 is attached by the %s:\n%s", via, console)
	}
	if attach != runtime.AttachForwarder {
		return
	}
	// The host's end of the forwarder goes away: the forwarder ends, says so, and takes
	// eth0 with it; the agent serves on.
	n.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(m.ConsoleTail(64<<10), "network: the forwarder over virtio-serial") {
		if time.Now().After(deadline) {
			t.Fatalf("30s after the host closed the network, the console does not say the forwarder ended:\n%s", m.ConsoleTail(64<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := stageRun(ctx, t, client, nil, "ls /sys/class/net"); out != "lo\n" {
		t.Errorf("after the forwarder ended the guest has interfaces %q, want lo only", out)
	}
}

func mustPolicy(t *testing.T, entries ...string) *network.Policy {
	t.Helper()
	p, err := network.ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bootNetAgent boots the agent with n as the VM's network, attached as attach (n nil:
// no network), serving n on a unix socket in the state dir as voidbox does, and opens a
// session. Its cleanup kills a VM the test left running and checks no QEMU remains.
func bootNetAgent(t *testing.T, vmm *qemu.VMM, img guestimage.Image, n *network.Network, attach runtime.NetAttach) (*qemu.Machine, *proto.Client) {
	t.Helper()
	stateDir, err := vmstate.NewDir() // short: unix socket paths stay under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	secret, err := proto.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	boot := proto.BootConfig{Secret: secret, Hostname: "vmtest", UnixTime: time.Now().Unix()}
	vmc := runtime.VMConfig{Name: "net-" + t.Name(), Kernel: img.Kernel, Initramfs: img.Initramfs,
		MemoryMB: 256, VCPUs: 1, StateDir: stateDir}
	ctx, cancel := context.WithTimeout(context.Background(), runtime.BootTimeout)
	defer cancel()
	if n != nil {
		g := n.Guest()
		boot.Net = &proto.NetConfig{Forward: attach == runtime.AttachForwarder, MAC: g.MAC, Address: g.Address.String(),
			Gateway: g.Gateway.String(), DNS: g.DNS.String(), MTU: g.MTU, HostName: g.HostName, HostAddr: g.HostAddr.String()}
		vmc.NetworkSocket, vmc.NetworkAttach, vmc.MAC = filepath.Join(stateDir, "net.sock"), attach, g.MAC
		serveNetwork(t, n, vmc.NetworkSocket)
	}
	if vmc.Cmdline, err = boot.KernelArg(); err != nil {
		t.Fatal(err)
	}
	m, err := vmm.BootMachine(ctx, vmc)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	marker := m.StateDir()
	cleanUpVM(t, m, marker)
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	client, err := proto.Connect(ctx, conn, secret)
	if err != nil {
		conn.Close()
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return m, client
}

// serveNetwork listens on sock, as voidbox does before the VMM starts, and serves n on
// every connection the VMM makes.
func serveNetwork(t *testing.T, n *network.Network, sock string) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go n.Serve(context.Background(), conn)
		}
	}()
}
