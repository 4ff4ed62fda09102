// Command voidbox-agent is PID 1 inside a voidbox microVM (/init in the initramfs):
// it prepares the guest (mounts, kernel modules, clock, hostname, stage user, stage
// limits, lo and the box's eth0: package netsetup, and package tapfwd for the forwarder
// attachment; the stages' root file system and mounts: package rootfs; the loopback
// ports forwarded to the host over the session), reads the boot configuration (QEMU's fw_cfg item, else the kernel command
// line), and serves the authenticated control session (package agent) on
// virtio-serial or vsock until the host asks it to power off or goes away. Re-executed as "voidbox-shim" it confines
// one stage process instead.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/voidbox/voidbox/guest-agent/agent"
	"github.com/voidbox/voidbox/guest-agent/netsetup"
	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guest-agent/rootfs"
	"github.com/voidbox/voidbox/guest-agent/tapfwd"
	"golang.org/x/sys/unix"
)

func main() {
	agent.RunShimIfRequested()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "voidbox-agent: must run as PID 1 (/init) inside a voidbox guest")
		os.Exit(2)
	}
	c := newConsole()
	if err := run(c); err != nil {
		c.logf("fatal: %v", err)
		c.endBatch()
	}
	powerOff(c)
}

func run(c *console) error {
	if err := mountBase(); err != nil {
		return err
	}
	c.reopen()
	c.logf("mounted /proc /sys /dev /dev/pts /tmp /run")
	cfg, err := readBootConfig(c)
	if err != nil {
		return err
	}
	if cfg.UnixTime > 0 {
		tv := unix.NsecToTimeval(time.Unix(cfg.UnixTime, 0).UnixNano())
		if err := unix.Settimeofday(&tv); err != nil {
			c.logf("set clock: %v", err)
		}
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			c.logf("set hostname %q: %v", cfg.Hostname, err)
		}
	}
	mods, configured, err := configuredModules(c)
	if err != nil {
		return err
	}
	if err := loadBootModules(mods, configured); err != nil {
		return err
	}
	c.logf("transport modules loaded")
	if err := setupStageUser(cfg.UID, cfg.GID); err != nil {
		return err
	}
	stageCgroup, err := limitStages(c, cfg)
	if err != nil {
		return err
	}
	nc, err := setupNetwork(c, cfg, mods, configured)
	if err != nil {
		return err
	}
	stageRoot, err := setupFS(c, cfg, nc, mods, configured)
	if err != nil {
		return err
	}
	forwards, err := listenForwards(c, cfg.Forwards)
	if err != nil {
		return err
	}
	shutdown := make(chan struct{}, 1)
	srv, err := agent.NewServer(agent.Options{
		Secret: cfg.Secret, Roots: []string{"/workspace", "/tmp"},
		Allow: cfg.Allow, UID: cfg.UID, GID: cfg.GID, Rlimits: cfg.Rlimits,
		StageRoot:   stageRoot,
		Reaper:      agent.NewReaper(),
		StageCgroup: stageCgroup,
		Forwards:    forwards,
		OnShutdown:  func() { shutdown <- struct{}{} },
		Debug:       cfg.Debug,
		Warm:        cfg.Warm,
		Logf:        c.logf,
	})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- serve(context.Background(), c, srv) }()
	select {
	case err := <-served:
		return err
	case <-shutdown:
		// Give the acknowledgement time to leave the VM: the host normally closes the
		// session as soon as it reads it, which ends serve.
		select {
		case <-served:
		case <-time.After(shutdownGrace):
		}
		return nil
	}
}

// shutdownGrace bounds the wait for the host to close the session after Shutdown.
const shutdownGrace = 2 * time.Second

// powerOff syncs filesystems and powers the VM off; as PID 1 it never returns.
func powerOff(c *console) {
	c.logf("powering off")
	c.endBatch()
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		c.logf("power off: %v", err)
	}
	for {
		time.Sleep(time.Hour) // PID 1 must not exit: that panics the kernel
	}
}

