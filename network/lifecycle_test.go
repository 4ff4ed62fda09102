package network

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

func TestPublish(t *testing.T) {
	e := newEnv(t, nil)
	g := e.n.Guest()
	ln, err := gonet.ListenTCP(e.g.stack, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.Address.Addr().As4()), Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveConns(ln, echo)
	addr, err := e.n.Publish(0, 80)
	if err != nil {
		t.Fatal(err)
	}
	if !addr.Addr().IsLoopback() || addr.Port() == 0 {
		t.Fatalf("published on %s, want 127.0.0.1 and a port", addr)
	}
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("through the published port: %q %v", got, err)
	}
	if s := e.n.Stats(); s.Inbound != 1 {
		t.Fatalf("stats %+v, want 1 inbound", s)
	}
	for _, bad := range [][2]int{{-1, 80}, {65536, 80}, {0, 0}, {0, 65536}} {
		if _, err := e.n.Publish(bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("Publish(%d, %d): %v, want an out-of-range error", bad[0], bad[1], err)
		}
	}
	if err := e.n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.Publish(0, 80); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("the published port still listens after Close")
	}
}

// The guest's length prefix is hostile: out of bounds ends the attachment with an error
// that names it, at once, without allocating for it.
func TestServeBoundsFrames(t *testing.T) {
	p, _ := ParsePolicy(nil)
	n, err := New(Config{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, length := range []uint32{1 << 31, 5, uint32(n.maxFrame) + 1} {
		hostEnd, guestEnd := socketPair(t)
		done := make(chan error, 1)
		go func() { done <- n.Serve(context.Background(), hostEnd) }()
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], length)
		if _, err := guestEnd.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "out of bounds") {
				t.Errorf("length %d: Serve returned %v, want an out-of-bounds error", length, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("length %d: Serve still running", length)
		}
		guestEnd.Close()
	}
}

func TestServeOneGuestAtATime(t *testing.T) {
	e := newEnv(t, nil)
	second, other := socketPair(t)
	defer other.Close()
	if err := e.n.Serve(context.Background(), second); !errors.Is(err, ErrAttached) {
		t.Fatalf("a second Serve: %v, want ErrAttached", err)
	}
	if _, err := other.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the refused connection was left open")
	}
}

func TestServeEndsWithContext(t *testing.T) {
	p, _ := ParsePolicy(nil)
	n, err := New(Config{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	hostEnd, guestEnd := socketPair(t)
	defer guestEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, hostEnd) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its context ended")
	}
	// Detached: the next attachment is accepted.
	hostEnd2, guestEnd2 := socketPair(t)
	go func() { done <- n.Serve(context.Background(), hostEnd2) }()
	guestEnd2.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after a detach: %v, want nil at the guest's EOF", err)
	}
}

// Close ends every flow: the host side of an open connection is closed.
func TestCloseEndsFlows(t *testing.T) {
	e := newEnv(t, []string{"203.0.113.1:7"})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e.dialer.route("203.0.113.1:7", ln.Addr().String())
	ended := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ended <- err
			return
		}
		_, err = c.Read(make([]byte, 1))
		ended <- err
	}()
	c, err := e.g.dial("203.0.113.1:7", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := e.n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the host side read data, want EOF")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the host side of a flow stayed open after Close")
	}
}

func TestUDPFlowEndsWhenIdle(t *testing.T) {
	e := newEnv(t, []string{"203.0.113.53"}, func(c *Config) {
		c.Limits.MaxFlows = 1
		c.Limits.UDPIdle = 100 * time.Millisecond
	})
	e.dialer.route("203.0.113.53:5353", udpEchoServer(t))
	e.dialer.route("203.0.113.53:5354", udpEchoServer(t))
	e.g.mustEchoUDP("203.0.113.53:5353")
	e.g.expectUDPRefused("203.0.113.53:5354") // the one flow slot is taken
	time.Sleep(400 * time.Millisecond)
	e.g.mustEchoUDP("203.0.113.53:5354") // the first flow went idle and gave its slot back
}

