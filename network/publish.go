package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Publish makes the guest's TCP guestPort reachable on the host at 127.0.0.1:hostPort (0
// picks a free port) until the network closes, and returns the address it listens on. Each
// connection to it is a new connection to the guest from the gateway's address. Only the
// host's loopback is ever used: publishing never exposes the guest beyond this machine.
func (n *Network) Publish(hostPort, guestPort int) (netip.AddrPort, error) {
	if hostPort < 0 || hostPort > 65535 {
		return netip.AddrPort{}, fmt.Errorf("network: publish: host port %d out of range (0 to 65535, 0 for any free port)", hostPort)
	}
	if guestPort < 1 || guestPort > 65535 {
		return netip.AddrPort{}, fmt.Errorf("network: publish: guest port %d out of range (1 to 65535)", guestPort)
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(hostPort)).String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("network: publish guest port %d on the host's 127.0.0.1:%d: %w", guestPort, hostPort, err)
	}
	if !n.track(ln) {
		return netip.AddrPort{}, ErrClosed
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	if !n.goTracked(func() { n.acceptPublished(ln, uint16(guestPort)) }) {
		_ = ln.Close()
		return netip.AddrPort{}, ErrClosed
	}
	return addr, nil
}

func (n *Network) acceptPublished(ln net.Listener, guestPort uint16) {
	defer n.untrack(ln)
	defer ln.Close()
	target := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(n.guest.Address.Addr().As4()), Port: guestPort}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ok := n.goTracked(func() {
			ctx, cancel := context.WithTimeout(n.ctx, n.limits.DialTimeout)
			guest, err := gonet.DialContextTCP(ctx, n.stack, target, ipv4.ProtocolNumber)
			cancel()
			n.inbound.Add(1)
			if ok, _ := n.logs.take(); ok {
				attrs := []slog.Attr{slog.String("decision", "allow"), slog.String("proto", "tcp-in"),
					slog.String("from", c.RemoteAddr().String()), slog.Int("port", int(guestPort)), slog.String("reason", "published port")}
				if err != nil {
					attrs = append(attrs, slog.String("error", err.Error()))
				}
				n.log.LogAttrs(context.Background(), slog.LevelInfo, "network decision", attrs...)
			}
			if err != nil {
				_ = c.Close()
				return
			}
			n.splice(guest, c)
		})
		if !ok {
			_ = c.Close()
			return
		}
	}
}
