// Package network is a box's user-mode network: one virtual Ethernet segment per VM, served
// inside the voidbox process (no root, no host TAP or bridge), with the box's egress policy on
// every flow.
//
// It owns: the egress policy (ParsePolicy: DNS names, wildcards, IPs and CIDRs with optional
// ports, host:PORT; the ranges that only an IP/CIDR entry opens: private, CGNAT, ULA,
// link-local with cloud metadata, loopback, multicast, broadcast, and the host's own
// addresses); the VM's gateway, a gVisor netstack fed with the guest's Ethernet frames through
// gvisor-tap-vsock's tap link endpoint; the VM's resolver at the gateway, which answers only
// names the policy allows and pins the addresses it returns to those names; the TCP and UDP
// forwarders that let a flow out only when the policy allows its guest-visible destination
// (a denied TCP connect gets an immediate RST, a denied UDP datagram an ICMP port unreachable;
// nothing is dialled to decide); the per-VM limits on flows, DNS lookups, pinned addresses and
// log lines; a structured log line and a count for every decision; and publishing a guest TCP
// port on the host's 127.0.0.1.
//
// It does not own the VM: the VMM attaches the guest's NIC with Serve (QEMU's -netdev stream,
// or the guest agent's TAP forwarder over vsock or virtio-serial, both in the framing of
// package frame), and the guest agent configures eth0 statically from Guest(). There is no
// DHCP server (the library's logs guest-triggered errors to the host's stderr through a global
// logger, and a static address needs no round trip before the first exec), and none of
// gvisor-tap-vsock's HTTP services API: the guest can open no listener on the host.
//
// The guest network is IPv4 only: AAAA questions get empty answers. Only the gateway answers
// pings. Upstream DNS and host-side connections go through the injectable Resolver and Dialer,
// so tests map names and documentation addresses to servers on 127.0.0.1 and check the
// decision on the destination the guest sees.
package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/voidbox/voidbox/runtime"
)

// HostName is the guest's name for the host's loopback, opened port by port with host:PORT.
const HostName = "host.voidbox.internal"

// DefaultSubnet is the VM's network unless Config.Subnet says otherwise: the gateway (and
// resolver) is its first address, the guest its second, the host its last but one.
var DefaultSubnet = netip.MustParsePrefix("10.0.2.0/24")

// DefaultMTU is the guest NIC's MTU unless Config.MTU says otherwise.
const DefaultMTU = 1500

const (
	nicID    = 1
	vlanSize = 4 // a frame may carry one 802.1Q tag beyond the MTU and the Ethernet header
)

// Fixed MACs are enough: every VM has its own segment, with one guest and one gateway.
var (
	gatewayMAC = net.HardwareAddr{0x02, 0x76, 0x62, 0x00, 0x00, 0x01}
	guestMAC   = net.HardwareAddr{0x02, 0x76, 0x62, 0x00, 0x00, 0x02}
)

// Resolver resolves the names the guest asks for; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens host-side connections for allowed flows; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config is one VM's network.
type Config struct {
	Policy   *Policy      // required; an empty policy allows every public address
	Resolver Resolver     // upstream DNS; nil is net.DefaultResolver
	Dialer   Dialer       // host-side connections; nil is a net.Dialer
	Log      *slog.Logger // one line per decision; nil discards them
	// OnDecision, when set, also receives each decision that is logged (within the
	// same budget as Log's lines, so a flood of refused connections stays bounded).
	OnDecision func(Decision)
	Limits     Limits
	MTU        int          // 0 is DefaultMTU; 1280 to 65000
	Subnet     netip.Prefix // zero is DefaultSubnet; an IPv4 prefix of /16 to /29
}

// Guest is what the guest needs to configure its NIC (eth0) before the first exec.
type Guest struct {
	MAC      string       `json:"mac"`       // the NIC's address; QEMU: -device virtio-net-device,mac=MAC
	Address  netip.Prefix `json:"address"`   // the guest's address and prefix length, e.g. 10.0.2.2/24
	Gateway  netip.Addr   `json:"gateway"`   // the default route
	DNS      netip.Addr   `json:"dns"`       // the only resolver (nameserver in /etc/resolv.conf)
	MTU      int          `json:"mtu"`       // eth0's MTU
	HostName string       `json:"host_name"` // host.voidbox.internal, for /etc/hosts
	HostAddr netip.Addr   `json:"host_addr"` // what HostName resolves to
}

