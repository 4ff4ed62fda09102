package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
)

// decision is one allow or deny, as logged and counted.
type decision struct {
	allow  bool
	proto  string // "tcp", "udp" or "dns"
	dst    netip.Addr
	port   uint16
	name   string // the DNS name asked for, or the name the destination is pinned to
	entry  string // the egress entry that allowed it
	reason string
	dial   string // host-side address to dial when allowed (the host's loopback for host:PORT)
}

// pin records that an address was returned for an allowed name: flows to it are allowed on
// the ports of the entries that named it.
type pin struct {
	name    string // the last allowed name it was returned for
	entries []int  // indexes of the policy entries that allowed those names; at most len(policy)
	seq     uint64 // when it was last pinned, to evict the stalest when the table is full
}

// pins is one network's address-to-name table, bounded so a guest resolving endless names
// cannot grow it: when it is full the stalest address is forgotten (a flow to it is then
// denied until its name is resolved again).
type pins struct {
	mu  sync.Mutex
	max int
	seq uint64
	m   map[netip.Addr]*pin
}

func newPins(max int) *pins { return &pins{max: max, m: make(map[netip.Addr]*pin)} }

func (t *pins) add(a netip.Addr, name string, entries []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	p := t.m[a]
	if p == nil {
		if len(t.m) >= t.max {
			t.evictLocked()
		}
		p = &pin{}
		t.m[a] = p
	}
	p.name, p.seq = name, t.seq
	for _, i := range entries {
		if !containsInt(p.entries, i) {
			p.entries = append(p.entries, i)
		}
	}
}

func (t *pins) evictLocked() {
	var oldest netip.Addr
	var seq uint64
	for a, p := range t.m {
		if !oldest.IsValid() || p.seq < seq {
			oldest, seq = a, p.seq
		}
	}
	delete(t.m, oldest)
}

func (t *pins) lookup(a netip.Addr) (name string, entries []int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m[a]
	if p == nil {
		return "", nil, false
	}
	return p.name, append([]int(nil), p.entries...), true
}

func (t *pins) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// decide applies the policy to a flow the guest opens to dst:port. It looks only at the
// guest-visible destination; nothing is dialled to decide.
func (n *Network) decide(proto string, dst netip.Addr, port uint16) decision {
	d := decision{proto: proto, dst: dst, port: port}
	deny := func(format string, args ...any) decision {
		d.reason = fmt.Sprintf(format, args...)
		return d
	}
	allow := func(e *entry, reason string) decision {
		d.allow, d.reason = true, reason
		if e != nil {
			d.entry = e.text
		}
		d.dial = netip.AddrPortFrom(dst, port).String()
		return d
	}
	dst = dst.Unmap()
	p := n.policy
	switch {
	case dst == n.guest.Gateway:
		return deny("the gateway serves only DNS (UDP port 53)")
	case dst == n.guest.HostAddr:
		d.name = HostName
		e := p.hostEntry(port)
		if e == nil {
			return deny("host port %d is not opened (an egress entry \"host:%d\" would open it)", port, port)
		}
		d = allow(e, "host port opened by an entry")
		d.dial = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port).String()
		return d
	case n.subnet.Contains(dst):
		return deny("address inside the VM's own network %s", n.subnet)
	case !dst.Is4():
		return deny("the VM's network is IPv4 only")
	}
	if r, special := n.restrictedRange(dst); special {
		if e := p.addrEntry(dst, port, r.prefix.Bits()); e != nil {
			return allow(e, "in "+r.what+", named by an entry")
		}
		return deny("in %s %s: denied unless an IP/CIDR entry at least as specific names it", r.what, r.prefix)
	}
	if p.Empty() {
		return allow(nil, "public address (no egress entries: every public address is allowed)")
	}
	if e := p.addrEntry(dst, port, 0); e != nil {
		return allow(e, "address allowed by an entry")
	}
	name, idx, ok := n.pins.lookup(dst)
	if !ok {
		return deny("no entry allows this address, and no allowed name resolved to it in this VM")
	}
	d.name = name
	var ports []string
	for _, i := range idx {
		e := &p.entries[i]
		if e.portOK(port) {
			return allow(e, "address pinned to an allowed name")
		}
		ports = append(ports, strconv.Itoa(int(e.port)))
	}
	return deny("address pinned to %s, whose entries allow port(s) %v only", name, ports)
}

// restrictedRange returns the range a lies in that only an IP/CIDR entry (at least as
// specific) can open: the always-denied ranges, and the host's own addresses, which would
// otherwise let the guest reach the host's services on an address that counts as public.
func (n *Network) restrictedRange(a netip.Addr) (rangeInfo, bool) {
	if r, ok := deniedRange(a); ok {
		return r, true
	}
	if _, ok := n.hostOwn[a]; ok {
		return rangeInfo{netip.PrefixFrom(a, a.BitLen()), "the host's own addresses"}, true
	}
	return rangeInfo{}, false
}
