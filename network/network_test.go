package network

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// refuseWithin is how fast a denied connect must be refused: "at once", with room for a
// loaded machine.
const refuseWithin = 500 * time.Millisecond

func TestAllowedNameWorks(t *testing.T) {
	e := newEnv(t, []string{"api.example.com:443"})
	e.resolver.names["api.example.com"] = []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	e.dialer.route("203.0.113.10:443", echoServer(t))

	rcode, addrs := e.g.query("api.example.com", dnsmessage.TypeA)
	if rcode != dnsmessage.RCodeSuccess || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("203.0.113.10") {
		t.Fatalf("A api.example.com: %v %v, want 203.0.113.10", rcode, addrs)
	}
	e.g.mustEcho("203.0.113.10:443")

	s := e.n.Stats()
	if s.DNS.Allowed != 1 || s.TCP.Allowed != 1 || s.TCP.Denied != 0 {
		t.Fatalf("stats %+v, want one DNS and one TCP allowed", s)
	}
	if got := e.dialer.calls(); !slices.Equal(got, []string{"tcp 203.0.113.10:443"}) {
		t.Fatalf("dialled %v, want only the pinned address on 443", got)
	}
	for _, line := range []string{
		`"msg":"network decision","decision":"allow","proto":"dns","name":"api.example.com","entry":"api.example.com:443","reason":"allowed name; answered [203.0.113.10]"`,
		`"msg":"network decision","decision":"allow","proto":"tcp","dst":"203.0.113.10","port":443,"name":"api.example.com","entry":"api.example.com:443","reason":"address pinned to an allowed name"`,
	} {
		if !strings.Contains(e.logs.String(), line) {
			t.Errorf("log lacks %s in:\n%s", line, e.logs)
		}
	}
}

func TestUnlistedNameNXDOMAIN(t *testing.T) {
	e := newEnv(t, []string{"api.example.com:443", "*.example.net"})
	e.resolver.names["other.example.org"] = []netip.Addr{netip.MustParseAddr("203.0.113.11")}
	e.resolver.names["example.net"] = []netip.Addr{netip.MustParseAddr("203.0.113.12")}
	for _, name := range []string{"other.example.org", "example.com", "example.net", "xapi.example.com"} {
		if rcode, addrs := e.g.query(name, dnsmessage.TypeA); rcode != dnsmessage.RCodeNameError || len(addrs) != 0 {
			t.Errorf("A %s: %v %v, want NXDOMAIN", name, rcode, addrs)
		}
	}
	if got := e.resolver.lookups(); len(got) != 0 {
		t.Fatalf("denied names reached the upstream resolver: %v", got)
	}
	if s := e.n.Stats(); s.DNS.Denied != 4 {
		t.Fatalf("stats %+v, want 4 DNS denials", s)
	}
	if !strings.Contains(e.logs.String(), `"decision":"deny","proto":"dns","name":"other.example.org","reason":"no egress entry names it"`) {
		t.Fatalf("no structured deny line for other.example.org in:\n%s", e.logs)
	}
}

func TestWildcardNameWorks(t *testing.T) {
	e := newEnv(t, []string{"*.example.com"})
	e.resolver.names["a.b.example.com"] = []netip.Addr{netip.MustParseAddr("203.0.113.20")}
	e.dialer.route("203.0.113.20:8443", echoServer(t))
	if _, addrs := e.g.query("A.B.Example.COM", dnsmessage.TypeA); len(addrs) != 1 {
		t.Fatalf("wildcard name not answered: %v", addrs)
	}
	e.g.mustEcho("203.0.113.20:8443") // no port in the entry: every port
}

func TestPinnedAddressOtherPortRefused(t *testing.T) {
	e := newEnv(t, []string{"api.example.com:443"})
	e.resolver.names["api.example.com"] = []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	if _, addrs := e.g.query("api.example.com", dnsmessage.TypeA); len(addrs) != 1 {
		t.Fatalf("allowed name not answered: %v", addrs)
	}
	e.g.mustRefuse("203.0.113.10:80", refuseWithin)
	if got := e.dialer.calls(); len(got) != 0 {
		t.Fatalf("dialled %v for a denied port", got)
	}
	if !strings.Contains(e.logs.String(), `"port":80,"name":"api.example.com","reason":"address pinned to api.example.com, whose entries allow port(s) [443] only"`) {
		t.Fatalf("deny line does not name the pin and its ports:\n%s", e.logs)
	}
}

