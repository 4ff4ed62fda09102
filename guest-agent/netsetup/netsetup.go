// Package netsetup configures the guest's network before the agent serves its first exec:
// lo is brought up at every boot (the kernel gives it 127.0.0.1/8 as it comes up), and when
// the boot config carries a proto.NetConfig, eth0 gets its MAC, MTU, address, default route,
// /etc/resolv.conf and /etc/hosts. Finding eth0 (the virtio-net NIC with the configured MAC)
// or creating it (package tapfwd's TAP device) is the caller's; this package configures a
// named interface.
//
// It talks to the kernel with ioctls on an AF_INET socket for the interface's flags,
// address, netmask and MTU, and with a few hand-built rtnetlink messages for what has no
// convenient ioctl (the default route, renaming, the hardware address): the agent is on the
// boot path and takes no netlink library for four requests. Every error names the interface
// and the field that could not be set: a stage never runs with a half-configured network.
package netsetup

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// Interface is the name every stage sees for the box's NIC.
const Interface = "eth0"

// Config is a parsed proto.NetConfig plus the guest's own host name (for /etc/hosts).
type Config struct {
	MAC      net.HardwareAddr
	Address  netip.Prefix // the guest's address and prefix length
	Gateway  netip.Addr
	DNS      netip.Addr
	MTU      int
	HostName string     // the host's name (host.voidbox.internal); empty: none
	HostAddr netip.Addr // what HostName resolves to
	Hostname string     // the guest's own name; empty: not in /etc/hosts
}

// FromBoot parses n (which proto.BootConfig.Validate has checked) for the guest named
// hostname. It re-checks what it parses: a value the kernel would misread must fail here,
// naming the field, rather than configure something else.
func FromBoot(n proto.NetConfig, hostname string) (Config, error) {
	c := Config{MTU: n.MTU, HostName: n.HostName, Hostname: hostname}
	var err error
	if c.MAC, err = net.ParseMAC(n.MAC); err != nil || len(c.MAC) != 6 {
		return Config{}, fmt.Errorf("network config: MAC %q is not a 6-byte Ethernet address", n.MAC)
	}
	if c.Address, err = netip.ParsePrefix(n.Address); err != nil || !c.Address.Addr().Is4() {
		return Config{}, fmt.Errorf("network config: address %q is not an IPv4 address/prefix like 10.0.2.2/24", n.Address)
	}
	for _, f := range []struct {
		name string
		v    string
		dst  *netip.Addr
	}{{"gateway", n.Gateway, &c.Gateway}, {"dns", n.DNS, &c.DNS}} {
		if *f.dst, err = netip.ParseAddr(f.v); err != nil || !f.dst.Is4() || !c.Address.Contains(*f.dst) {
			return Config{}, fmt.Errorf("network config: %s %q is not an IPv4 address in %s", f.name, f.v, c.Address.Masked())
		}
	}
	if n.MTU < 1280 || n.MTU > 65000 {
		return Config{}, fmt.Errorf("network config: MTU %d out of range (1280 to 65000)", n.MTU)
	}
	if n.HostName != "" {
		if c.HostAddr, err = netip.ParseAddr(n.HostAddr); err != nil || !c.HostAddr.Is4() {
			return Config{}, fmt.Errorf("network config: host address %q (for %s) is not an IPv4 address", n.HostAddr, n.HostName)
		}
	}
	return c, nil
}

// String is the one console line that says what was configured.
func (c Config) String() string {
	s := fmt.Sprintf("%s %s mtu %d via %s dns %s", c.MAC, c.Address, c.MTU, c.Gateway, c.DNS)
	if c.HostName != "" {
		s += fmt.Sprintf(" %s=%s", c.HostName, c.HostAddr)
	}
	return s
}
