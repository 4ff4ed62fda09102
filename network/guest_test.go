package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/voidbox/voidbox/internal/syncbuf"
	"github.com/voidbox/voidbox/network/frame"
)

// The tests drive a Network from a fake guest: a second gVisor netstack whose NIC speaks the
// QEMU framing over a unix socketpair, as a VM's virtio-net would. Upstream DNS and host-side
// dials are fakes that map names and documentation addresses to servers on 127.0.0.1; the
// dialer fails the test if asked for anything it was not told about, so a denied destination
// is provably decided without being dialled.

// fakeGuest is the guest side of a network.
type fakeGuest struct {
	t      testing.TB
	stack  *stack.Stack
	conn   net.Conn
	cfg    Guest
	frames atomic.Int64 // frames received from the network
	mu     sync.Mutex
}

// testDialer maps guest-visible destinations to local servers and fails the test on anything
// else.
type testDialer struct {
	t      testing.TB
	mu     sync.Mutex
	routes map[string]string // "203.0.113.10:443" -> "127.0.0.1:PORT"
	dialed []string
}

func (d *testDialer) route(guestVisible, local string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routes[guestVisible] = local
}

func (d *testDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, network+" "+address)
	local, ok := d.routes[address]
	d.mu.Unlock()
	if !ok {
		d.t.Errorf("the network dialled %s %s, which no test route maps (a denied destination must never be dialled)", network, address)
		return nil, fmt.Errorf("test dialer: %s not mapped", address)
	}
	if a, err := netip.ParseAddrPort(local); err != nil || !a.Addr().IsLoopback() {
		d.t.Fatalf("test route %s -> %s leaves 127.0.0.0/8", address, local)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, local)
}

func (d *testDialer) calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}

// testResolver answers from a fixed map and records the names asked.
type testResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
	asked []string
}

func (r *testResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, host)
	if a, ok := r.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *testResolver) lookups() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asked...)
}

type env struct {
	n        *Network
	g        *fakeGuest
	dialer   *testDialer
	resolver *testResolver
	logs     *syncbuf.Buffer
}

func newEnv(t testing.TB, entries []string, mutate ...func(*Config)) *env {
	t.Helper()
	p, err := ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		dialer:   &testDialer{t: t, routes: map[string]string{}},
		resolver: &testResolver{names: map[string][]netip.Addr{}},
		logs:     &syncbuf.Buffer{},
	}
	cfg := Config{Policy: p, Resolver: e.resolver, Dialer: e.dialer, Log: slog.New(slog.NewJSONHandler(e.logs, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.n = n
	hostEnd, guestEnd := socketPair(t)
	served := make(chan error, 1)
	go func() { served <- n.Serve(context.Background(), hostEnd) }()
	for !n.attached() {
		time.Sleep(time.Millisecond)
	}
	e.g = newFakeGuest(t, guestEnd, n.Guest())
	t.Cleanup(func() {
		_ = n.Close()
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
		e.g.close()
	})
	return e
}

func (n *Network) attached() bool {
	n.port.mu.Lock()
	defer n.port.mu.Unlock()
	return n.port.cur != nil
}

func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0], "host"), conn(fds[1], "guest")
}

// guestLink carries the fake guest's frames over its end of the socket pair.
type guestLink struct {
	g *fakeGuest
}

func (l guestLink) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	_ = frame.Write(l.g.conn, v.AsSlice())
}

