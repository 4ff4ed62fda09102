package qemu

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/runtime"
)

// AgentPortName is the virtio-serial port name the guest agent looks for
// (/sys/class/virtio-ports/vportNpM/name).
const AgentPortName = "voidbox.agent"

// AgentVsockPort is the AF_VSOCK port the agent listens on when the VM has a
// vhost-vsock device.
const AgentVsockPort = 1024

// baseCmdline comes before the caller's cmdline: console on the serial port
// the log file captures, reboot via the keyboard controller path (microvm has
// no other), and reboot immediately on panic so that -no-reboot ends QEMU.
const baseCmdline = "console=ttyS0 reboot=k panic=-1"

// File names inside a VM's state directory.
const (
	consoleFile   = "console.log"
	consoleSocket = "console.sock" // voidbox listens, QEMU's serial connects (see vmstate.Console)
	qmpFile       = "qmp.sock"
	agentFile     = "agent.sock"
)

// launch is what buildArgs needs besides the VMConfig.
type launch struct {
	accel    string // "kvm" or "tcg"
	tscKHz   int    // non-zero under TCG: tell the guest the TSC rate (see tsc.go)
	dir      string // private state directory (sockets, console log)
	vsockCID uint32 // non-zero: use vhost-vsock with this guest CID
	// bootConfig: dir/boot.json holds the BootConfig, passed as fw_cfg item
	// proto.FwCfgName instead of voidbox.boot= on the kernel command line.
	bootConfig bool
	runAs      string      // non-empty: QEMU chroots into dir and drops to this user
	release    qemuRelease // QEMU's version, for how confinement is spelt
	snap       snapLaunch  // snapshot boot or restore (snapshot.go)
}

func (l launch) path(name string) string { return filepath.Join(l.dir, name) }

func shareSocket(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("fs%d.sock", i)) }

// buildArgs turns a VMConfig into QEMU's command line. It is a pure function
// so the device model can be checked without booting anything.
func buildArgs(cfg runtime.VMConfig, l launch) ([]string, error) {
	if cfg.Kernel == "" || cfg.Initramfs == "" {
		return nil, fmt.Errorf("vm %s: Kernel and Initramfs are required (got kernel %q, initramfs %q)", cfg.Name, cfg.Kernel, cfg.Initramfs)
	}
	if cfg.MemoryMB < 64 {
		return nil, fmt.Errorf("vm %s: MemoryMB %d is too small; the guest kernel needs at least 64", cfg.Name, cfg.MemoryMB)
	}
	if cfg.VCPUs < 1 {
		return nil, fmt.Errorf("vm %s: VCPUs %d must be at least 1", cfg.Name, cfg.VCPUs)
	}
	machine := "microvm,x-option-roms=off,isa-serial=on,rtc=on"
	cpu := "max"
	switch l.accel {
	case "kvm":
		cpu = "host"
	case "tcg":
	default:
		return nil, fmt.Errorf("vm %s: accelerator %q, want kvm or tcg", cfg.Name, l.accel)
	}
	args := []string{
		"-name", "voidbox-" + sanitizeName(cfg.Name),
		"-accel", l.accel,
		"-cpu", cpu,
		"-smp", fmt.Sprint(cfg.VCPUs),
		"-m", fmt.Sprintf("%dM", cfg.MemoryMB),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		// Seccomp: QEMU may not exec or use obsolete calls (see sandboxArg).
		"-sandbox", sandboxArg(l.runAs != ""),
		// Modern virtio-mmio; vhost-user (virtiofsd) refuses legacy devices.
		"-global", "virtio-mmio.force-legacy=false",
		// -kernel, -initrd and -append take their value whole (no option
		// syntax); every path inside a key=value list goes through optValue.
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initramfs,
		"-append", kernelCmdline(cfg.Cmdline, l),
		// The serial console goes to voidbox, which caps what it keeps.
		"-chardev", "socket,id=console,path=" + optValue(l.path(consoleSocket)),
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path=" + optValue(l.path(qmpFile)) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
	}
	if l.bootConfig {
		args = append(args, "-fw_cfg", "name="+proto.FwCfgName+",file="+optValue(l.path(bootConfigFile)))
	}
	if l.runAs != "" {
		args = append(args, confineArgs(l.release, l.dir, l.runAs)...)
	}
	machine, args, err := memoryArgs(cfg, l, machine, args)
	if err != nil {
		return nil, err
	}
	args = append([]string{"-M", machine}, args...)
	forward := cfg.NetworkSocket != "" && cfg.NetworkAttach == runtime.AttachForwarder
	if l.vsockCID != 0 {
		if forward {
			// The agent's forwarder would dial a host vsock port, which voidbox does
			// not listen on under QEMU.
			return nil, fmt.Errorf("vm %s: the agent's TAP forwarder needs the virtio-serial channel; with vhost-vsock use a virtio-net NIC (runtime.AttachNIC)", cfg.Name)
		}
		args = append(args, "-device", fmt.Sprintf("vhost-vsock-device,guest-cid=%d", l.vsockCID))
	} else {
		// As few ports as are used (0 is reserved for a virtconsole, the agent's
		// gets 1, the network forwarder's 2), not the default 31: the guest driver
		// sets up two virtqueues per port at probe time, which under TCG is most
		// of virtio_console's load time.
		ports := 2
		if forward {
			ports = 3
		}
		args = append(args,
			"-device", fmt.Sprintf("virtio-serial-device,max_ports=%d", ports),
			"-chardev", "socket,id=agent,path="+optValue(l.path(agentFile))+",server=on,wait=off",
			"-device", "virtserialport,chardev=agent,name="+AgentPortName,
		)
		if forward {
			// voidbox listens on NetworkSocket before QEMU starts.
			args = append(args,
				"-chardev", "socket,id=net,path="+optValue(cfg.NetworkSocket)+",server=off",
				"-device", "virtserialport,chardev=net,name="+proto.NetPortName,
			)
		}
	}
	seen := map[string]bool{}
	for i, s := range cfg.Shares {
		if s.Tag == "" || strings.ContainsAny(s.Tag, ",= ") || seen[s.Tag] {
			return nil, fmt.Errorf("vm %s: share %d tag %q must be unique, non-empty and free of ',', '=' and spaces", cfg.Name, i, s.Tag)
		}
		seen[s.Tag] = true
		id := fmt.Sprintf("fs%d", i)
		args = append(args,
			"-chardev", "socket,id="+id+",path="+optValue(shareSocket(l.dir, i)),
			"-device", "vhost-user-fs-device,chardev="+id+",tag="+s.Tag,
		)
	}
	disks, err := diskArgs(cfg)
	if err != nil {
		return nil, err
	}
	args = append(args, disks...)
	if cfg.NetworkSocket != "" && !forward {
		if cfg.MAC == "" {
			return nil, fmt.Errorf("vm %s: NetworkSocket is set but MAC is empty; give the NIC a MAC address", cfg.Name)
		}
		if _, err := net.ParseMAC(cfg.MAC); err != nil || strings.ContainsAny(cfg.MAC, ",=") {
			return nil, fmt.Errorf("vm %s: MAC %q is not a MAC address like 52:54:00:12:34:56", cfg.Name, cfg.MAC)
		}
		args = append(args,
			"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path="+optValue(cfg.NetworkSocket),
			"-device", "virtio-net-device,netdev=n0,mac="+cfg.MAC,
		)
	}
	return args, nil
}

