package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxEntries bounds a policy: every new flow is matched against the entries in turn.
const MaxEntries = 1024

// maxEntryLen bounds one entry's text (a DNS name is at most 253 characters).
const maxEntryLen = 300

type entryKind int

const (
	kindName     entryKind = iota // api.example.com[:port]
	kindWildcard                  // *.example.com[:port]: subdomains at any depth, not example.com
	kindPrefix                    // 10.0.0.0/8[:port], 203.0.113.7[:port], [2001:db8::1]:port
	kindHost                      // host:PORT: one port on the host's loopback
)

// entry is one parsed egress entry.
type entry struct {
	text   string // as written, for logs and errors
	kind   entryKind
	name   string       // kindName: the name; kindWildcard: the suffix after "*."; lower case, no final dot
	prefix netip.Prefix // kindPrefix, masked
	port   uint16       // 0 allows every port (not valid for kindHost)
}

func (e *entry) portOK(port uint16) bool { return e.port == 0 || e.port == port }

func (e *entry) matchName(name string) bool {
	switch e.kind {
	case kindName:
		return name == e.name
	case kindWildcard:
		return len(name) > len(e.name)+1 && strings.HasSuffix(name, e.name) && name[len(name)-len(e.name)-1] == '.'
	}
	return false
}

// Policy is a box's parsed egress entries. The zero of a networked box is an empty policy:
// every public address, no private one.
type Policy struct {
	entries []entry
}

// ParsePolicy parses a box's egress entries. Each is one of
//
//	api.example.com[:PORT]     the name (the VM's resolver answers it; its addresses are pinned to it)
//	*.example.com[:PORT]       every name under example.com (not example.com itself)
//	203.0.113.7[:PORT]         one address; 10.0.0.0/8[:PORT] a CIDR; [2001:db8::1]:443 for IPv6
//	host:PORT                  that port on the host's loopback, as host.voidbox.internal in the guest
//
// An entry without a port allows every port. Private, link-local, loopback, multicast and
// broadcast addresses are reached only through an IP/CIDR entry at least as specific as their
// range (10.0.0.0/8 opens RFC 1918's 10/8, 0.0.0.0/0 does not), never through a name. The
// error names the entry and what is wrong with it.
func ParsePolicy(entries []string) (*Policy, error) {
	if len(entries) > MaxEntries {
		return nil, fmt.Errorf("egress has %d entries, at most %d are allowed", len(entries), MaxEntries)
	}
	p := &Policy{entries: make([]entry, 0, len(entries))}
	for _, s := range entries {
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("egress entry %q: %s", s, err)
		}
		p.entries = append(p.entries, e)
	}
	return p, nil
}

// Entries returns the entries as written.
func (p *Policy) Entries() []string {
	out := make([]string, len(p.entries))
	for i, e := range p.entries {
		out[i] = e.text
	}
	return out
}

// Empty reports whether the policy has no entries: every public address is allowed.
func (p *Policy) Empty() bool { return len(p.entries) == 0 }

const entryForms = `use a host name ("api.example.com", "*.example.com"), an IP or CIDR ("203.0.113.7", "10.0.0.0/8"), each with an optional ":PORT", or "host:PORT"`

