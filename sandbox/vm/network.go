package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/runtime"
)

// netSocket is the network's socket in a VM's state directory; the VMM connects the
// guest's NIC (or the agent's forwarder) to it.
const netSocket = "net.sock"

// boxNetwork is one networked box's user-mode network, and the socket its VMM
// connects the guest through.
type boxNetwork struct {
	net      *network.Network
	ln       net.Listener
	attach   runtime.NetAttach
	socket   string
	log      *slog.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeOne sync.Once
}

// openNetwork builds spec's network before its VM boots: the policy from spec.Egress,
// the listening socket, and spec.Ports published on the host's 127.0.0.1. It returns
// nil for a box without network.
func (p *Provider) openNetwork(ctx context.Context, spec runtime.SandboxSpec, stateDir string) (*boxNetwork, error) {
	if !spec.Network {
		if _, err := remoteEgress(spec); spec.Agent && err != nil {
			return nil, err
		}
		return nil, nil
	}
	egress := spec.Egress
	if spec.Agent {
		remotes, err := remoteEgress(spec)
		if err != nil {
			return nil, err
		}
		egress = append(slices.Clip(egress), remotes...)
	}
	policy, err := network.ParsePolicy(egress)
	if err != nil {
		return nil, err
	}
	cfg := p.opts.Network
	cfg.Policy = policy
	if cfg.Log != nil {
		cfg.Log = cfg.Log.With(slog.String("stage", spec.Name))
	}
	// Decisions come while the stage runs, after Open returned: ctx's values (the
	// attempt's reporter) outlive its deadline.
	cfg.OnDecision = func(d network.Decision) { runtime.ReportEgress(ctx, d) }
	n, err := network.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	b := &boxNetwork{net: n, attach: p.attachment(), socket: filepath.Join(stateDir, netSocket), log: cfg.Log}
	if b.ln, err = net.Listen("unix", b.socket); err != nil {
		n.Close()
		return nil, fmt.Errorf("network: %w", err)
	}
	serve, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Add(1)
	go b.accept(serve)
	for _, pm := range spec.Ports {
		if _, err := n.Publish(pm.Host, pm.Guest); err != nil {
			b.close()
			return nil, fmt.Errorf("ports %q: %w", pm.String(), err)
		}
	}
	return b, nil
}

// attachment is how this provider's VMM connects a guest: a NIC when it can, else
// the agent's TAP forwarder (Cloud Hypervisor), or the forwarder when the options
// ask for it (tests run its guest half under QEMU).
func (p *Provider) attachment() runtime.NetAttach {
	if p.opts.NetForwarder {
		return runtime.AttachForwarder
	}
	if a, ok := p.opts.VMM.(runtime.NICAttacher); ok && a.AttachesNIC() {
		return runtime.AttachNIC
	}
	return runtime.AttachForwarder
}

// accept serves the guest on each connection the VMM makes (one at a time: the
// network refuses a second attachment while one is up).
func (b *boxNetwork) accept(ctx context.Context) {
	defer b.wg.Done()
	for {
		conn, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			// A guest that breaks the framing loses its NIC; the log says why.
			if err := b.net.Serve(ctx, conn); err != nil && !errors.Is(err, network.ErrClosed) && ctx.Err() == nil && b.log != nil {
				b.log.Warn("guest network attachment ended", slog.String("error", err.Error()))
			}
		}()
	}
}

// guest is the network's guest side as the boot config carries it.
func (b *boxNetwork) guest() *proto.NetConfig {
	g := b.net.Guest()
	return &proto.NetConfig{
		Forward: b.attach == runtime.AttachForwarder,
		MAC:     g.MAC, Address: g.Address.String(), Gateway: g.Gateway.String(), DNS: g.DNS.String(),
		MTU: g.MTU, HostName: g.HostName, HostAddr: g.HostAddr.String(),
	}
}

// counts are the network's decisions in the runtime's terms.
func (b *boxNetwork) counts() runtime.NetworkCounts {
	s := b.net.Stats()
	d := func(c network.Count) runtime.NetworkDecisions {
		return runtime.NetworkDecisions{Allowed: c.Allowed, Denied: c.Denied}
	}
	return runtime.NetworkCounts{TCP: d(s.TCP), UDP: d(s.UDP), DNS: d(s.DNS), Inbound: s.Inbound}
}

// close ends every flow and published port, and removes the socket.
func (b *boxNetwork) close() {
	if b == nil {
		return
	}
	b.closeOne.Do(func() {
		b.cancel()
		b.ln.Close()
		b.net.Close()
		b.wg.Wait()
		os.Remove(b.socket)
	})
}