// configuredModules returns the guest's module loader and the modules the image
// ships (/etc/voidbox/modules). Boot loads only the transport's; a feature that
// needs another (virtio_net, virtiofs, overlay, ...) calls the loader's ensure.
func configuredModules(c *console) (*moduleLoader, []string, error) {
	names, err := readModuleList("/etc/voidbox/modules")
	if err != nil {
		return nil, nil, fmt.Errorf("read /etc/voidbox/modules: %w", err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, nil, fmt.Errorf("uname: %w", err)
	}
	return newModuleLoader("/lib/modules/"+unix.ByteSliceToString(u.Release[:]), finitModule, c.logf), names, nil
}

// limitStages puts the boot config's limits in force before the first exec: no core
// dumps, sized tmpfs on /workspace and /tmp, a root directory only root can write,
// and the stage cgroup (cgroup2 mounted on /sys/fs/cgroup), which it returns. A limit
// that cannot be applied fails the boot: stages never run without them.
func limitStages(c *console, cfg proto.BootConfig) (*agent.StageCgroup, error) {
	l := cfg.Limits
	// PID 1's limits are every process's: no core files, and no stage can raise it.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return nil, fmt.Errorf("setrlimit CORE=0: %w", err)
	}
	// The initramfs root is a world-writable tmpfs (mode 1777): stages write only to
	// the sized /workspace and /tmp.
	if err := os.Chmod("/", 0o755); err != nil {
		return nil, fmt.Errorf("chmod / 0755: %w", err)
	}
	ws := fmt.Sprintf("mode=0755,uid=%d,gid=%d", cfg.UID, cfg.GID)
	if l.WorkspaceMB > 0 {
		ws += ",size=" + strconv.Itoa(l.WorkspaceMB) + "m"
	}
	if err := unix.Mount("tmpfs", "/workspace", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, ws); err != nil {
		return nil, fmt.Errorf("mount tmpfs on /workspace (%s): %w", ws, err)
	}
	if l.TmpMB > 0 {
		// mountBase mounted /tmp before the boot config was read. A remount replaces
		// the mount flags, so they are restated.
		size := "size=" + strconv.Itoa(l.TmpMB) + "m"
		if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, size); err != nil {
			return nil, fmt.Errorf("remount /tmp with %s: %w", size, err)
		}
	}
	const cgroupRoot = "/sys/fs/cgroup"
	if err := unix.Mount("cgroup2", cgroupRoot, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("mount cgroup2 on %s: %w", cgroupRoot, err)
	}
	cg, err := agent.NewStageCgroup(cgroupRoot, l, c.logf)
	if err != nil {
		return nil, err
	}
	c.logf("stage limits: memory %d MiB, pids %d, /workspace %d MiB, /tmp %d MiB (0: unlimited)", l.MemoryMB, l.Pids, l.WorkspaceMB, l.TmpMB)
	return cg, nil
}

// setupNetwork brings lo up and, when the boot config has a network, eth0 (the VM's
// virtio-net NIC, or a TAP device whose frames the agent forwards to the host), with its
// address, route, MTU, /etc/resolv.conf and /etc/hosts, before the first exec. It
// returns the network's configuration, nil without one. Any step that fails fails the
// boot: a stage never runs with a half-configured network.
func setupNetwork(c *console, cfg proto.BootConfig, mods *moduleLoader, configured []string) (*netsetup.Config, error) {
	if err := netsetup.LoopbackUp(); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if cfg.Net == nil {
		c.logf("network: lo only (the box has no network)")
		return nil, nil
	}
	nc, err := netsetup.FromBoot(*cfg.Net, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	attach := attachNIC
	if cfg.Net.Forward {
		attach = attachForwarder
	}
	via, err := attach(c, nc, mods, configured)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := netsetup.WriteEtc("/etc", nc); err != nil {
		return nil, err
	}
	c.logf("network: %s (%s) %s", netsetup.Interface, via, nc)
	return &nc, nil
}

// setupFS mounts the stages' file systems (package rootfs): their root disk under an
// overlay, and their mounts. With a stage root and a network, the root gets the
// network's /etc/resolv.conf and /etc/hosts too. It returns the stage root ("" when
// the stages keep the initramfs). A mount that fails fails the boot.
func setupFS(c *console, cfg proto.BootConfig, nc *netsetup.Config, mods *moduleLoader, configured []string) (string, error) {
	m, err := rootfs.Setup(rootfs.FromBoot(cfg), rootfs.Env{
		Ensure:   func(names ...string) error { return ensureShipped(mods, configured, names...) },
		Wait:     transportWait,
		Interval: pollInterval,
	})
	if err != nil {
		return "", err
	}
	if m.Root != "" && nc != nil {
		etc, dir, err := m.Dir("/etc")
		if err != nil {
			return "", err
		}
		err = netsetup.WriteEtc(etc, *nc)
		dir.Close()
		if err != nil {
			return "", fmt.Errorf("stage root: %w", err)
		}
	}
	c.logf("%s", m)
	return m.Root, nil
}

// listenForwards listens on the guest's loopback for the boot config's forwards
// (lo is up), before the first exec, so no stage can take a forward's port first;
// the session carries their connections to the host. A port that cannot be
// listened on fails the boot.
func listenForwards(c *console, fs []proto.Forward) ([]agent.ForwardListener, error) {
	ls, err := agent.ListenForwards(fs)
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		c.logf("forward %s: 127.0.0.1:%d to the host", f.Name, f.Port)
	}
	return ls, nil
}