func parseEntry(s string) (entry, error) {
	e := entry{text: s}
	switch {
	case s == "":
		return e, fmt.Errorf("is empty (%s)", entryForms)
	case len(s) > maxEntryLen:
		return e, fmt.Errorf("is %d characters long, at most %d are allowed", len(s), maxEntryLen)
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		return e, fmt.Errorf("contains white space, a control or a non-ASCII character (%s)", entryForms)
	case strings.EqualFold(s, "host"):
		return e, fmt.Errorf(`needs a port: "host:PORT" opens one port of the host's loopback`)
	case len(s) > len("host:") && strings.EqualFold(s[:len("host:")], "host:"):
		port, err := parsePort(s[len("host:"):])
		if err != nil {
			return e, err
		}
		e.kind, e.port = kindHost, port
		return e, nil
	case strings.Contains(s, "/"):
		return parsePrefixEntry(e)
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return e, fmt.Errorf(`has "[" without "]" (write an IPv6 address with a port as "[2001:db8::1]:443")`)
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return e, fmt.Errorf("%q is not an IPv6 address", s[1:end])
		}
		if rest := s[end+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return e, fmt.Errorf(`has %q after "]" where ":PORT" or nothing belongs`, rest)
			}
			if e.port, err = parsePort(rest[1:]); err != nil {
				return e, err
			}
		}
		return addrEntry(e, a)
	case strings.Count(s, ":") > 1:
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return e, fmt.Errorf(`is not an IPv6 address (write an IPv6 address with a port as "[2001:db8::1]:443")`)
		}
		return addrEntry(e, a)
	}
	host, portText, hasPort := strings.Cut(s, ":")
	if hasPort {
		port, err := parsePort(portText)
		if err != nil {
			return e, err
		}
		e.port = port
	}
	if looksNumeric(host) {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return e, fmt.Errorf("%q is not an IPv4 address (%s)", host, entryForms)
		}
		return addrEntry(e, a)
	}
	return nameEntry(e, host)
}

// looksNumeric reports whether a host part is digits and dots only, so that "1.2.3" is
// refused as a bad address rather than taken for a name.
func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

func parsePrefixEntry(e entry) (entry, error) {
	s := e.text
	slash := strings.IndexByte(s, '/')
	addrText, rest := s[:slash], s[slash+1:]
	if strings.HasPrefix(addrText, "[") && strings.HasSuffix(addrText, "]") {
		addrText = addrText[1 : len(addrText)-1]
	}
	bits, portText, hasPort := strings.Cut(rest, ":")
	if hasPort {
		port, err := parsePort(portText)
		if err != nil {
			return e, err
		}
		e.port = port
	}
	if bits == "" || strings.Trim(bits, "0123456789") != "" {
		return e, fmt.Errorf("%q is not a prefix length (write a CIDR as 10.0.0.0/8 or 2001:db8::/32)", bits)
	}
	p, err := netip.ParsePrefix(addrText + "/" + bits)
	if err != nil {
		return e, fmt.Errorf("%q is not a CIDR (write it as 10.0.0.0/8 or 2001:db8::/32)", addrText+"/"+bits)
	}
	if p.Addr().Is4In6() {
		return e, fmt.Errorf("is an IPv4-mapped IPv6 prefix: write the IPv4 CIDR itself")
	}
	if m := p.Masked(); m != p {
		return e, fmt.Errorf("%s has bits set after the prefix length; did you mean %s?", p, m)
	}
	if err := notLoopback(p); err != nil {
		return e, err
	}
	e.kind, e.prefix = kindPrefix, p
	return e, nil
}

func addrEntry(e entry, a netip.Addr) (entry, error) {
	if a.Is4In6() {
		return e, fmt.Errorf("is an IPv4-mapped IPv6 address: write the IPv4 address %s itself", a.Unmap())
	}
	p := netip.PrefixFrom(a, a.BitLen())
	if err := notLoopback(p); err != nil {
		return e, err
	}
	e.kind, e.prefix = kindPrefix, p
	return e, nil
}

// notLoopback refuses loopback entries: the guest's own loopback never leaves the guest, and
// the host's is reached with "host:PORT".
func notLoopback(p netip.Prefix) error {
	if loopback4.Contains(p.Addr()) && p.Bits() >= loopback4.Bits() || p == loopback6 {
		return fmt.Errorf(`names the loopback range; the host's loopback is reached with "host:PORT" (as %s in the guest)`, HostName)
	}
	return nil
}

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

func nameEntry(e entry, host string) (entry, error) {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	e.kind = kindName
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		e.kind, name = kindWildcard, rest
	}
	if strings.Contains(name, "*") {
		return e, fmt.Errorf(`a wildcard is allowed only as the whole first label, as in "*.example.com"`)
	}
	if err := checkHostName(name); err != nil {
		return e, err
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return e, fmt.Errorf(`names localhost; the host's loopback is reached with "host:PORT" (as %s in the guest)`, HostName)
	}
	e.name = name
	return e, nil
}

