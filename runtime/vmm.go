package runtime

import (
	"context"
	"net"
	"time"
)

// VMM boots microVMs. Implementations (Cloud Hypervisor, QEMU) live in their own
// packages; the runtime only sees this interface.
type VMM interface {
	// Name identifies the VMM and accelerator, e.g. "qemu/tcg" or "cloud-hypervisor/kvm".
	Name() string
	// Boot starts a VM and returns once its process runs. The agent may not be up yet:
	// callers dial AgentPort and retry until ctx ends.
	Boot(ctx context.Context, cfg VMConfig) (Machine, error)
}

// VMConfig is everything a VMM needs to boot one guest.
type VMConfig struct {
	Name      string
	Kernel    string // path to the kernel image
	Initramfs string // path to the initramfs
	Cmdline   string // kernel command line (the VMM may prepend console settings)
	MemoryMB  int
	VCPUs     int
	// StateDir is a private directory the VMM may use for sockets and logs; the
	// caller removes it after Machine.Close.
	StateDir string
	// Shares are host directories exported to the guest by tag.
	Shares []Share
	// NetworkSocket, when set, gives the guest a network: voidbox listens on this unix
	// socket before Boot and serves the guest's Ethernet frames (package network/frame's
	// framing) on each connection the VMM makes to it. NetworkAttach says how the VMM
	// connects the guest; empty means no network.
	NetworkSocket string
	NetworkAttach NetAttach
	MAC           string // the guest NIC's hardware address (AttachNIC)
}

// NetAttach is how a VMM connects the guest to voidbox's user-mode network.
type NetAttach int

const (
	// AttachNIC is a virtio-net NIC whose backend connects to NetworkSocket (QEMU's
	// -netdev stream).
	AttachNIC NetAttach = iota
	// AttachForwarder is no NIC: the guest agent creates a TAP device and forwards its
	// frames over a channel the VMM connects to NetworkSocket (a virtio-serial port
	// under QEMU, a vsock port under Cloud Hypervisor, which has no stream netdev).
	AttachForwarder
)

func (a NetAttach) String() string {
	if a == AttachForwarder {
		return "agent TAP forwarder"
	}
	return "virtio-net NIC"
}

// NICAttacher is implemented by a VMM that can attach the guest with AttachNIC. A VMM
// that does not implement it is given AttachForwarder.
type NICAttacher interface {
	AttachesNIC() bool
}

// Share exports a host directory to the guest under a tag (virtio-fs).
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
}

// Machine is a running VM.
type Machine interface {
	// DialAgent opens a byte stream to the guest agent's control port.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Done is closed when the VMM process has exited.
	Done() <-chan struct{}
	// Err is why the VM ended (nil while running or after a clean poweroff).
	Err() error
	// ConsoleTail returns the last n bytes of the guest's serial console.
	ConsoleTail(n int) string
	// Shutdown asks the guest to power off, then stops the VMM, escalating to a kill
	// when ctx ends; after it returns no process or socket of the VM remains.
	Shutdown(ctx context.Context) error
	// Kill stops the VMM process immediately and cleans up.
	Kill() error
}

// BootTimeout is the default bound on a sandbox's start-up (Executor.BootTimeout),
// and the vm sandbox's bound on reaching the guest agent when its caller set none.
// Under TCG on a loaded 2-core host, eight concurrent boots take tens of seconds.
const BootTimeout = 2 * time.Minute
