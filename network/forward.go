package network

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

func addrOf(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}

// tcpPacket sees every TCP segment that no endpoint took, and decides each new connection
// (SYN) here, in the packet path: a denied one, or one beyond the limits, is refused with an
// immediate RST by the stack; an admitted one holds a flow slot and goes to the forwarder,
// which dials. A SYN retransmitted while its connection is pending is left to the forwarder.
func (n *Network) tcpPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	h := header.TCP(pkt.TransportHeader().Slice())
	if len(h) < header.TCPMinimumSize {
		return false
	}
	if f := h.Flags(); !f.Contains(header.TCPFlagSyn) || f.Contains(header.TCPFlagAck) {
		return false // not a new connection: the stack answers with a RST
	}
	n.mu.Lock()
	_, pending := n.pending[id]
	n.mu.Unlock()
	if pending {
		return n.tcpFwd.HandlePacket(id, pkt)
	}
	d, release := n.admit("tcp", id)
	if !d.allow {
		return false
	}
	n.mu.Lock()
	n.pending[id] = pendingFlow{d: d, release: release}
	n.mu.Unlock()
	if !n.tcpFwd.HandlePacket(id, pkt) { // malformed after all: no handler will run
		n.donePending(id)
		release()
		return false
	}
	return true
}

// admit decides a new flow, takes a flow slot for it if the policy allows it, and records
// the decision; release frees the slot once the flow ends.
func (n *Network) admit(proto string, id stack.TransportEndpointID) (d decision, release func()) {
	d = n.decide(proto, addrOf(id.LocalAddress), id.LocalPort)
	release = func() {}
	if d.allow {
		var refused string
		if release, refused = n.gate.acquire(); refused != "" {
			d.allow, d.reason, d.dial = false, refused, ""
		}
	}
	n.record(d)
	return d, release
}

// pendingFlow is an admitted connection whose handshake is not complete yet.
type pendingFlow struct {
	d       decision
	release func()
}

func (n *Network) donePending(id stack.TransportEndpointID) {
	n.mu.Lock()
	delete(n.pending, id)
	n.mu.Unlock()
}

// handleTCP runs (in its own goroutine) for each admitted SYN: dial the host side, then
// complete the guest's handshake and splice, or refuse with a RST if the dial fails.
func (n *Network) handleTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	n.mu.Lock()
	p, ok := n.pending[id]
	n.mu.Unlock()
	// Completing and forgetting the pending flow happen together, so a retransmitted SYN
	// sees either a pending flow (and the forwarder drops it as a duplicate) or neither.
	complete := func(reset bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		r.Complete(reset)
		delete(n.pending, id)
	}
	if !ok {
		complete(true)
		return
	}
	defer p.release()
	if !n.enter() {
		complete(true)
		return
	}
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, n.limits.DialTimeout)
	up, err := n.dialer.DialContext(ctx, "tcp", p.d.dial)
	cancel()
	if err != nil {
		n.dialFailed(p.d, err)
		complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	complete(false)
	if terr != nil {
		_ = up.Close()
		return
	}
	n.splice(gonet.NewTCPConn(&wq, ep), up)
}

func (n *Network) dialFailed(d decision, err error) {
	if ok, _ := n.logs.take(); !ok {
		return
	}
	n.log.LogAttrs(context.Background(), slog.LevelWarn, "network dial failed",
		slog.String("proto", d.proto), slog.String("dst", d.dst.String()), slog.Int("port", int(d.port)),
		slog.String("dial", d.dial), slog.String("error", err.Error()))
}

// hold tracks both ends of a flow so that Close ends it; drop closes and forgets them. ok is
// false, with both closed, once the network is closed.
func (n *Network) hold(a, b net.Conn) (drop func(), ok bool) {
	drop = func() {
		n.untrack(a)
		n.untrack(b)
		_ = a.Close()
		_ = b.Close()
	}
	if !n.track(a) || !n.track(b) {
		drop()
		return nil, false
	}
	return drop, true
}

// splice copies both ways between the guest's end and the host's end of a flow, passing a
// half-close on, until both directions are done or the network closes.
func (n *Network) splice(guest, host net.Conn) {
	drop, ok := n.hold(guest, host)
	if !ok {
		return
	}
	defer drop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(host, guest)
	}()
	copyHalf(guest, host)
	<-done
}

// copyHalf copies src to dst; at src's end it half-closes dst, and on an error it closes both
// so the other direction ends too.
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		if cw.CloseWrite() == nil {
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// udpPacket sees every UDP datagram that no endpoint took (DNS to the gateway has its own).
// A denied one is dropped with an ICMP port unreachable; an allowed one starts a flow.
func (n *Network) udpPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	d, release := n.admit("udp", id)
	if !d.allow {
		return false
	}
	started := false
	// The forwarder calls its handler synchronously, so a forwarder per flow can carry the
	// decision into it.
	udp.NewForwarder(n.stack, func(r *udp.ForwarderRequest) {
		var wq waiter.Queue
		ep, err := r.CreateEndpoint(&wq)
		if err != nil {
			return
		}
		guest := gonet.NewUDPConn(&wq, ep)
		started = n.goTracked(func() {
			defer release()
			n.relayUDP(guest, d)
		})
		if !started {
			_ = guest.Close()
		}
	}).HandlePacket(id, pkt)
	if !started {
		release()
	}
	return true
}

// relayUDP carries one UDP flow's datagrams both ways until it has been idle for
// Limits.UDPIdle, either side fails, or the network closes.
func (n *Network) relayUDP(guest *gonet.UDPConn, d decision) {
	ctx, cancel := context.WithTimeout(n.ctx, n.limits.DialTimeout)
	host, err := n.dialer.DialContext(ctx, "udp", d.dial)
	cancel()
	if err != nil {
		_ = guest.Close()
		n.dialFailed(d, err)
		return
	}
	drop, ok := n.hold(guest, host)
	if !ok {
		return
	}
	defer drop()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	idle := n.limits.UDPIdle
	pump := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 64<<10)
		for {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			k, err := src.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is still active
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:k]); err != nil {
				return
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(host, guest)
	}()
	pump(guest, host)
	<-done
}
