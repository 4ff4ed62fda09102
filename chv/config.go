package chv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/voidbox/voidbox/runtime"
)

// The JSON types below mirror the parts of Cloud Hypervisor's VmConfig
// (contracts/cloud-hypervisor-openapi.yaml) that voidbox sets. Field names and
// required fields follow the schema; the tests validate every body against it.

type vmConfig struct {
	CPUs    cpusConfig    `json:"cpus"`
	Memory  memoryConfig  `json:"memory"`
	Payload payloadConfig `json:"payload"`
	Disks   []diskConfig  `json:"disks,omitempty"`
	RNG     rngConfig     `json:"rng"`
	FS      []fsConfig    `json:"fs,omitempty"`
	Serial  consoleConfig `json:"serial"`
	Console consoleConfig `json:"console"`
	Vsock   *vsockConfig  `json:"vsock,omitempty"`
}

type cpusConfig struct {
	BootVCPUs int `json:"boot_vcpus"`
	MaxVCPUs  int `json:"max_vcpus"`
}

type memoryConfig struct {
	Size   int64 `json:"size"` // bytes
	Shared bool  `json:"shared"`
}

type payloadConfig struct {
	Kernel    string `json:"kernel"`
	Initramfs string `json:"initramfs,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
}

type diskConfig struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
	ID       string `json:"id,omitempty"`
	Serial   string `json:"serial,omitempty"` // how the guest finds the disk (/sys/block/vdX/serial)
}

type rngConfig struct {
	Src string `json:"src"`
}

type fsConfig struct {
	Tag       string `json:"tag"`
	Socket    string `json:"socket"`
	NumQueues int    `json:"num_queues"`
	QueueSize int    `json:"queue_size"`
}

type consoleConfig struct {
	Mode string `json:"mode"` // one of the schema's ConsoleMode values
	File string `json:"file,omitempty"`
}

type vsockConfig struct {
	CID    uint64 `json:"cid"`
	Socket string `json:"socket"`
}

// cmdlinePrefix sends the kernel's messages to the serial log, makes a reboot
// leave through the keyboard controller (which Cloud Hypervisor turns into a
// VMM exit) and turns a guest panic into an immediate reboot instead of a hang.
const cmdlinePrefix = "console=ttyS0 reboot=k panic=-1"

// Defaults for a VMConfig that leaves sizes at zero.
const (
	defaultMemoryMB = 512
	defaultVCPUs    = 1
	maxVCPUs        = 254 // Cloud Hypervisor's x86_64 limit
)

// ErrNetworkUnsupported is returned for a VMConfig asking for a virtio-net NIC
// (runtime.AttachNIC): voidbox's user-mode network hands frames over a unix
// stream socket, which Cloud Hypervisor has no netdev for (it wants a TAP
// device or vhost-user). Boxes reach the network through the guest agent's TAP
// forwarder instead (runtime.AttachForwarder), over vsock port NetPort.
var ErrNetworkUnsupported = errors.New("no unix-stream netdev in Cloud Hypervisor for a virtio-net NIC; attach the guest with the agent's TAP forwarder (runtime.AttachForwarder)")

// fsShare is one virtio-fs share and the vhost-user socket its virtiofsd serves.
type fsShare struct {
	runtime.Share
	Socket string
}

// vmPaths are the files of one VM inside its state directory.
type vmPaths struct {
	Dir     string
	API     string // api.sock
	Vsock   string // vsock.sock (guest-initiated conns arrive on vsock.sock_<port>)
	Console string // console.log (serial)
	Events  string // events.json (--event-monitor)
	Log     string // vmm.log (stdout and stderr of cloud-hypervisor)
}

// maxSocketPath is sun_path's size minus the NUL; a longer path cannot be bound.
const maxSocketPath = 107

func pathsIn(dir string) (vmPaths, error) {
	if dir == "" {
		return vmPaths{}, errors.New("chv: VMConfig.StateDir is empty; the driver needs a private directory for sockets and logs")
	}
	if strings.ContainsRune(dir, ',') {
		// --api-socket path=...,  --event-monitor path=...: Cloud Hypervisor splits
		// its option values on commas and has no escape for them.
		return vmPaths{}, fmt.Errorf("chv: state dir %q contains a comma, which Cloud Hypervisor's command-line options cannot carry; set TMPDIR to a directory without commas", dir)
	}
	p := vmPaths{
		Dir:     dir,
		API:     filepath.Join(dir, "api.sock"),
		Vsock:   filepath.Join(dir, "vsock.sock"),
		Console: filepath.Join(dir, "console.log"),
		Events:  filepath.Join(dir, "events.json"),
		Log:     filepath.Join(dir, "vmm.log"),
	}
	// The longest socket we create is a guest-initiated vsock listener,
	// vsock.sock_<port> with up to 10 port digits.
	if n := len(p.Vsock) + 11; n > maxSocketPath {
		return vmPaths{}, fmt.Errorf("chv: VMConfig.StateDir %q is too long for unix sockets (%d bytes needed, at most %d); use a shorter directory", dir, n, maxSocketPath)
	}
	return p, nil
}

// makePrivate makes the state dir ours alone (mode 0700). Cloud Hypervisor has
// no fw_cfg: the boot config, per-VM agent secret included, rides on the kernel
// command line inside the VM config that voidbox PUTs to the API socket, and
// anyone who can connect to that socket can read it back (GET vm.info). The
// command line never appears on a process's command line (cloud-hypervisor is
// started with socket paths only), so the API socket is what must stay private.
// A symlink or a directory of another user is refused, not changed.
func makePrivate(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("state dir %s (%v) must be a directory of this user: its API socket gives the VM config, with the agent secret, to whoever can connect", dir, st.Mode())
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state dir: make it private: %w", err)
		}
	}
	return nil
}

// checkConfig rejects a VMConfig the driver cannot boot, before any process
// is started, and fills in default sizes.
func checkConfig(cfg runtime.VMConfig) (runtime.VMConfig, error) {
	if cfg.NetworkSocket != "" && cfg.NetworkAttach != runtime.AttachForwarder {
		return cfg, fmt.Errorf("chv: vm %s: %w", cfg.Name, ErrNetworkUnsupported)
	}
	if strings.ContainsRune(cfg.NetworkSocket, ',') {
		return cfg, fmt.Errorf("chv: vm %s: VMConfig.NetworkSocket %q must be an absolute path without commas", cfg.Name, cfg.NetworkSocket)
	}
	if cfg.Kernel == "" {
		return cfg, fmt.Errorf("chv: vm %s: VMConfig.Kernel is empty; give the path of the guest kernel", cfg.Name)
	}
	switch {
	case cfg.MemoryMB < 0:
		return cfg, fmt.Errorf("chv: vm %s: VMConfig.MemoryMB is %d; want a positive size in MiB", cfg.Name, cfg.MemoryMB)
	case cfg.MemoryMB == 0:
		cfg.MemoryMB = defaultMemoryMB
	}
	switch {
	case cfg.VCPUs < 0 || cfg.VCPUs > maxVCPUs:
		return cfg, fmt.Errorf("chv: vm %s: VMConfig.VCPUs is %d; want 1 to %d", cfg.Name, cfg.VCPUs, maxVCPUs)
	case cfg.VCPUs == 0:
		cfg.VCPUs = defaultVCPUs
	}
	// Disks go in the JSON body, not on a command line: a comma in a path is
	// just a character there.
	if err := runtime.CheckDisks(cfg.Disks); err != nil {
		return cfg, fmt.Errorf("chv: vm %s: %w", cfg.Name, err)
	}
	seen := map[string]bool{}
	for i, s := range cfg.Shares {
		switch {
		case s.Tag == "":
			return cfg, fmt.Errorf("chv: vm %s: Shares[%d].Tag is empty; every share needs a tag the guest mounts by", cfg.Name, i)
		case len(s.Tag) > 36:
			// virtio-fs config space holds a 36-byte tag.
			return cfg, fmt.Errorf("chv: vm %s: Shares[%d].Tag %q is %d bytes; virtio-fs tags hold at most 36", cfg.Name, i, s.Tag, len(s.Tag))
		case seen[s.Tag]:
			return cfg, fmt.Errorf("chv: vm %s: Shares[%d].Tag %q is used twice; tags must be unique", cfg.Name, i, s.Tag)
		case !filepath.IsAbs(s.HostPath):
			return cfg, fmt.Errorf("chv: vm %s: Shares[%d].HostPath %q is not absolute", cfg.Name, i, s.HostPath)
		}
		seen[s.Tag] = true
	}
	return cfg, nil
}

// buildVMConfig is the body of PUT vm.create for a checked VMConfig.
func buildVMConfig(cfg runtime.VMConfig, p vmPaths, cid uint64, shares []fsShare) vmConfig {
	cmdline := cmdlinePrefix
	if extra := strings.TrimSpace(cfg.Cmdline); extra != "" {
		cmdline += " " + extra
	}
	vc := vmConfig{
		CPUs: cpusConfig{BootVCPUs: cfg.VCPUs, MaxVCPUs: cfg.VCPUs},
		// virtio-fs maps guest memory into virtiofsd, which needs it shared.
		Memory:  memoryConfig{Size: int64(cfg.MemoryMB) << 20, Shared: len(shares) > 0},
		Payload: payloadConfig{Kernel: cfg.Kernel, Initramfs: cfg.Initramfs, Cmdline: cmdline},
		RNG:     rngConfig{Src: "/dev/urandom"},
		Serial:  consoleConfig{Mode: "File", File: p.Console},
		Console: consoleConfig{Mode: "Off"},
		Vsock:   &vsockConfig{CID: cid, Socket: p.Vsock},
	}
	// Cloud Hypervisor adds block devices first, in list order, so the
	// guest's /dev/vda is Disks[0].
	for _, d := range cfg.Disks {
		vc.Disks = append(vc.Disks, diskConfig{Path: d.Path, Readonly: d.ReadOnly, ID: d.ID, Serial: d.ID})
	}
	for _, s := range shares {
		vc.FS = append(vc.FS, fsConfig{Tag: s.Tag, Socket: s.Socket, NumQueues: 1, QueueSize: 1024})
	}
	return vc
}

// netLink is where Cloud Hypervisor connects when the guest dials host vsock
// port NetPort.
func (p vmPaths) netLink() string { return p.Vsock + "_" + strconv.FormatUint(uint64(NetPort), 10) }
