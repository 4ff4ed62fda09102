package proto

import (
	"fmt"
	"net"
	"net/netip"
)

// NetPortName is the virtio-serial port over which the agent's TAP forwarder
// exchanges eth0's frames with voidbox's user-mode network when the VMM has no
// NIC for it and the agent's own channel is virtio-serial (QEMU, in tests).
const NetPortName = "voidbox.net"

// NetVsockPort is the host vsock port the agent's TAP forwarder connects to when
// the agent's channel is vsock (Cloud Hypervisor, which has no stream netdev).
// Under Cloud Hypervisor's hybrid vsock it reaches the host's unix socket
// "<vsock socket>_1025".
const NetVsockPort = 1025

// NetConfig is the guest side of a box's network: how eth0 is attached and what
// it is configured with before the first exec. A BootConfig without one has no
// network: the agent brings up lo only.
type NetConfig struct {
	// Forward: false means eth0 is the VM's virtio-net NIC (found by MAC); true
	// means the agent creates eth0 as a TAP device and forwards its frames, in
	// package network/frame's framing, over virtio-serial port NetPortName when
	// the agent's channel is virtio-serial, else over host vsock port NetVsockPort.
	Forward  bool   `json:"f,omitempty"`
	MAC      string `json:"m"`            // eth0's hardware address
	Address  string `json:"a"`            // eth0's address with prefix length, e.g. 10.0.2.2/24
	Gateway  string `json:"g"`            // the default route's next hop
	DNS      string `json:"n"`            // the only nameserver in /etc/resolv.conf
	MTU      int    `json:"u"`            // eth0's MTU
	HostName string `json:"hn,omitempty"` // a name for HostAddr in /etc/hosts (host.voidbox.internal)
	HostAddr string `json:"ha,omitempty"`
}

// validate checks every field the agent will hand to the kernel or write into
// /etc: the host builds this config, but the guest treats it as input.
func (n *NetConfig) validate() error {
	if n == nil {
		return nil
	}
	if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 {
		return fmt.Errorf("boot config network: MAC %q is not an Ethernet address like 02:76:62:00:00:02", n.MAC)
	}
	p, err := netip.ParsePrefix(n.Address)
	if err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30 {
		return fmt.Errorf("boot config network: address %q is not an IPv4 address with a prefix length of 8 to 30, like 10.0.2.2/24", n.Address)
	}
	for _, f := range []struct{ name, v string }{{"gateway", n.Gateway}, {"dns", n.DNS}} {
		a, err := netip.ParseAddr(f.v)
		if err != nil || !a.Is4() || !p.Contains(a) || a == p.Addr() {
			return fmt.Errorf("boot config network: %s %q must be an IPv4 address in %s other than the guest's", f.name, f.v, p.Masked())
		}
	}
	if n.MTU < 1280 || n.MTU > 65000 {
		return fmt.Errorf("boot config network: MTU %d out of range (1280 to 65000)", n.MTU)
	}
	if (n.HostName == "") != (n.HostAddr == "") {
		return fmt.Errorf("boot config network: host name %q and host address %q go together", n.HostName, n.HostAddr)
	}
	if n.HostName != "" {
		if len(n.HostName) > 253 {
			return fmt.Errorf("boot config network: host name is %d bytes, at most 253", len(n.HostName))
		}
		for _, r := range n.HostName {
			if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z') {
				return fmt.Errorf("boot config network: host name %q: only lower-case letters, digits, '-' and '.'", n.HostName)
			}
		}
		if a, err := netip.ParseAddr(n.HostAddr); err != nil || !a.Is4() {
			return fmt.Errorf("boot config network: host address %q is not an IPv4 address", n.HostAddr)
		}
	}
	return nil
}