func TestAddressNotAllowedRefusedAtOnce(t *testing.T) {
	e := newEnv(t, []string{"api.example.com:443", "198.51.100.0/24:22"})
	e.g.mustRefuse("203.0.113.99:443", refuseWithin) // never resolved by an allowed name
	e.g.mustRefuse("198.51.100.7:443", refuseWithin) // CIDR allowed on another port
	e.dialer.route("198.51.100.7:22", echoServer(t))
	e.g.mustEcho("198.51.100.7:22")
	if s := e.n.Stats(); s.TCP.Denied != 2 || s.TCP.Allowed != 1 {
		t.Fatalf("stats %+v, want 2 TCP denied and 1 allowed", s)
	}
}

// Private, link-local and other special ranges are denied without a dial, even with no
// entries (public only) and even under an entry as broad as 0.0.0.0/0.
func TestDeniedRangesNeverDialled(t *testing.T) {
	for _, entries := range [][]string{nil, {"0.0.0.0/0"}, {"api.example.com"}} {
		t.Run(fmt.Sprint(entries), func(t *testing.T) {
			e := newEnv(t, entries)
			for _, to := range []string{"169.254.169.254:80", "10.0.0.1:80", "192.168.1.1:443", "172.16.0.1:22", "100.64.0.1:80", "0.1.2.3:80"} {
				e.g.mustRefuse(to, refuseWithin)
			}
			if got := e.dialer.calls(); len(got) != 0 {
				t.Fatalf("dialled %v", got)
			}
		})
	}
}

func TestPrivateRangeNamedByEntry(t *testing.T) {
	e := newEnv(t, []string{"10.0.0.0/8:5432", "169.254.169.254:80"})
	e.dialer.route("10.0.0.1:5432", echoServer(t))
	e.dialer.route("169.254.169.254:80", echoServer(t))
	e.g.mustEcho("10.0.0.1:5432")
	e.g.mustEcho("169.254.169.254:80")
	e.g.mustRefuse("10.0.0.1:80", refuseWithin)
	e.g.mustRefuse("169.254.169.253:80", refuseWithin)
}

func TestEmptyPolicyAllowsPublicOnly(t *testing.T) {
	e := newEnv(t, nil)
	e.resolver.names["anything.example"] = []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("10.1.2.3")}
	rcode, addrs := e.g.query("anything.example", dnsmessage.TypeA)
	if rcode != dnsmessage.RCodeSuccess || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("203.0.113.5")}) {
		t.Fatalf("A anything.example: %v %v, want only the public address", rcode, addrs)
	}
	e.dialer.route("198.51.100.1:1234", echoServer(t))
	e.g.mustEcho("198.51.100.1:1234")
}

func TestHostPort(t *testing.T) {
	srv := echoServer(t)
	port := netip.MustParseAddrPort(srv).Port()
	e := newEnv(t, []string{"host:" + strconv.Itoa(int(port))})
	e.dialer.route(srv, srv)
	rcode, addrs := e.g.query(HostName, dnsmessage.TypeA)
	host := e.n.Guest().HostAddr
	if rcode != dnsmessage.RCodeSuccess || !slices.Equal(addrs, []netip.Addr{host}) {
		t.Fatalf("A %s: %v %v, want %s", HostName, rcode, addrs, host)
	}
	e.g.mustEcho(netip.AddrPortFrom(host, port).String())
	e.g.mustRefuse(netip.AddrPortFrom(host, port+1).String(), refuseWithin)
	e.g.mustRefuse(netip.AddrPortFrom(host, 22).String(), refuseWithin)
	if got := e.dialer.calls(); !slices.Equal(got, []string{"tcp " + srv}) {
		t.Fatalf("dialled %v, want only the host's loopback port %d", got, port)
	}
}

func TestGatewayServesOnlyDNS(t *testing.T) {
	e := newEnv(t, nil)
	gw := e.n.Guest().Gateway
	e.g.mustRefuse(netip.AddrPortFrom(gw, 53).String(), refuseWithin)
	e.g.mustRefuse(netip.AddrPortFrom(gw, 80).String(), refuseWithin)
	e.g.mustRefuse("10.0.2.7:80", refuseWithin) // the VM's own subnet
	e.g.expectUDPRefused(netip.AddrPortFrom(gw, 123).String())
}