// diskArgs attaches each disk as a virtio-blk device on virtio-mmio, in order
// (the guest's /dev/vda is Disks[0]), with its ID as the device's serial. QEMU opens the file when it creates the
// drive, during start-up, before -chroot/-runas take effect (see dropUser):
// the image needs no path inside the chroot and no permission for the
// dropped user (TestDisksInGuest boots that way as root). auto-read-only=off
// opens a writable drive read-write right then: with auto-read-only=on, QEMU
// may open it read-only and reopen it by path once a writer attaches, which
// would be too late inside the chroot.
func diskArgs(cfg runtime.VMConfig) ([]string, error) {
	if err := runtime.CheckDisks(cfg.Disks); err != nil {
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	var args []string
	for _, d := range cfg.Disks {
		ro := "off"
		if d.ReadOnly {
			ro = "on"
		}
		args = append(args,
			// format=raw: QEMU never probes the content, which the disk's
			// maker may control (a raw image could pose as a qcow2 with a
			// backing file on the host).
			"-drive", "file="+optValue(d.Path)+",format=raw,if=none,readonly="+ro+",auto-read-only=off,id="+d.ID,
			// The guest finds its disks by serial (/sys/block/vdX/serial).
			"-device", "virtio-blk-device,drive="+d.ID+",serial="+d.ID,
		)
	}
	return args, nil
}

func kernelCmdline(extra string, l launch) string {
	c := baseCmdline
	if l.accel == "tcg" && l.tscKHz > 0 {
		c += fmt.Sprintf(" tsc_early_khz=%d", l.tscKHz)
	}
	// The caller's part goes last: anything after "--" belongs to init.
	return strings.TrimSpace(c + " " + extra)
}

// sanitizeName keeps QEMU's -name argument free of option separators.
func sanitizeName(s string) string {
	if s == "" {
		return "vm"
	}
	return strings.Map(func(r rune) rune {
		if r == ',' || r == '=' || r < ' ' {
			return '_'
		}
		return r
	}, s)
}