// checkHostName accepts lower-case DNS host names: labels of letters, digits, '-' and '_'
// (1 to 63 characters, no '-' at either end), 253 characters in all, not all digits at the end.
func checkHostName(name string) error {
	if name == "" {
		return fmt.Errorf("has no host name (%s)", entryForms)
	}
	if len(name) > 253 {
		return fmt.Errorf("host name is %d characters long, at most 253 are allowed", len(name))
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("host name %q has a label of %d characters (1 to 63 allowed)", name, len(l))
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host name %q has a label starting or ending with '-'", name)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host name %q contains %q (letters, digits, '-', '_' and '.' are allowed)", name, c)
			}
		}
	}
	if looksNumeric(labels[len(labels)-1]) {
		return fmt.Errorf("%q is neither an IP address nor a host name (its last label is a number)", name)
	}
	return nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// allowsName reports whether a DNS name (lower case, no final dot) may be resolved, and the
// indexes of the entries that name it (their ports are what its pinned addresses may reach).
func (p *Policy) allowsName(name string) (matched []int, ok bool) {
	if p.Empty() {
		return nil, true
	}
	for i := range p.entries {
		if p.entries[i].matchName(name) {
			matched = append(matched, i)
		}
	}
	return matched, len(matched) > 0
}

// addrEntry returns the first IP/CIDR entry that allows a on port (port 0 asks whether any
// port is allowed) and has a prefix length of at least minBits: an address in a restricted
// range opens only to an entry at least as specific as the range.
func (p *Policy) addrEntry(a netip.Addr, port uint16, minBits int) *entry {
	for i := range p.entries {
		e := &p.entries[i]
		if e.kind != kindPrefix || !e.prefix.Contains(a) || e.prefix.Bits() < minBits {
			continue
		}
		if port == 0 || e.portOK(port) {
			return e
		}
	}
	return nil
}

// hostEntry returns the host:PORT entry for port, if any.
func (p *Policy) hostEntry(port uint16) *entry {
	for i := range p.entries {
		if e := &p.entries[i]; e.kind == kindHost && e.port == port {
			return e
		}
	}
	return nil
}

// rangeInfo is an address range that is always denied unless an IP/CIDR entry names it.
type rangeInfo struct {
	prefix netip.Prefix
	what   string
}

var deniedRanges = func() []rangeInfo {
	var out []rangeInfo
	for _, r := range [][2]string{
		{"0.0.0.0/8", `the "this network" range`},
		{"10.0.0.0/8", "the private range (RFC 1918)"},
		{"100.64.0.0/10", "the carrier-grade NAT range (RFC 6598)"},
		{"127.0.0.0/8", "the loopback range"},
		{"169.254.0.0/16", "the link-local range (cloud metadata)"},
		{"172.16.0.0/12", "the private range (RFC 1918)"},
		{"192.168.0.0/16", "the private range (RFC 1918)"},
		{"224.0.0.0/4", "the multicast range"},
		{"240.0.0.0/4", "the reserved range (with the broadcast address)"},
		{"::/127", "the unspecified or loopback address"},
		{"::ffff:0:0/96", "the IPv4-mapped range"},
		{"fc00::/7", "the unique local range (ULA)"},
		{"fe80::/10", "the link-local range"},
		{"ff00::/8", "the multicast range"},
	} {
		out = append(out, rangeInfo{netip.MustParsePrefix(r[0]), r[1]})
	}
	return out
}()

// deniedRange returns the always-denied range a lies in, if any.
func deniedRange(a netip.Addr) (rangeInfo, bool) {
	for _, r := range deniedRanges {
		if r.prefix.Contains(a) {
			return r, true
		}
	}
	return rangeInfo{}, false
}
