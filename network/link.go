package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/voidbox/voidbox/network/frame"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// txQueue is how many frames may wait for the guest to read them; beyond it frames are
// dropped, as a NIC ring drops them, so a guest that stops reading stalls nobody but itself.
const txQueue = 1024

// port joins the gateway's link endpoint to the guest attached by Serve. It replaces
// gvisor-tap-vsock's switch, which trusts the guest's length prefix (it allocates whatever
// length the guest sends, up to 2 GiB) and indexes frames shorter than an Ethernet header; a
// VM's segment has a single guest, so no MAC learning is needed either.
type port struct {
	n   *Network
	mu  sync.Mutex
	cur *attachment
}

// attachment is one attached guest connection.
type attachment struct {
	conn net.Conn
	out  chan *buffer.View
	done chan struct{}
	once sync.Once
}

func newPort(n *Network) *port { return &port{n: n} }

// ErrAttached is returned by Serve while another guest connection is attached.
var ErrAttached = errors.New("network: a guest is already attached (one NIC per VM network)")

// ErrClosed is returned by Serve and Publish once the network is closed.
var ErrClosed = errors.New("network: closed")

// Serve attaches the guest's NIC on conn and carries frames until conn ends, ctx is done or
// the network is closed; it closes conn before returning. Frames are length-prefixed as in
// package frame: QEMU's `-netdev stream` framing, which the guest agent's TAP forwarder uses
// too. A frame longer than the MTU plus its Ethernet header (and one VLAN tag) ends the
// attachment with an error, since the stream cannot be resynchronised. One guest is attached
// at a time (ErrAttached otherwise); a new Serve may follow once the previous one returned.
func (n *Network) Serve(ctx context.Context, conn net.Conn) error {
	a, err := n.port.attach(conn)
	if err != nil {
		_ = conn.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		a.writeLoop()
	}()
	defer func() {
		n.port.detachIf(a)
		<-writerDone
	}()

	r := frame.NewReader(conn, n.maxFrame)
	buf := make([]byte, n.maxFrame)
	for {
		f, err := r.Next(buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case n.ctx.Err() != nil:
				return ErrClosed
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
				return nil
			}
			return fmt.Errorf("network: guest NIC: %w", err)
		}
		n.port.deliver(f)
	}
}

func (p *port) attach(conn net.Conn) (*attachment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if p.cur != nil {
		return nil, ErrAttached
	}
	p.cur = &attachment{conn: conn, out: make(chan *buffer.View, txQueue), done: make(chan struct{})}
	return p.cur, nil
}

// detachIf ends attachment a if it is still the current one.
func (p *port) detachIf(a *attachment) {
	p.mu.Lock()
	if p.cur == a {
		p.cur = nil
	}
	p.mu.Unlock()
	a.end()
}

// detach ends the current attachment, if any.
func (p *port) detach() {
	p.mu.Lock()
	a := p.cur
	p.cur = nil
	p.mu.Unlock()
	if a != nil {
		a.end()
	}
}

func (a *attachment) end() {
	a.once.Do(func() {
		close(a.done)
		_ = a.conn.Close()
	})
}

// deliver hands one frame from the guest to the gateway. Only frames for the gateway (or
// broadcast, for ARP) carrying IPv4 or ARP go in; the rest are dropped.
func (p *port) deliver(f []byte) {
	eth := header.Ethernet(f)
	if dst := eth.DestinationAddress(); dst != p.n.link.LinkAddress() && dst != header.EthernetBroadcastAddress {
		return
	}
	t := eth.Type()
	if t != ipv4.ProtocolNumber && t != arp.ProtocolNumber {
		return
	}
	if t == ipv4.ProtocolNumber && p.echoBeyondGateway(f[header.EthernetMinimumSize:]) {
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(f[header.EthernetMinimumSize:]),
	})
	p.n.link.DeliverNetworkPacket(t, pkt)
	pkt.DecRef()
}

// echoBeyondGateway reports an ICMP echo request to any address but the gateway's. The
// netstack, which accepts every destination so that the forwarders see flows, would answer it
// itself: a guest would see every address on the Internet answer pings.
func (p *port) echoBeyondGateway(pl []byte) bool {
	ip := header.IPv4(pl)
	if len(pl) < header.IPv4MinimumSize || ip.TransportProtocol() != header.ICMPv4ProtocolNumber {
		return false
	}
	if ip.DestinationAddress() == tcpip.AddrFrom4(p.n.guest.Gateway.As4()) {
		return false
	}
	hl := int(ip.HeaderLength())
	return hl >= header.IPv4MinimumSize && len(pl) > hl && header.ICMPv4(pl[hl:]).Type() == header.ICMPv4Echo
}

// DeliverNetworkPacket queues a frame from the gateway (Ethernet header included) for the
// guest. It is the tap.NetworkSwitch the link endpoint writes to.
func (p *port) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	p.mu.Lock()
	a := p.cur
	p.mu.Unlock()
	if a == nil {
		return
	}
	v := pkt.ToView()
	select {
	case a.out <- v:
	default:
		v.Release()
	}
}

// writeLoop writes queued frames to the guest, batching what is queued into one flush.
func (a *attachment) writeLoop() {
	w := bufio.NewWriterSize(a.conn, 256<<10)
	for {
		var v *buffer.View
		select {
		case v = <-a.out:
		case <-a.done:
			a.drain()
			return
		}
		for v != nil {
			err := frame.Write(w, v.AsSlice())
			v.Release()
			if err != nil {
				a.end()
				a.drain()
				return
			}
			select {
			case v = <-a.out:
			default:
				v = nil
			}
		}
		if err := w.Flush(); err != nil {
			a.end()
			a.drain()
			return
		}
	}
}

func (a *attachment) drain() {
	for {
		select {
		case v := <-a.out:
			v.Release()
		default:
			return
		}
	}
}