func TestUDP(t *testing.T) {
	e := newEnv(t, []string{"203.0.113.53:5353", "api.example.com"})
	e.dialer.route("203.0.113.53:5353", udpEchoServer(t))
	e.g.mustEchoUDP("203.0.113.53:5353")
	e.g.expectUDPRefused("8.8.8.8:53") // an outside resolver
	e.g.expectUDPRefused("203.0.113.53:53")
	if s := e.n.Stats(); s.UDP.Allowed != 1 || s.UDP.Denied != 2 {
		t.Fatalf("stats %+v, want 1 UDP allowed and 2 denied", s)
	}
	if got := e.dialer.calls(); !slices.Equal(got, []string{"udp 203.0.113.53:5353"}) {
		t.Fatalf("dialled %v", got)
	}
}

func TestFlowLimit(t *testing.T) {
	e := newEnv(t, []string{"203.0.113.0/24"}, func(c *Config) { c.Limits.MaxFlows = 3 })
	e.dialer.route("203.0.113.1:7", echoServer(t))
	var open []net.Conn
	for i := 0; i < 3; i++ {
		c, err := e.g.dial("203.0.113.1:7", 5*time.Second)
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		open = append(open, c)
	}
	// A burst beyond the limit is refused at once, every time.
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := e.g.dial("203.0.113.1:7", 5*time.Second)
			if err == nil {
				c.Close()
				errs <- fmt.Errorf("a flow beyond the limit of 3 was admitted")
			} else if time.Since(start) > 2*refuseWithin {
				errs <- fmt.Errorf("refused after %v", time.Since(start))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !strings.Contains(e.logs.String(), "flow limit: 3 flows are open (at most 3 at once)") {
		t.Fatalf("no flow-limit deny line in:\n%s", e.logs)
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := e.g.dial("203.0.113.1:7", 5*time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow admitted after one of 3 closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range open[1:] {
		c.Close()
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, []string{"203.0.113.0/24"}, func(c *Config) { c.Limits.FlowsPerSecond = 5 })
	now := time.Now()
	e.n.gate.mu.Lock()
	e.n.gate.now = func() time.Time { return now } // no refill while the burst runs
	e.n.gate.last = now
	e.n.gate.mu.Unlock()
	e.dialer.route("203.0.113.1:7", echoServer(t))
	admitted := 0
	for i := 0; i < 12; i++ {
		c, err := e.g.dial("203.0.113.1:7", 5*time.Second)
		if err == nil {
			admitted++
			c.Close()
		}
	}
	if admitted != 5 {
		t.Fatalf("%d of a burst of 12 admitted, want 5 (FlowsPerSecond)", admitted)
	}
	if s := e.n.Stats(); s.TCP.Denied != 7 {
		t.Fatalf("stats %+v, want 7 denied", s)
	}
}

// Two VMs' networks share nothing: frames, pins and flows of one never reach the other.
func TestTwoNetworksIsolated(t *testing.T) {
	a := newEnv(t, []string{"api.example.com:443"})
	b := newEnv(t, []string{"api.example.com:443"}, func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.3.0/24") })
	a.resolver.names["api.example.com"] = []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	a.dialer.route("203.0.113.10:443", echoServer(t))
	if _, addrs := a.g.query("api.example.com", dnsmessage.TypeA); len(addrs) != 1 {
		t.Fatal("A api.example.com not answered in network a")
	}
	a.g.mustEcho("203.0.113.10:443")
	// b never resolved the name: the address a pinned is not pinned in b.
	b.g.mustRefuse("203.0.113.10:443", refuseWithin)
	// a's guest reaching for b's guest is denied inside a.
	a.g.mustRefuse(netip.AddrPortFrom(b.n.Guest().Address.Addr(), 80).String(), refuseWithin)
	framesB := b.g.frames.Load()
	a.g.expectUDPRefused(netip.AddrPortFrom(a.n.Guest().Gateway, 123).String())
	time.Sleep(50 * time.Millisecond)
	if got := b.g.frames.Load(); got != framesB {
		t.Fatalf("network b's guest received %d frames while only a's guest was sending", got-framesB)
	}
	if s := b.n.Stats(); s.TCP.Allowed != 0 || s.DNS.Allowed != 0 {
		t.Fatalf("network b counted a's traffic: %+v", s)
	}
}

func TestStatsJSON(t *testing.T) {
	e := newEnv(t, nil)
	e.g.mustRefuse("10.0.0.1:80", refuseWithin)
	js, err := json.Marshal(e.n.Stats())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"tcp":{"allowed":0,"denied":1},"udp":{"allowed":0,"denied":0},"dns":{"allowed":0,"denied":0},"inbound":0}`
	if string(js) != want {
		t.Fatalf("stats JSON %s, want %s", js, want)
	}
}