// attachNIC configures the VM's virtio-net NIC, found by its MAC, as eth0.
func attachNIC(_ *console, nc netsetup.Config, mods *moduleLoader, configured []string) (string, error) {
	if err := ensureShipped(mods, configured, "virtio_net"); err != nil {
		return "", err
	}
	name, err := netsetup.WaitForMAC(netsetup.SysClassNet, nc.MAC, transportWait, pollInterval)
	if err != nil {
		return "", err
	}
	if err := netsetup.Rename(name, netsetup.Interface); err != nil {
		return "", err
	}
	return "virtio-net NIC " + name, netsetup.Configure(netsetup.Interface, nc)
}

// attachForwarder creates eth0 as a TAP device, configures it and starts forwarding its
// frames to the host. The forwarder ends (and eth0 with it) when the stream breaks,
// which the console says; the agent runs on.
func attachForwarder(c *console, nc netsetup.Config, mods *moduleLoader, configured []string) (string, error) {
	if err := ensureShipped(mods, configured, "tun"); err != nil {
		return "", err
	}
	tap, err := tapfwd.Create(netsetup.Interface)
	if err != nil {
		return "", err
	}
	stream, via, err := netStream()
	if err == nil {
		err = netsetup.SetMAC(netsetup.Interface, nc.MAC)
		if err == nil {
			err = netsetup.Configure(netsetup.Interface, nc)
		}
		if err != nil {
			stream.Close()
		}
	}
	if err != nil {
		tap.Close()
		return "", err
	}
	go func() {
		err := tapfwd.Forward(tap, stream, nc.MTU, c.logf)
		c.logf("network: the forwarder over %s ended, %s is gone: %v", via, netsetup.Interface, err)
	}()
	return "TAP forwarder over " + via, nil
}

// netStream opens the forwarder's channel to the host: virtio-serial port
// proto.NetPortName when the agent's own channel is virtio-serial (the VM has a console
// device: see serveTransport), else a vsock connection to host port proto.NetVsockPort.
func netStream() (io.ReadWriteCloser, string, error) {
	deadline := time.Now().Add(transportWait)
	if hasVirtioDevice(virtioConsoleID) {
		for {
			if dev, ok := findPort(proto.NetPortName); ok {
				f, err := openPort(dev)
				if err != nil {
					return nil, "", fmt.Errorf("open the forwarder's port: %w", err)
				}
				return &serialConn{f: f}, "virtio-serial " + dev, nil
			}
			if time.Now().After(deadline) {
				return nil, "", fmt.Errorf("no virtio-serial port named %q after %v: the VMM must add it for the TAP forwarder", proto.NetPortName, transportWait)
			}
			time.Sleep(pollInterval)
		}
	}
	for {
		conn, err := vsock.Dial(vsock.Host, proto.NetVsockPort, nil)
		if err == nil {
			return conn, fmt.Sprintf("vsock port %d", proto.NetVsockPort), nil
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("connect to host vsock port %d for the TAP forwarder: %w", proto.NetVsockPort, err)
		}
		time.Sleep(hostPollInterval)
	}
}

// findPort returns /dev/vportNpM for the virtio-serial port named name (there is no
// udev, so no /dev/virtio-ports symlink).
func findPort(name string) (string, bool) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(n)), true
		}
	}
	return "", false
}

// openPort opens a virtio-serial port's device node, which devtmpfs creates shortly
// after the port appears (waiting up to 2 s).
func openPort(dev string) (*os.File, error) {
	var f *os.File
	var err error
	for range 1000 {
		if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil {
			return f, nil
		}
		time.Sleep(pollInterval)
	}
	return nil, err
}

// ensureShipped loads those of names that the image ships as modules (configured:
// /etc/voidbox/modules); the others are taken as built into its kernel.
func ensureShipped(l *moduleLoader, configured []string, names ...string) error {
	var load []string
	for _, n := range names {
		if slices.ContainsFunc(configured, func(c string) bool { return modName(c) == n }) {
			load = append(load, n)
		}
	}
	return l.ensure(load...)
}