func TestLogBudget(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.Limits.LogPerSecond = 3 })
	now := time.Now()
	e.n.logs.mu.Lock()
	e.n.logs.now = func() time.Time { return now }
	e.n.logs.mu.Unlock()
	for i := 0; i < 10; i++ {
		e.g.mustRefuse("10.0.0.1:80", refuseWithin)
	}
	if got := strings.Count(e.logs.String(), "\n"); got != 3 {
		t.Fatalf("%d lines logged, want 3 (LogPerSecond)", got)
	}
	if s := e.n.Stats(); s.TCP.Denied != 10 || s.Unlogged != 7 {
		t.Fatalf("stats %+v, want 10 denied, 7 unlogged", s)
	}
	e.n.logs.mu.Lock()
	now = now.Add(time.Second)
	e.n.logs.mu.Unlock()
	e.g.mustRefuse("10.0.0.1:80", refuseWithin)
	if !strings.Contains(e.logs.String(), `"unlogged_before":7`) {
		t.Fatalf("the next line does not say what was held back:\n%s", e.logs)
	}
}

func TestNewValidates(t *testing.T) {
	p, _ := ParsePolicy(nil)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Policy is nil"},
		{Config{Policy: p, Limits: Limits{MaxFlows: -1}}, "MaxFlows is -1"},
		{Config{Policy: p, Limits: Limits{DialTimeout: -time.Second}}, "DialTimeout is -1s"},
		{Config{Policy: p, MTU: 100}, "MTU 100 out of range"},
		{Config{Policy: p, Subnet: netip.MustParsePrefix("10.0.2.0/30")}, "prefix length of 16 to 29"},
		{Config{Policy: p, Subnet: netip.MustParsePrefix("10.0.2.5/24")}, "must be an IPv4 network address"},
		{Config{Policy: p, Subnet: netip.MustParsePrefix("fd00::/64")}, "must be an IPv4 network address"},
	} {
		n, err := New(tc.cfg)
		if err == nil {
			n.Close()
			t.Errorf("%+v accepted", tc.cfg)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %q, want it to contain %q", err, tc.want)
		}
	}
}

func TestGuestLayout(t *testing.T) {
	p, _ := ParsePolicy(nil)
	for subnet, want := range map[string][3]string{
		"":               {"10.0.2.2/24", "10.0.2.1", "10.0.2.254"},
		"172.31.0.0/16":  {"172.31.0.2/16", "172.31.0.1", "172.31.255.254"},
		"192.0.2.248/29": {"192.0.2.250/29", "192.0.2.249", "192.0.2.254"},
	} {
		cfg := Config{Policy: p, MTU: 9000}
		if subnet != "" {
			cfg.Subnet = netip.MustParsePrefix(subnet)
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		g := n.Guest()
		n.Close()
		if g.Address.String() != want[0] || g.Gateway.String() != want[1] || g.DNS != g.Gateway || g.HostAddr.String() != want[2] ||
			g.MTU != 9000 || g.HostName != HostName || g.MAC != "02:76:62:00:00:02" {
			t.Errorf("subnet %q: %+v, want address %s gateway %s host %s", subnet, g, want[0], want[1], want[2])
		}
	}
}

// The host's own addresses count as restricted even when they are public.
func TestHostOwnAddressesRestricted(t *testing.T) {
	own := netip.MustParseAddr("203.0.113.77")
	for _, entries := range [][]string{nil, {"*.example.com"}, {"203.0.113.0/24"}} {
		e := newEnv(t, entries)
		e.n.hostOwn[own] = struct{}{}
		e.resolver.names["self.example.com"] = []netip.Addr{own, netip.MustParseAddr("203.0.113.78")}
		if _, got := e.g.query("self.example.com", dnsmessage.TypeA); slices.Contains(got, own) {
			t.Errorf("%v: the host's own address was answered: %v", entries, got)
		}
		e.g.mustRefuse("203.0.113.77:22", refuseWithin)
	}
	e := newEnv(t, []string{"203.0.113.77:22"})
	e.n.hostOwn[own] = struct{}{}
	e.dialer.route("203.0.113.77:22", echoServer(t))
	e.g.mustEcho("203.0.113.77:22")
}

// Pings reach the gateway only: the netstack would otherwise answer for every address.
func TestPingOnlyTheGateway(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		to   netip.Addr
		want bool
	}{{e.n.Guest().Gateway, true}, {netip.MustParseAddr("203.0.113.1"), false}, {netip.MustParseAddr("10.0.0.1"), false}} {
		if got := e.g.ping(tc.to); got != tc.want {
			t.Errorf("ping %s answered %v, want %v", tc.to, got, tc.want)
		}
	}
}