// Network is one VM's user-mode network. Its methods are safe for concurrent use.
type Network struct {
	policy     *Policy
	limits     Limits
	resolver   Resolver
	dialer     Dialer
	log        *slog.Logger
	onDecision func(Decision)
	guest      Guest
	subnet     netip.Prefix
	maxFrame   int

	stack   *stack.Stack
	link    *tap.LinkEndpoint
	tcpFwd  *tcp.Forwarder
	port    *port
	pins    *pins
	gate    *gate
	hostOwn map[netip.Addr]struct{} // the host's interface addresses when the network was made
	logs    *logBudget
	dns     *dnsServer

	tcpCount, udpCount, dnsCount counter
	inbound                      atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	wg        sync.WaitGroup
	closers   map[io.Closer]struct{} // open flows' conns and published listeners, closed by Close
	pending   map[stack.TransportEndpointID]pendingFlow
	closeOnce sync.Once
}

// New builds a VM's network. Nothing reaches it until Serve attaches the guest.
func New(cfg Config) (*Network, error) {
	if cfg.Policy == nil {
		return nil, errors.New("network: Config.Policy is nil (parse the box's egress with ParsePolicy; an empty policy allows public addresses only)")
	}
	limits, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 1280 || mtu > 65000 {
		return nil, fmt.Errorf("network: MTU %d out of range (1280 to 65000)", mtu)
	}
	subnet := cfg.Subnet
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	if !subnet.Addr().Is4() || subnet.Bits() < 16 || subnet.Bits() > 29 || subnet.Masked() != subnet {
		return nil, fmt.Errorf("network: subnet %s must be an IPv4 network address with a prefix length of 16 to 29, e.g. %s", subnet, DefaultSubnet)
	}
	g := guestAddresses(subnet, mtu)
	n := &Network{
		policy:     cfg.Policy,
		limits:     limits,
		resolver:   cfg.Resolver,
		dialer:     cfg.Dialer,
		log:        cfg.Log,
		onDecision: cfg.OnDecision,
		guest:      g,
		subnet:     subnet,
		maxFrame:   mtu + 14 + vlanSize,
		pins:       newPins(limits.MaxPinned),
		gate:       newGate(limits.MaxFlows, limits.FlowsPerSecond, time.Now),
		logs:       &logBudget{perSecond: limits.LogPerSecond, now: time.Now},
		closers:    make(map[io.Closer]struct{}),
		pending:    make(map[stack.TransportEndpointID]pendingFlow),
	}
	if n.resolver == nil {
		n.resolver = net.DefaultResolver
	}
	if n.dialer == nil {
		n.dialer = &net.Dialer{}
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.hostOwn, err = hostAddresses(); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.buildStack(); err != nil {
		n.cancel()
		return nil, err
	}
	return n, nil
}

// hostAddresses lists the host's own interface addresses, which the guest may reach only
// through an IP entry naming them (a snapshot: addresses the host gains later are not in it).
func hostAddresses() (map[netip.Addr]struct{}, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("network: list the host's addresses (to keep the guest off them): %w", err)
	}
	own := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				own[ip.Unmap()] = struct{}{}
			}
		}
	}
	return own, nil
}

// guestAddresses lays out a subnet: gateway first, guest second, host last but one.
func guestAddresses(subnet netip.Prefix, mtu int) Guest {
	base := subnet.Addr().As4()
	v := binary.BigEndian.Uint32(base[:]) + uint32(1)<<(32-subnet.Bits()) - 2
	var last [4]byte
	binary.BigEndian.PutUint32(last[:], v)
	gw := subnet.Addr().Next()
	return Guest{
		MAC:      guestMAC.String(),
		Address:  netip.PrefixFrom(gw.Next(), subnet.Bits()),
		Gateway:  gw,
		DNS:      gw,
		MTU:      mtu,
		HostName: HostName,
		HostAddr: netip.AddrFrom4(last),
	}
}

