package runtime

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
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
	// Disks are raw disk images attached as virtio-blk devices, in this order:
	// the guest finds Disks[0] as /dev/vda, Disks[1] as /dev/vdb, ...
	Disks []Disk
	// NetworkSocket, when set, gives the guest a network: voidbox listens on this unix
	// socket before Boot and serves the guest's Ethernet frames (package network/frame's
	// framing) on each connection the VMM makes to it. NetworkAttach says how the VMM
	// connects the guest; empty means no network.
	NetworkSocket string
	NetworkAttach NetAttach
	MAC           string // the guest NIC's hardware address (AttachNIC)
	// ConsoleLine, when set, receives each line of the guest's serial console as it
	// arrives (bounded, see vmstate.LineSplitter; untrusted guest text).
	ConsoleLine func(line string)
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

// Disk is a raw disk image (an OCI image's rootfs, for instance) attached to
// the guest as a virtio-blk device.
type Disk struct {
	// ID names the disk in the VMM's configuration and in its messages:
	// a lower-case letter, then up to 15 lower-case letters or digits. (QEMU
	// wants identifiers to start with a letter; Cloud Hypervisor reserves
	// those starting with '_'.)
	ID string
	// Path is the image file, an absolute path. The VMM opens it at boot,
	// before it confines itself.
	Path     string
	ReadOnly bool
}

// MaxDisks bounds VMConfig.Disks: every disk takes one of the microVM's few
// virtio-mmio slots (QEMU's microvm has 24 for all devices).
const MaxDisks = 8

// CheckDisks rejects disks no VMM can attach: a bad or repeated ID, a path
// that is not absolute, too many disks. What a VMM's own option syntax
// cannot carry is for the VMM to check.
func CheckDisks(disks []Disk) error {
	if len(disks) > MaxDisks {
		return fmt.Errorf("%d disks; a VM takes at most %d", len(disks), MaxDisks)
	}
	seen := map[string]int{}
	for i, d := range disks {
		if !diskID.MatchString(d.ID) {
			return fmt.Errorf("Disks[%d].ID %q must be a lower-case letter followed by up to 15 lower-case letters or digits", i, d.ID)
		}
		if j, ok := seen[d.ID]; ok {
			return fmt.Errorf("Disks[%d].ID %q is also Disks[%d].ID; disk IDs must be unique", i, d.ID, j)
		}
		seen[d.ID] = i
		if !filepath.IsAbs(d.Path) || strings.ContainsRune(d.Path, 0) {
			return fmt.Errorf("Disks[%d].Path %q (disk %s) must be an absolute path", i, d.Path, d.ID)
		}
	}
	return nil
}

var diskID = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

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

// Snapshotter is a VMM that can save a booted, idle guest and start fresh VMs from
// that state (warm start). A restored VM is the saved guest, secrets and entropy
// included: its user (package sandbox/vm) must make it unique before any exec.
type Snapshotter interface {
	// SnapshotID names the VMM, its accelerator and its version for snapshot keys
	// (settling the accelerator with the guest image, as Boot would).
	SnapshotID(ctx context.Context, kernel, initramfs string) (string, error)
	// SnapshotBoot boots cfg as Boot does, laid out so that SaveSnapshot can save it
	// into dir (an empty private directory).
	SnapshotBoot(ctx context.Context, cfg VMConfig, dir string) (Machine, error)
	// SaveSnapshot pauses m (from SnapshotBoot with the same dir), saves it into dir
	// and stops it.
	SaveSnapshot(ctx context.Context, m Machine, dir string) error
	// Restore starts a new VM from the snapshot in dir and returns once the guest
	// runs. cfg must have the snapshot's kernel, memory, vCPUs and devices (no
	// shares, disks or network), and no boot config in Cmdline.
	Restore(ctx context.Context, cfg VMConfig, dir string) (Machine, error)
}
