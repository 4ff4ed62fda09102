package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// PortMap publishes a guest TCP port on the host's 127.0.0.1 (box(ports = ["8080:80"])).
type PortMap struct {
	Host  int `json:"host"`
	Guest int `json:"guest"`
}

func (p PortMap) String() string { return fmt.Sprintf("%d:%d", p.Host, p.Guest) }

// ParsePortMap parses "HOST:GUEST" (both TCP ports, 1 to 65535) as box(ports=) takes it.
func ParsePortMap(s string) (PortMap, error) {
	h, g, ok := strings.Cut(s, ":")
	if !ok {
		return PortMap{}, fmt.Errorf("port %q: want HOST:GUEST, e.g. \"8080:80\" (the host's 127.0.0.1:8080 reaches the guest's port 80)", s)
	}
	var m PortMap
	for _, f := range []struct {
		what string
		v    string
		dst  *int
	}{{"host", h, &m.Host}, {"guest", g, &m.Guest}} {
		n, err := strconv.Atoi(f.v)
		if err != nil || n < 1 || n > 65535 {
			return PortMap{}, fmt.Errorf("port %q: %s port %q is not a TCP port (1 to 65535)", s, f.what, f.v)
		}
		*f.dst = n
	}
	return m, nil
}

// NetworkDecisions counts a protocol's egress decisions.
type NetworkDecisions struct {
	Allowed uint64 `json:"allowed"`
	Denied  uint64 `json:"denied"`
}

// NetworkCounts are a networked box's egress decisions by protocol, and how many
// connections to its published ports reached it.
type NetworkCounts struct {
	TCP     NetworkDecisions `json:"tcp"`
	UDP     NetworkDecisions `json:"udp"`
	DNS     NetworkDecisions `json:"dns"`
	Inbound uint64           `json:"inbound"`
}

// NetworkReporter is implemented by a Sandbox that can have a network; the executor
// reads it before closing the sandbox and puts it in the stage's result. ok is false
// for a box without network.
type NetworkReporter interface {
	NetworkCounts() (c NetworkCounts, ok bool)
}