func newFakeGuest(t testing.TB, conn net.Conn, cfg Guest) *fakeGuest {
	t.Helper()
	g := &fakeGuest{t: t, conn: conn, cfg: cfg}
	link, err := tap.NewLinkEndpoint(false, uint32(cfg.MTU), cfg.MAC, cfg.Address.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	link.Connect(guestLink{g})
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	g.stack = s
	if e := s.CreateNIC(1, link); e != nil {
		t.Fatal(e)
	}
	if e := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(cfg.Address.Addr().As4()), PrefixLen: cfg.Address.Bits()}},
		stack.AddressProperties{}); e != nil {
		t.Fatal(e)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(cfg.Gateway.As4()), NIC: 1}})
	mac, _ := net.ParseMAC(cfg.MAC)
	go func() {
		r := frame.NewReader(conn, 65536)
		buf := make([]byte, 65536)
		for {
			f, err := r.Next(buf)
			if err != nil {
				return
			}
			g.frames.Add(1)
			eth := header.Ethernet(f)
			if dst := eth.DestinationAddress(); dst != tcpip.LinkAddress(mac) && dst != header.EthernetBroadcastAddress {
				continue
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f[header.EthernetMinimumSize:])})
			link.DeliverNetworkPacket(eth.Type(), pkt)
			pkt.DecRef()
		}
	}()
	return g
}

func (g *fakeGuest) close() {
	_ = g.conn.Close()
	g.stack.Close()
	g.stack.Wait()
}

func fullAddr(a netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(a.Addr().As4()), Port: a.Port()}
}

// dial connects from the guest, as a program in the VM would.
func (g *fakeGuest) dial(to string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gonet.DialContextTCP(ctx, g.stack, fullAddr(netip.MustParseAddrPort(to)), ipv4.ProtocolNumber)
}

// mustEcho connects to to, and checks that what it sends comes back.
func (g *fakeGuest) mustEcho(to string) {
	g.t.Helper()
	c, err := g.dial(to, 5*time.Second)
	if err != nil {
		g.t.Fatalf("guest connect to %s: %v", to, err)
	}
	defer c.Close()
	msg := "hello from the guest to " + to
	if _, err := c.Write([]byte(msg)); err != nil {
		g.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		g.t.Fatalf("echo through %s: got %q, %v", to, got, err)
	}
}

// mustRefuse checks that a connect to to is refused (RST) within limit.
func (g *fakeGuest) mustRefuse(to string, limit time.Duration) {
	g.t.Helper()
	start := time.Now()
	c, err := g.dial(to, 5*time.Second)
	took := time.Since(start)
	if err == nil {
		c.Close()
		g.t.Fatalf("guest connect to %s succeeded, want it refused", to)
	}
	if !strings.Contains(err.Error(), "refused") {
		g.t.Fatalf("guest connect to %s: %v, want connection refused (a RST)", to, err)
	}
	if took > limit {
		g.t.Fatalf("guest connect to %s refused after %v, want under %v", to, took, limit)
	}
}

// query asks the VM's resolver for name and returns the reply's code and A records.
func (g *fakeGuest) query(name string, qtype dnsmessage.Type) (dnsmessage.RCode, []netip.Addr) {
	g.t.Helper()
	reply := g.exchange(dnsQuery(g.t, name, qtype, 0x1234))
	var p dnsmessage.Parser
	h, err := p.Start(reply)
	if err != nil {
		g.t.Fatalf("reply to %s: %v", name, err)
	}
	if h.ID != 0x1234 || !h.Response {
		g.t.Fatalf("reply to %s: id %#x response %v", name, h.ID, h.Response)
	}
	if err := p.SkipAllQuestions(); err != nil {
		g.t.Fatal(err)
	}
	var addrs []netip.Addr
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			g.t.Fatal(err)
		}
		if rh.Type != dnsmessage.TypeA {
			g.t.Fatalf("reply to %s has a %v record", name, rh.Type)
		}
		a, err := p.AResource()
		if err != nil {
			g.t.Fatal(err)
		}
		addrs = append(addrs, netip.AddrFrom4(a.A))
	}
	return h.RCode, addrs
}

// exchange sends a raw DNS message to the gateway's port 53 and returns the reply.
func (g *fakeGuest) exchange(msg []byte) []byte {
	g.t.Helper()
	c, err := gonet.DialUDP(g.stack, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(g.cfg.DNS.As4()), Port: 53}, ipv4.ProtocolNumber)
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		g.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	k, err := c.Read(buf)
	if err != nil {
		g.t.Fatalf("no reply from the VM's resolver: %v", err)
	}
	return buf[:k]
}