func (n *Network) buildStack() error {
	link, err := tap.NewLinkEndpoint(false, uint32(n.guest.MTU), gatewayMAC.String(), n.guest.Gateway.String(), []string{n.guest.HostAddr.String()})
	if err != nil {
		return fmt.Errorf("network: gateway link: %w", err)
	}
	n.link = link
	n.port = newPort(n)
	link.Connect(n.port)

	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	n.stack = s
	fail := func(what string, e tcpip.Error) error {
		s.Close()
		return fmt.Errorf("network: %s: %s", what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("enable TCP SACK", e)
	}
	if e := s.CreateNIC(nicID, link); e != nil {
		return fail("create NIC", e)
	}
	for _, a := range []netip.Addr{n.guest.Gateway, n.guest.HostAddr} {
		if e := s.AddProtocolAddress(nicID, tcpip.ProtocolAddress{
			Protocol:          ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddrFrom4(a.As4()).WithPrefix(),
		}, stack.AddressProperties{}); e != nil {
			return fail("add address "+a.String(), e)
		}
	}
	// Spoofing and promiscuous mode let the gateway accept a connection to any destination
	// and answer from that destination's address: that is how the forwarders see flows.
	if e := s.SetSpoofing(nicID, true); e != nil {
		return fail("enable spoofing", e)
	}
	if e := s.SetPromiscuousMode(nicID, true); e != nil {
		return fail("enable promiscuous mode", e)
	}
	subnet, serr := tcpip.NewSubnet(tcpip.AddrFrom4(n.subnet.Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(n.subnet.Bits(), 32)))
	if serr != nil {
		s.Close()
		return fmt.Errorf("network: subnet %s: %w", n.subnet, serr)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: nicID}})

	// Every request the forwarder holds has a flow slot (tcpPacket admits before it hands a
	// SYN on), so it never needs to drop one for being over its own bound.
	n.tcpFwd = tcp.NewForwarder(s, 0, n.limits.MaxFlows+1, n.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, n.tcpPacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, n.udpPacket)

	dns, err := newDNSServer(n)
	if err != nil {
		s.Close()
		return err
	}
	n.dns = dns
	n.goTracked(dns.serve)
	return nil
}

// Guest returns what the guest needs to configure eth0.
func (n *Network) Guest() Guest { return n.guest }

// Stats returns the decision counts so far.
func (n *Network) Stats() Stats {
	return Stats{
		TCP:      n.tcpCount.get(),
		UDP:      n.udpCount.get(),
		DNS:      n.dnsCount.get(),
		Inbound:  n.inbound.Load(),
		Unlogged: n.logs.total.Load(),
	}
}

// Close detaches the guest, ends every flow and published port, and stops the netstack.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		closers := n.closers
		n.closers = nil
		n.mu.Unlock()
		n.cancel()
		n.port.detach()
		for c := range closers {
			_ = c.Close()
		}
		n.stack.Close()
		n.wg.Wait()
		n.stack.Wait()
	})
	return nil
}

// enter registers a goroutine the network's Close waits for; false once closed.
func (n *Network) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	return true
}

// goTracked runs f in a goroutine that Close waits for; it reports false (and does not run
// f) once the network is closed.
func (n *Network) goTracked(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// track registers c to be closed by Close; it closes c at once (and reports false) if the
// network is already closed. untrack forgets it.
func (n *Network) track(c io.Closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		_ = c.Close()
		return false
	}
	n.closers[c] = struct{}{}
	return true
}

func (n *Network) untrack(c io.Closer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.closers, c)
}

// record counts a decision and logs it (within the log budget).
func (n *Network) record(d decision) {
	switch d.proto {
	case "tcp":
		n.tcpCount.add(d.allow)
	case "udp":
		n.udpCount.add(d.allow)
	case "dns":
		n.dnsCount.add(d.allow)
	}
	ok, held := n.logs.take()
	if !ok {
		return
	}
	verdict := "deny"
	if d.allow {
		verdict = "allow"
	}
	attrs := []slog.Attr{slog.String("decision", verdict), slog.String("proto", d.proto)}
	if d.dst.IsValid() {
		attrs = append(attrs, slog.String("dst", d.dst.String()))
	}
	if d.port != 0 {
		attrs = append(attrs, slog.Int("port", int(d.port)))
	}
	if d.name != "" {
		attrs = append(attrs, slog.String("name", d.name))
	}
	if d.entry != "" {
		attrs = append(attrs, slog.String("entry", d.entry))
	}
	attrs = append(attrs, slog.String("reason", d.reason))
	if held > 0 {
		attrs = append(attrs, slog.Uint64("unlogged_before", held))
	}
	n.log.LogAttrs(context.Background(), slog.LevelInfo, "network decision", attrs...)
	if n.onDecision != nil {
		dst := ""
		if d.dst.IsValid() {
			dst = d.dst.String()
		}
		n.onDecision(Decision{Allowed: d.allow, Proto: d.proto, Dst: dst, Port: int(d.port), Name: d.name,
			Entry: d.entry, Reason: d.reason, UnloggedBefore: held})
	}
}

// Decision is one egress decision as Config.OnDecision receives it: the fields of its
// log line. It is the runtime's type, so a sandbox passes it on as it is.
type Decision = runtime.EgressDecision
