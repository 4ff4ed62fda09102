package proto

import (
	"strings"
	"testing"
)

func validNet() *NetConfig {
	return &NetConfig{MAC: "02:76:62:00:00:02", Address: "10.0.2.2/24", Gateway: "10.0.2.1", DNS: "10.0.2.1",
		MTU: 1500, HostName: "host.voidbox.internal", HostAddr: "10.0.2.254"}
}

func TestNetConfigRoundTrip(t *testing.T) {
	c := BootConfig{Secret: strings.Repeat("ab", 32), Net: validNet()}
	c.Net.Forward = true
	js, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBootJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if got.Net == nil || *got.Net != *c.Net {
		t.Fatalf("network config changed on the way: %+v, want %+v", got.Net, c.Net)
	}
	none, err := BootConfig{Secret: c.Secret}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(none), `"n"`) {
		t.Fatalf("a box without network carries a network config: %s", none)
	}
}

func TestNetConfigRefusesBadFields(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*NetConfig)
		want   string
	}{
		"mac":             {func(n *NetConfig) { n.MAC = "02:76:62:00:00" }, "MAC"},
		"long mac":        {func(n *NetConfig) { n.MAC = "02:76:62:00:00:02:00:00" }, "MAC"},
		"address":         {func(n *NetConfig) { n.Address = "10.0.2.2" }, "address"},
		"ipv6 address":    {func(n *NetConfig) { n.Address = "fd00::2/64" }, "address"},
		"gateway outside": {func(n *NetConfig) { n.Gateway = "10.0.3.1" }, "gateway"},
		"gateway is self": {func(n *NetConfig) { n.Gateway = "10.0.2.2" }, "gateway"},
		"dns":             {func(n *NetConfig) { n.DNS = "8.8.8.8" }, "dns"},
		"mtu":             {func(n *NetConfig) { n.MTU = 100 }, "MTU"},
		"host name":       {func(n *NetConfig) { n.HostName = "evil\nname" }, "host name"},
		"host name alone": {func(n *NetConfig) { n.HostAddr = "" }, "go together"},
		"host addr":       {func(n *NetConfig) { n.HostAddr = "::1" }, "host address"},
	} {
		t.Run(name, func(t *testing.T) {
			n := validNet()
			tc.mutate(n)
			err := BootConfig{Secret: strings.Repeat("ab", 32), Net: n}.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