func dnsQuery(t testing.TB, name string, qtype dnsmessage.Type, id uint16) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// localServer serves TCP on 127.0.0.1 until the test ends, handing each connection to
// handle (which need not close it).
func localServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveConns(ln, handle)
	return ln.Addr().String()
}

// serveConns accepts until ln is closed.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// echoServer serves TCP echo on 127.0.0.1 until the test ends.
func echoServer(t testing.TB) string { return localServer(t, echo) }

// udpEchoServer serves UDP echo on 127.0.0.1 until the test ends.
func udpEchoServer(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:k], from)
		}
	}()
	return pc.LocalAddr().String()
}

// dialUDP opens a connected UDP socket in the guest.
func (g *fakeGuest) dialUDP(to string) *gonet.UDPConn {
	g.t.Helper()
	raddr := fullAddr(netip.MustParseAddrPort(to))
	c, err := gonet.DialUDP(g.stack, nil, &raddr, ipv4.ProtocolNumber)
	if err != nil {
		g.t.Fatalf("guest UDP socket to %s: %v", to, err)
	}
	return c
}

// mustEchoUDP sends a datagram to to and checks that it comes back.
func (g *fakeGuest) mustEchoUDP(to string) {
	g.t.Helper()
	c := g.dialUDP(to)
	defer c.Close()
	msg := "datagram to " + to
	if _, err := c.Write([]byte(msg)); err != nil {
		g.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	k, err := c.Read(buf)
	if err != nil || string(buf[:k]) != msg {
		g.t.Fatalf("UDP echo through %s: got %q, %v", to, buf[:k], err)
	}
}

// expectUDPRefused sends a datagram to to and checks that the network answers with an ICMP
// port unreachable at once and with no data. (The fake guest's gonet socket reports the ICMP
// error only if it arrives before Read starts waiting, so the guest stack's ICMP counter is
// what is checked; a Linux guest's socket gets ECONNREFUSED.)
func (g *fakeGuest) expectUDPRefused(to string) {
	g.t.Helper()
	c := g.dialUDP(to)
	defer c.Close()
	unreachable := g.stack.Stats().ICMP.V4.PacketsReceived.DstUnreachable
	before := unreachable.Value()
	if _, err := c.Write([]byte("is anyone there?")); err != nil {
		g.t.Fatal(err)
	}
	for deadline := time.Now().Add(refuseWithin); unreachable.Value() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			g.t.Fatalf("UDP to %s: no ICMP port unreachable within %v", to, refuseWithin)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 1500)
	if k, err := c.Read(buf); err == nil {
		g.t.Fatalf("UDP to %s got a reply %q, want it refused", to, buf[:k])
	}
}

// ping sends one ICMP echo request from the guest and reports whether a reply came back.
func (g *fakeGuest) ping(to netip.Addr) bool {
	g.t.Helper()
	var wq waiter.Queue
	ep, terr := g.stack.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		g.t.Fatal(terr)
	}
	defer ep.Close()
	if terr := ep.Connect(tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(to.As4())}); terr != nil {
		g.t.Fatal(terr)
	}
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	msg := make([]byte, header.ICMPv4MinimumSize+8)
	header.ICMPv4(msg).SetType(header.ICMPv4Echo)
	if _, terr := ep.Write(bytes.NewReader(msg), tcpip.WriteOptions{}); terr != nil {
		g.t.Fatalf("ping %s: %v", to, terr)
	}
	deadline := time.After(refuseWithin)
	for {
		if _, terr := ep.Read(io.Discard, tcpip.ReadOptions{}); terr == nil {
			return true
		}
		select {
		case <-ready:
		case <-deadline:
			return false
		}
	}
}
