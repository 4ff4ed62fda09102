package network

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

type dnsHarness struct {
	f         *dnsFilter
	resolver  *testResolver
	decisions []decision
}

func newDNSHarness(t testing.TB, entries ...string) *dnsHarness {
	t.Helper()
	p, err := ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	h := &dnsHarness{resolver: &testResolver{names: map[string][]netip.Addr{}}}
	h.f = &dnsFilter{policy: p, resolver: h.resolver, pins: newPins(64), timeout: time.Second,
		hostAddr: netip.MustParseAddr("10.0.2.254"), restricted: deniedRange, record: func(d decision) { h.decisions = append(h.decisions, d) }}
	return h
}

type parsedReply struct {
	rcode dnsmessage.RCode
	addrs []netip.Addr
	names []string
}

func parseReply(t testing.TB, msg []byte) parsedReply {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if err := p.SkipAllQuestions(); err != nil {
		t.Fatal(err)
	}
	r := parsedReply{rcode: h.RCode}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return r
		}
		if err != nil {
			t.Fatal(err)
		}
		a, err := p.AResource()
		if err != nil {
			t.Fatalf("answer of type %v: %v", rh.Type, err)
		}
		r.addrs = append(r.addrs, netip.AddrFrom4(a.A))
		r.names = append(r.names, rh.Name.String())
	}
}

func (h *dnsHarness) ask(t *testing.T, name string, qtype dnsmessage.Type) parsedReply {
	t.Helper()
	out := h.f.answer(context.Background(), dnsQuery(t, name, qtype, 7), false)
	if out == nil {
		t.Fatalf("no reply to %s", name)
	}
	return parseReply(t, out)
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestDNSLeavesOutDeniedRanges(t *testing.T) {
	h := newDNSHarness(t, "*.example.com", "10.9.0.0/16")
	h.resolver.names["mixed.example.com"] = addrs("10.1.2.3", "203.0.113.4", "169.254.169.254", "10.9.0.5", "2001:db8::1", "203.0.113.4")
	h.resolver.names["inside.example.com"] = addrs("192.168.1.1", "127.0.0.1")
	r := h.ask(t, "mixed.example.com", dnsmessage.TypeA)
	if r.rcode != dnsmessage.RCodeSuccess || !slices.Equal(r.addrs, addrs("203.0.113.4", "10.9.0.5")) {
		t.Fatalf("mixed: %v %v, want the public address and the one a CIDR entry opens", r.rcode, r.addrs)
	}
	for _, a := range addrs("203.0.113.4", "10.9.0.5") {
		if name, _, ok := h.f.pins.lookup(a); !ok || name != "mixed.example.com" {
			t.Errorf("%s not pinned to mixed.example.com", a)
		}
	}
	if _, _, ok := h.f.pins.lookup(netip.MustParseAddr("10.1.2.3")); ok {
		t.Error("a private address left out of the answer was pinned")
	}
	r = h.ask(t, "inside.example.com", dnsmessage.TypeA)
	if r.rcode != dnsmessage.RCodeSuccess || len(r.addrs) != 0 {
		t.Fatalf("inside: %v %v, want an empty answer", r.rcode, r.addrs)
	}
	if d := h.decisions[len(h.decisions)-1]; d.allow || d.name != "inside.example.com" {
		t.Fatalf("last decision %+v, want a deny for inside.example.com", d)
	}
}

func TestDNSMessageRules(t *testing.T) {
	h := newDNSHarness(t, "api.example.com")
	h.resolver.names["api.example.com"] = addrs("203.0.113.10")

	if r := h.ask(t, "api.example.com", dnsmessage.TypeAAAA); r.rcode != dnsmessage.RCodeSuccess || len(r.addrs) != 0 {
		t.Errorf("AAAA of an allowed name: %v %v, want an empty answer", r.rcode, r.addrs)
	}
	if r := h.ask(t, "api.example.com", dnsmessage.TypeTXT); r.rcode != dnsmessage.RCodeSuccess || len(r.addrs) != 0 {
		t.Errorf("TXT of an allowed name: %v %v, want an empty answer", r.rcode, r.addrs)
	}
	if r := h.ask(t, "evil.example.org", dnsmessage.TypeTXT); r.rcode != dnsmessage.RCodeNameError {
		t.Errorf("TXT of a denied name: %v, want NXDOMAIN", r.rcode)
	}
	if r := h.ask(t, HostName, dnsmessage.TypeA); !slices.Equal(r.addrs, addrs("10.0.2.254")) {
		t.Errorf("A %s: %v", HostName, r.addrs)
	}
	if got := h.resolver.lookups(); len(got) != 0 {
		t.Fatalf("only A queries of allowed names go upstream; asked %v", got)
	}

	two := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9})
	_ = two.StartQuestions()
	for _, n := range []string{"api.example.com.", "evil.example.org."} {
		_ = two.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(n), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	}
	msg, _ := two.Finish()
	if r := parseReply(t, h.f.answer(context.Background(), msg, false)); r.rcode != dnsmessage.RCodeFormatError || len(r.addrs) != 0 {
		t.Errorf("two questions: %v %v, want FORMERR", r.rcode, r.addrs)
	}

	resp := dnsQuery(t, "api.example.com", dnsmessage.TypeA, 9)
	resp[2] |= 0x80 // QR: a response
	if out := h.f.answer(context.Background(), resp, false); out != nil {
		t.Errorf("answered a response (%d bytes): a reflection", len(out))
	}
	notify := dnsQuery(t, "api.example.com", dnsmessage.TypeA, 9)
	notify[2] |= 4 << 3 // opcode NOTIFY
	if r := parseReply(t, h.f.answer(context.Background(), notify, false)); r.rcode != dnsmessage.RCodeNotImplemented {
		t.Errorf("opcode NOTIFY: %v, want NOTIMP", r.rcode)
	}
	chaos := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9})
	_ = chaos.StartQuestions()
	_ = chaos.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("api.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassCHAOS})
	msg, _ = chaos.Finish()
	if r := parseReply(t, h.f.answer(context.Background(), msg, false)); r.rcode != dnsmessage.RCodeRefused {
		t.Errorf("class CHAOS: %v, want REFUSED", r.rcode)
	}
	odd := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9})
	_ = odd.StartQuestions()
	_ = odd.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("a\x00i.example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, err := odd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if r := parseReply(t, h.f.answer(context.Background(), msg, false)); r.rcode != dnsmessage.RCodeNameError {
		t.Errorf("a name with a NUL byte: %v, want NXDOMAIN", r.rcode)
	}
	if d := h.decisions[len(h.decisions)-1]; d.reason != "not a host name" || d.name != `"a\x00i.example.com"` {
		t.Errorf("a name with a NUL byte: decision %+v, want it quoted and refused as not a host name", d)
	}
	if out := h.f.answer(context.Background(), make([]byte, maxDNSMessage+1), false); out != nil {
		t.Errorf("answered an oversized message")
	}
	if out := h.f.answer(context.Background(), []byte{1, 2, 3}, false); out != nil {
		t.Errorf("answered a message shorter than a header")
	}
}

