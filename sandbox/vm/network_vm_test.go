package vm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/runtime"
)

// testUpstream stands for the world outside the VM: its resolver maps names to
// documentation addresses (203.0.113.0/24, 198.51.100.0/24) and its dialer maps those
// addresses to servers on 127.0.0.1. It refuses to dial anything it does not map, so
// no test can open a connection outside 127.0.0.0/8, and it records every dial, so a
// test can check that a denied destination was never dialled.
type testUpstream struct {
	names map[string][]netip.Addr
	route map[string]string // guest-visible "addr:port" -> "127.0.0.1:port"

	mu     sync.Mutex
	dialed []string
}

func (u *testUpstream) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := u.names[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (u *testUpstream) DialContext(ctx context.Context, netw, address string) (net.Conn, error) {
	u.mu.Lock()
	u.dialed = append(u.dialed, netw+" "+address)
	u.mu.Unlock()
	target, ok := u.route[address]
	if !ok {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !ap.Addr().IsLoopback() {
			return nil, fmt.Errorf("test upstream: %s %s is not mapped to 127.0.0.1 (a test never dials outside 127.0.0.0/8)", netw, address)
		}
		target = address // host:PORT entries reach the host's loopback
	}
	var d net.Dialer
	return d.DialContext(ctx, netw, target)
}

func (u *testUpstream) dials() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.dialed)
}

// textServer answers every HTTP request with body, on 127.0.0.1.
func textServer(t *testing.T, body string) (port string) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	_, port, _ = net.SplitHostPort(s.Listener.Addr().String())
	return port
}

// holdServer accepts TCP connections on 127.0.0.1 and keeps them open until the test
// ends; accepted counts them.
func holdServer(t *testing.T) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// openNetworked boots a networked sandbox with the test upstream, attached the way
// forward says, and registers the same teardown checks as openOn.
func openNetworked(t *testing.T, vmm runtime.VMM, forward bool, up *testUpstream, limits network.Limits, spec runtime.SandboxSpec) *Sandbox {
	t.Helper()
	img := vmtest.Image(t)
	p, err := New(Options{VMM: vmm, Kernel: img.Kernel, Initramfs: img.Initramfs, NetForwarder: forward,
		Network: network.Config{Resolver: up, Dialer: up, Limits: limits}})
	if err != nil {
		t.Fatal(err)
	}
	return openWith(t, p, spec)
}

// sh runs a shell script in the guest and returns its combined output and exit code.
func sh(t *testing.T, s *Sandbox, script string) (string, int) {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out.String(), res.ExitCode
}

// TestNetworkPolicyInVM runs the policy checks from inside a real VM, once per
// attachment: QEMU's virtio-net NIC, the agent's TAP forwarder (over virtio-serial
// under QEMU), and Cloud Hypervisor's (the forwarder over vsock) where it can run.
func TestNetworkPolicyInVM(t *testing.T) {
	vmtest.Require(t)
	t.Run("qemu-nic", func(t *testing.T) { testNetworkPolicy(t, vmtest.TCG(t), false) })
	t.Run("qemu-forwarder", func(t *testing.T) { testNetworkPolicy(t, vmtest.TCG(t), true) })
	t.Run("cloud-hypervisor", func(t *testing.T) {
		testNetworkPolicy(t, vmtest.CloudHypervisor(t, vmtest.Image(t)), true)
	})
}

