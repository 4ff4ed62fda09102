package network

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePolicyAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind entryKind
		name string
		pfx  string
		port uint16
	}{
		{"api.example.com:443", kindName, "api.example.com", "", 443},
		{"API.Example.COM.", kindName, "api.example.com", "", 0},
		{"*.example.com", kindWildcard, "example.com", "", 0},
		{"*.example.com:8443", kindWildcard, "example.com", "", 8443},
		{"_srv.example.com", kindName, "_srv.example.com", "", 0},
		{"203.0.113.7", kindPrefix, "", "203.0.113.7/32", 0},
		{"203.0.113.7:22", kindPrefix, "", "203.0.113.7/32", 22},
		{"10.0.0.0/8", kindPrefix, "", "10.0.0.0/8", 0},
		{"10.0.0.0/8:5432", kindPrefix, "", "10.0.0.0/8", 5432},
		{"0.0.0.0/0", kindPrefix, "", "0.0.0.0/0", 0},
		{"[2001:db8::1]:443", kindPrefix, "", "2001:db8::1/128", 443},
		{"[2001:db8::1]", kindPrefix, "", "2001:db8::1/128", 0},
		{"2001:db8::1", kindPrefix, "", "2001:db8::1/128", 0},
		{"2001:db8::/32", kindPrefix, "", "2001:db8::/32", 0},
		{"2001:db8::/32:443", kindPrefix, "", "2001:db8::/32", 443},
		{"[2001:db8::]/32:443", kindPrefix, "", "2001:db8::/32", 443},
		{"host:11434", kindHost, "", "", 11434},
		{"HOST:80", kindHost, "", "", 80},
		{"host.example.com:80", kindName, "host.example.com", "", 80},
		{"1.2.3.4:65535", kindPrefix, "", "1.2.3.4/32", 65535},
	} {
		p, err := ParsePolicy([]string{tc.in})
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		e := p.entries[0]
		var pfx string
		if e.prefix.IsValid() {
			pfx = e.prefix.String()
		}
		if e.kind != tc.kind || e.name != tc.name || pfx != tc.pfx || e.port != tc.port || e.text != tc.in {
			t.Errorf("%q parsed as %+v", tc.in, e)
		}
	}
}

func TestParsePolicyRefuses(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "is empty",
		" api.example.com":                "white space",
		"api.example.com:0":               `port "0" must be a number from 1 to 65535`,
		"api.example.com:65536":           `port "65536"`,
		"api.example.com:0443":            `port "0443"`,
		"api.example.com:":                `port ""`,
		"api.example.com:https":           `port "https"`,
		"host":                            `needs a port: "host:PORT"`,
		"host:":                           `port ""`,
		"host:x":                          `port "x"`,
		"10.0.0.1/8":                      "did you mean 10.0.0.0/8?",
		"10.0.0.0/33":                     "is not a CIDR",
		"10.0.0.0/":                       "is not a prefix length",
		"10.0.0.0/8:99999":                `port "99999"`,
		"1.2.3":                           `"1.2.3" is not an IPv4 address`,
		"256.1.1.1:80":                    `"256.1.1.1" is not an IPv4 address`,
		"example.123":                     "its last label is a number",
		"a.*.example.com":                 "a wildcard is allowed only as the whole first label",
		"*":                               "a wildcard is allowed only",
		"*example.com":                    "a wildcard is allowed only",
		"-a.example.com":                  "starting or ending with '-'",
		"a..example.com":                  "has a label of 0 characters",
		"a!.example.com":                  `contains '!'`,
		"[2001:db8::1":                    `without "]"`,
		"[2001:db8::1]443":                `has "443" after "]"`,
		"[203.0.113.7]:443":               "is not an IPv6 address",
		"2001:db8::zz":                    "is not an IPv6 address",
		"127.0.0.1:8080":                  `the host's loopback is reached with "host:PORT"`,
		"127.0.0.0/8":                     "names the loopback range",
		"[::1]:80":                        "names the loopback range",
		"localhost:11434":                 "names localhost",
		"::ffff:10.0.0.1":                 "IPv4-mapped",
		"[fe80::1%eth0]:80":               "is not an IPv6 address",
		strings.Repeat("a", 301):          "at most 300 are allowed",
		strings.Repeat("a.", 127) + "com": "at most 253 are allowed",
		strings.Repeat("a", 64) + ".com":  "has a label of 64 characters",
		"ex\u00e4mple.com":                "non-ASCII",
	} {
		_, err := ParsePolicy([]string{"203.0.113.1", in})
		if err == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		prefix := `egress entry "` + in + `": `
		if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q, want it to start with %q and contain %q", in, err, prefix, want)
		}
	}
}

