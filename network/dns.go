package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

const (
	// maxDNSMessage bounds a query read from the guest; a longer datagram is cut to this and
	// then fails to parse. Queries are a header and one question: well under 512 bytes.
	maxDNSMessage = 1232
	// maxAnswers bounds the addresses returned (and pinned) per query, which keeps every
	// reply within 512 bytes, so no client needs DNS over TCP.
	maxAnswers = 16
	dnsTTL     = 60
)

// dnsFilter is the VM's resolver logic, apart from the sockets: it answers one raw query.
// It resolves upstream only names the policy allows, answers A records only (the guest
// network is IPv4 only), keeps only the addresses the policy lets the guest reach by name,
// and pins them to the name.
type dnsFilter struct {
	policy   *Policy
	resolver Resolver
	pins     *pins
	timeout  time.Duration
	hostAddr netip.Addr
	// restricted says which addresses a name cannot open (Network.restrictedRange).
	restricted func(netip.Addr) (rangeInfo, bool)
	record     func(decision)
}

func (n *Network) dnsFilter() *dnsFilter {
	return &dnsFilter{policy: n.policy, resolver: n.resolver, pins: n.pins, timeout: n.limits.DNSTimeout,
		hostAddr: n.guest.HostAddr, restricted: n.restrictedRange, record: n.record}
}

// answer returns the reply to one query from the guest, or nil when there is nothing to
// answer (not a parseable query). busy answers SERVFAIL instead of resolving upstream.
func (f *dnsFilter) answer(ctx context.Context, query []byte, busy bool) []byte {
	if len(query) > maxDNSMessage {
		return nil
	}
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil // never answer a response: no reflection
	}
	reply := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	q, err := p.Question()
	if err != nil {
		reply.RCode = dnsmessage.RCodeFormatError
		return build(reply, nil, nil)
	}
	if _, err := p.Question(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		reply.RCode = dnsmessage.RCodeFormatError // one question per query, as every resolver sends
		return build(reply, &q, nil)
	}
	if h.OpCode != 0 {
		reply.RCode = dnsmessage.RCodeNotImplemented
		return build(reply, &q, nil)
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	d := decision{proto: "dns", name: name}
	refuse := func(rcode dnsmessage.RCode, reason string) []byte {
		d.reason = reason
		f.record(d)
		reply.RCode = rcode
		return build(reply, &q, nil)
	}
	if q.Class != dnsmessage.ClassINET {
		return refuse(dnsmessage.RCodeRefused, "only class IN is served")
	}
	if checkHostName(name) != nil {
		d.name = fmt.Sprintf("%q", name) // hostile bytes stay quoted in the log
		return refuse(dnsmessage.RCodeNameError, "not a host name")
	}
	if name == HostName {
		d.allow, d.reason = true, "the host's name"
		f.record(d)
		if q.Type != dnsmessage.TypeA {
			return build(reply, &q, nil)
		}
		return build(reply, &q, []netip.Addr{f.hostAddr})
	}
	matched, ok := f.policy.allowsName(name)
	if !ok {
		return refuse(dnsmessage.RCodeNameError, "no egress entry names it")
	}
	if q.Type != dnsmessage.TypeA {
		d.allow, d.reason = true, "allowed name; only A records are served (the VM's network is IPv4 only)"
		f.record(d)
		return build(reply, &q, nil)
	}
	if busy {
		d.allow, d.reason = true, "allowed name; SERVFAIL: too many lookups in flight"
		f.record(d)
		reply.RCode = dnsmessage.RCodeServerFailure
		return build(reply, &q, nil)
	}
	lctx, cancel := context.WithTimeout(ctx, f.timeout)
	addrs, err := f.resolver.LookupNetIP(lctx, "ip4", name)
	cancel()
	if err != nil {
		d.allow = true
		reply.RCode = dnsmessage.RCodeServerFailure
		if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			reply.RCode = dnsmessage.RCodeNameError
		}
		d.reason = "allowed name; upstream: " + err.Error()
		f.record(d)
		return build(reply, &q, nil)
	}
	kept, dropped := f.reachable(addrs)
	if len(kept) == 0 && len(dropped) > 0 {
		return refuse(dnsmessage.RCodeSuccess, fmt.Sprintf("every address of the name is in a restricted range (%v); a name opens only public addresses, an IP/CIDR entry opens a private one", dropped))
	}
	if !f.policy.Empty() {
		for _, a := range kept {
			f.pins.add(a, name, matched)
		}
	}
	d.allow = true
	d.reason = fmt.Sprintf("allowed name; answered %v", kept)
	if len(dropped) > 0 {
		d.reason += fmt.Sprintf(", left out %v (restricted ranges)", dropped)
	}
	if len(matched) > 0 {
		d.entry = f.policy.entries[matched[0]].text
	}
	f.record(d)
	return build(reply, &q, kept)
}

// reachable splits resolved addresses into those the guest may reach by name (IPv4, public
// or opened by an IP/CIDR entry; at most maxAnswers, no duplicates) and those left out.
func (f *dnsFilter) reachable(addrs []netip.Addr) (kept, dropped []netip.Addr) {
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() || containsAddr(kept, a) {
			continue
		}
		if r, special := f.restricted(a); special && f.policy.addrEntry(a, 0, r.prefix.Bits()) == nil {
			if len(dropped) < maxAnswers {
				dropped = append(dropped, a)
			}
			continue
		}
		kept = append(kept, a)
		if len(kept) == maxAnswers {
			break
		}
	}
	return kept, dropped
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// build packs a reply: the question echoed (if any) and A records for addrs.
func build(h dnsmessage.Header, q *dnsmessage.Question, addrs []netip.Addr) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	_ = b.StartQuestions()
	if q != nil {
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	_ = b.StartAnswers()
	for _, a := range addrs {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		if err := b.AResource(rh, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// dnsServer serves the filter on the gateway's UDP port 53.
type dnsServer struct {
	n    *Network
	conn *gonet.UDPConn
	f    *dnsFilter
	sem  chan struct{}
}

func newDNSServer(n *Network) (*dnsServer, error) {
	conn, err := gonet.DialUDP(n.stack, &tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(n.guest.DNS.As4()), Port: 53}, nil, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("network: resolver on %s:53: %w", n.guest.DNS, err)
	}
	return &dnsServer{n: n, conn: conn, f: n.dnsFilter(), sem: make(chan struct{}, n.limits.DNSConcurrency)}, nil
}

// serve answers queries until the stack closes. At most Limits.DNSConcurrency lookups run at
// once; a query beyond that is still decided, and an allowed name gets SERVFAIL (the guest's
// resolver retries) rather than a goroutine.
func (s *dnsServer) serve() {
	defer s.conn.Close()
	buf := make([]byte, maxDNSMessage+1)
	for {
		k, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:k]...)
		select {
		case s.sem <- struct{}{}:
			ok := s.n.goTracked(func() {
				defer func() { <-s.sem }()
				s.reply(s.f.answer(s.n.ctx, q, false), from)
			})
			if !ok {
				return
			}
		default:
			s.reply(s.f.answer(s.n.ctx, q, true), from)
		}
	}
}

func (s *dnsServer) reply(msg []byte, to net.Addr) {
	if msg != nil {
		_, _ = s.conn.WriteTo(msg, to)
	}
}