func testNetworkPolicy(t *testing.T, vmm runtime.VMM, forward bool) {
	apiPort := textServer(t, "hello from api\n")
	hostPort := textServer(t, "hello from the host\n")
	otherHostPort := textServer(t, "this host port is not listed\n")
	holdAddr, held := holdServer(t)
	up := &testUpstream{
		names: map[string][]netip.Addr{
			"api.example.test":   {netip.MustParseAddr("203.0.113.10")},
			"hold.example.test":  {netip.MustParseAddr("203.0.113.20")},
			"other.example.test": {netip.MustParseAddr("203.0.113.11")},
		},
		route: map[string]string{
			"203.0.113.10:80": "127.0.0.1:" + apiPort,
			"203.0.113.20:80": holdAddr,
		},
	}
	published := freePort(t)
	const maxFlows = 3
	s := openNetworked(t, vmm, forward, up, network.Limits{MaxFlows: maxFlows}, runtime.SandboxSpec{
		Name: "net", MemoryMB: 256, Network: true,
		Egress: []string{"api.example.test:80", "hold.example.test:80", "host:" + hostPort},
		Ports:  []runtime.PortMap{{Host: published, Guest: 8080}},
	})

	t.Run("eth0 configured before the first exec", func(t *testing.T) {
		out, code := sh(t, s, "cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; ip link show eth0 | grep -o '<.*>'; ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default; cat /etc/resolv.conf; grep host.voidbox.internal /etc/hosts")
		for _, want := range []string{"02:76:62:00:00:02", "1500", ",UP", "inet 10.0.2.2/24", "default via 10.0.2.1 dev eth0", "nameserver 10.0.2.1", "10.0.2.254", "host.voidbox.internal"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Fatalf("exit %d, output lacks %q:\n%s", code, want, out)
			}
		}
	})
	t.Run("an allowed name works", func(t *testing.T) {
		out, code := sh(t, s, "wget -q -O - http://api.example.test/")
		if code != 0 || out != "hello from api\n" {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("an unlisted name gets NXDOMAIN", func(t *testing.T) {
		out, code := sh(t, s, "nslookup other.example.test")
		if code == 0 || !strings.Contains(out, "NXDOMAIN") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("refused destinations get a reset, not a hang", func(t *testing.T) {
		for _, dst := range []string{
			"203.0.113.10 81",             // the pinned address of an allowed name, on another port
			"198.51.100.7 80",             // an address no entry allows
			"203.0.113.11 80",             // the address of a name that is not allowed
			"169.254.169.254 80",          // cloud metadata
			"10.0.0.1 80",                 // a private range
			"10.0.2.254 " + otherHostPort, // the host's loopback on a port not listed
		} {
			out, code := sh(t, s, "nc -w 5 "+dst+" </dev/null")
			if code == 0 || !strings.Contains(out, "refused") {
				t.Errorf("nc %s: exit %d, want connection refused: %q", dst, code, out)
			}
		}
	})
	t.Run("host:PORT reaches that host port only", func(t *testing.T) {
		out, code := sh(t, s, "wget -q -O - http://host.voidbox.internal:"+hostPort+"/")
		if code != 0 || out != "hello from the host\n" {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("UDP to an outside resolver is refused", func(t *testing.T) {
		out, code := sh(t, s, "nslookup api.example.test 198.51.100.53")
		if code == 0 || strings.Contains(out, "203.0.113.10") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("a published port reaches a guest server", func(t *testing.T) {
		done := make(chan string, 1)
		go func() {
			out, _ := sh(t, s, "echo from-guest | nc -l -p 8080")
			done <- out
		}()
		var got string
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && got == "" {
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", published))
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Close()
				got = line
			}
			if got == "" {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if got != "from-guest\n" {
			t.Fatalf("read %q through 127.0.0.1:%d", got, published)
		}
		<-done
	})
	t.Run("the flow limit holds under a burst", func(t *testing.T) {
		// Eight connections to a server that keeps them open; only maxFlows get through.
		out, _ := sh(t, s, "for i in 1 2 3 4 5 6 7 8; do timeout 4 nc hold.example.test 80 </dev/null >/dev/null 2>&1 & done; sleep 2; wait; echo done")
		if !strings.Contains(out, "done") {
			t.Fatalf("burst script: %q", out)
		}
		if n := held(); n < 1 || n > maxFlows {
			t.Fatalf("the host side accepted %d connections, want 1 to %d", n, maxFlows)
		}
	})

	// Nothing denied was dialled: only the two allowed destinations appear.
	for _, d := range up.dials() {
		ok := d == "tcp 203.0.113.10:80" || d == "tcp 203.0.113.20:80" || d == "tcp 127.0.0.1:"+hostPort
		if !ok {
			t.Errorf("dialled %s, which the policy denies", d)
		}
	}
	c, ok := s.NetworkCounts()
	if !ok || c.TCP.Allowed < 2 || c.TCP.Denied < 6 || c.DNS.Denied < 1 || c.UDP.Denied < 1 || c.Inbound < 1 {
		t.Errorf("network counts %+v (ok %v): want at least 2 TCP allowed, 6 denied, a DNS and a UDP denial, a published connection", c, ok)
	}
}

// TestNetworkVMsAreApart runs two networked VMs side by side: a server in one is not
// reachable from the other on any address of their (identical) subnets.
func TestNetworkVMsAreApart(t *testing.T) {
	vmtest.Require(t)
	vmm := vmtest.TCG(t)
	up := &testUpstream{}
	a := openNetworked(t, vmm, false, up, network.Limits{}, runtime.SandboxSpec{Name: "a", MemoryMB: 256, Network: true})
	b := openNetworked(t, vmm, false, up, network.Limits{}, runtime.SandboxSpec{Name: "b", MemoryMB: 256, Network: true})
	served := make(chan string, 1)
	go func() {
		// nc -l ends with the first connection; only the timeout (exit 143) means none came.
		out, _ := sh(t, a, "timeout 12 nc -l -p 9000 </dev/null >/dev/null 2>&1; echo rc=$?")
		served <- out
	}()
	time.Sleep(time.Second) // the listener is up well before b's attempts
	for _, dst := range []string{"10.0.2.2", "10.0.2.3", "10.0.2.1", "10.0.2.254"} {
		out, code := sh(t, b, "nc -w 3 "+dst+" 9000 </dev/null && echo CONNECTED")
		if code == 0 || strings.Contains(out, "CONNECTED") {
			t.Errorf("b reached %s:9000: %q", dst, out)
		}
	}
	if out := <-served; strings.TrimSpace(out) != "rc=143" {
		t.Errorf("a's listener got something: %q", out)
	}
	if d := up.dials(); len(d) != 0 {
		t.Errorf("dialled %v for guest-to-guest attempts", d)
	}
}