func TestParsePolicyBound(t *testing.T) {
	entries := make([]string, MaxEntries+1)
	for i := range entries {
		entries[i] = "203.0.113.1"
	}
	if _, err := ParsePolicy(entries); err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("%d entries: %v, want a bound error", len(entries), err)
	}
	if _, err := ParsePolicy(entries[:MaxEntries]); err != nil {
		t.Fatal(err)
	}
}

func TestNameMatching(t *testing.T) {
	p, err := ParsePolicy([]string{"api.example.com:443", "*.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"api.example.com":    true,
		"x.api.example.com":  false,
		"example.com":        false,
		"a.example.net":      true,
		"a.b.example.net":    true,
		"example.net":        false,
		"badexample.net":     false,
		"example.net.evil.x": false,
	} {
		if _, got := p.allowsName(name); got != want {
			t.Errorf("allowsName(%q) = %v, want %v", name, got, want)
		}
	}
}

// A denied range opens only to an IP/CIDR entry at least as specific as the range.
func TestAddrEntryDeniedRanges(t *testing.T) {
	p, err := ParsePolicy([]string{"0.0.0.0/0", "192.168.0.0/15:22", "10.0.0.0/8:5432", "169.254.169.254:80", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		port uint16
		want string // the entry that allows it, "" for none
	}{
		{"203.0.113.1", 443, "0.0.0.0/0"},
		{"10.1.2.3", 5432, "10.0.0.0/8:5432"},
		{"10.1.2.3", 80, ""},
		{"192.168.1.1", 22, ""}, // /15 is wider than 192.168.0.0/16
		{"192.169.1.1", 22, "0.0.0.0/0"},
		{"169.254.169.254", 80, "169.254.169.254:80"},
		{"169.254.169.254", 443, ""},
		{"100.64.0.1", 80, ""},
		{"224.0.0.1", 80, ""},
		{"255.255.255.255", 67, ""},
		{"fd00::1", 80, "fd00::/8"},
		{"fc00::1", 80, ""},
	} {
		a := netip.MustParseAddr(tc.addr)
		r, _ := deniedRange(a)
		e := p.addrEntry(a, tc.port, r.prefix.Bits())
		got := ""
		if e != nil {
			got = e.text
		}
		if got != tc.want {
			t.Errorf("%s port %d: allowed by %q, want %q", tc.addr, tc.port, got, tc.want)
		}
	}
}

func TestPinsBounded(t *testing.T) {
	p := newPins(3)
	for i := 1; i <= 5; i++ {
		p.add(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "n.example.com", []int{0})
	}
	if p.len() != 3 {
		t.Fatalf("%d pins, want the bound 3", p.len())
	}
	for i, want := range map[int]bool{1: false, 2: false, 3: true, 4: true, 5: true} {
		if _, _, ok := p.lookup(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})); ok != want {
			t.Errorf("203.0.113.%d pinned %v, want %v (the stalest go first)", i, ok, want)
		}
	}
	p.add(netip.AddrFrom4([4]byte{203, 0, 113, 3}), "m.example.com", []int{1, 0})
	name, entries, _ := p.lookup(netip.AddrFrom4([4]byte{203, 0, 113, 3}))
	if name != "m.example.com" || len(entries) != 2 {
		t.Fatalf("re-pinned address: %q %v, want the latest name and both entries", name, entries)
	}
}
