package network

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzParsePolicy: the parser never panics, and what it accepts is well-formed: an entry has
// no white space, its port (if any) is 1 to 65535, a host entry has a port, a name entry a
// valid host name, a prefix entry a masked prefix outside the loopback range.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"api.example.com:443", "*.example.com", "10.0.0.0/8:5432", "[2001:db8::1]:443",
		"host:11434", "203.0.113.7", "2001:db8::/32:443", "0.0.0.0/0", "host", "[::1]", "a:b:c", "*.", "1.2.3",
		"10.0.0.1/8", "::ffff:1.2.3.4", "localhost:1", "\x00", "ex\u00e4mple.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy([]string{s})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "egress entry ") {
				t.Fatalf("%q: error %q does not name the entry", s, err)
			}
			return
		}
		e := p.entries[0]
		if strings.ContainsAny(s, " \t\r\n\x00") {
			t.Fatalf("accepted %q with white space or NUL", s)
		}
		switch e.kind {
		case kindHost:
			if e.port == 0 {
				t.Fatalf("%q: host entry without a port", s)
			}
		case kindName, kindWildcard:
			if err := checkHostName(e.name); err != nil || e.name != strings.ToLower(e.name) {
				t.Fatalf("%q: accepted name %q: %v", s, e.name, err)
			}
		case kindPrefix:
			if !e.prefix.IsValid() || e.prefix.Masked() != e.prefix || e.prefix.Addr().Is4In6() {
				t.Fatalf("%q: accepted prefix %v", s, e.prefix)
			}
			if loopback4.Overlaps(e.prefix) && e.prefix.Bits() >= 8 || e.prefix == loopback6 {
				t.Fatalf("%q: accepted a loopback entry", s)
			}
		}
	})
}

// FuzzDNSFilter feeds raw messages from the guest to the VM's resolver logic: it never
// panics, asks upstream at most once and only for an allowed name, answers within 512 bytes,
// and never answers a denied name.
func FuzzDNSFilter(f *testing.F) {
	f.Add(dnsQuery(f, "api.example.com", dnsmessage.TypeA, 1))
	f.Add(dnsQuery(f, "x.cdn.example.net", dnsmessage.TypeA, 2))
	f.Add(dnsQuery(f, "evil.example.org", dnsmessage.TypeA, 3))
	f.Add(dnsQuery(f, HostName, dnsmessage.TypeA, 4))
	f.Add(dnsQuery(f, "api.example.com", dnsmessage.TypeAAAA, 5))
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h := newDNSHarness(t, "api.example.com:443", "*.cdn.example.net")
		upstream := &allowCheckingResolver{t: t, policy: h.f.policy}
		h.f.resolver = upstream
		out := h.f.answer(context.Background(), msg, false)
		if upstream.calls > 1 {
			t.Fatalf("%d upstream lookups for one message", upstream.calls)
		}
		if out == nil {
			return
		}
		if len(out) > 512 {
			t.Fatalf("reply of %d bytes", len(out))
		}
		var p dnsmessage.Parser
		if _, err := p.Start(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if err := p.SkipAllQuestions(); err != nil {
			t.Fatalf("reply questions: %v", err)
		}
		for {
			rh, err := p.AnswerHeader()
			if errors.Is(err, dnsmessage.ErrSectionDone) {
				break
			}
			if err != nil {
				t.Fatalf("reply answers: %v", err)
			}
			name := strings.ToLower(strings.TrimSuffix(rh.Name.String(), "."))
			if _, ok := h.f.policy.allowsName(name); !ok && name != HostName {
				t.Fatalf("answered the denied name %q", name)
			}
			if err := p.SkipAnswer(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// allowCheckingResolver fails the test when asked for a name the policy denies, and answers
// every allowed name with a public and a private address.
type allowCheckingResolver struct {
	t      *testing.T
	policy *Policy
	calls  int
}

func (r *allowCheckingResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.calls++
	if _, ok := r.policy.allowsName(host); !ok {
		r.t.Fatalf("asked upstream for the denied name %q", host)
	}
	return addrs("203.0.113.9", "10.0.0.9"), nil
}