func TestDNSUpstreamFailures(t *testing.T) {
	h := newDNSHarness(t, "*.example.com")
	if r := h.ask(t, "missing.example.com", dnsmessage.TypeA); r.rcode != dnsmessage.RCodeNameError {
		t.Errorf("a name upstream does not know: %v, want NXDOMAIN", r.rcode)
	}
	h.f.resolver = failingResolver{}
	if r := h.ask(t, "slow.example.com", dnsmessage.TypeA); r.rcode != dnsmessage.RCodeServerFailure {
		t.Errorf("an upstream timeout: %v, want SERVFAIL", r.rcode)
	}
}

type failingResolver struct{}

func (failingResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	return nil, context.DeadlineExceeded
}

func TestDNSBusyAndBounds(t *testing.T) {
	h := newDNSHarness(t, "*.example.com")
	var many []netip.Addr
	for i := 0; i < 100; i++ {
		many = append(many, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	h.resolver.names["cdn.example.com"] = many
	r := h.ask(t, "cdn.example.com", dnsmessage.TypeA)
	if len(r.addrs) != maxAnswers || h.f.pins.len() != maxAnswers {
		t.Fatalf("%d answers and %d pins for 100 addresses, want %d", len(r.addrs), h.f.pins.len(), maxAnswers)
	}
	out := h.f.answer(context.Background(), dnsQuery(t, "cdn.example.com", dnsmessage.TypeA, 1), false)
	if len(out) > 512 {
		t.Fatalf("reply of %d bytes, want it within 512 (no TCP fallback)", len(out))
	}
	asked := len(h.resolver.lookups())
	if r := parseReply(t, h.f.answer(context.Background(), dnsQuery(t, "cdn.example.com", dnsmessage.TypeA, 2), true)); r.rcode != dnsmessage.RCodeServerFailure {
		t.Fatalf("busy: %v, want SERVFAIL", r.rcode)
	}
	if r := parseReply(t, h.f.answer(context.Background(), dnsQuery(t, "evil.example.org", dnsmessage.TypeA, 3), true)); r.rcode != dnsmessage.RCodeNameError {
		t.Fatalf("busy, denied name: %v, want NXDOMAIN", r.rcode)
	}
	if got := len(h.resolver.lookups()); got != asked {
		t.Fatalf("a busy resolver went upstream")
	}
}
