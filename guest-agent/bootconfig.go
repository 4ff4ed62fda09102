package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// Where the boot config comes from. Under QEMU it is the fw_cfg item
// proto.FwCfgName, read from a 0600 file by the VMM so the secret never is on a
// command line; a VMM without fw_cfg (Cloud Hypervisor, whose VM config travels
// over its private API socket) puts it on the kernel command line.
const (
	fwCfgDir = "/sys/firmware/qemu_fw_cfg"
	// fwCfgModule is the fw_cfg sysfs driver when the kernel has it as a module
	// (Debian's cloud kernel); the voidbox kernel has it built in.
	fwCfgModule = "qemu_fw_cfg"
)

// readBootConfig reads the boot config (see bootConfigFrom) and then hides the
// kernel command line from stage processes by bind-mounting an empty file over
// /proc/cmdline: under Cloud Hypervisor it carries the session secret.
func readBootConfig(c *console) (proto.BootConfig, error) {
	if err := loadFwCfgDriver(c); err != nil {
		return proto.BootConfig{}, err
	}
	cfg, source, err := bootConfigFrom("/", c.logf)
	if err != nil {
		return proto.BootConfig{}, err
	}
	c.logf("boot config from %s", source)
	if strings.HasPrefix(source, "fw_cfg") {
		hideFwCfg(c)
	}
	const empty = "/run/voidbox-empty"
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		return cfg, fmt.Errorf("hide kernel command line: %w", err)
	}
	if err := unix.Mount(empty, "/proc/cmdline", "", unix.MS_BIND, ""); err != nil {
		return cfg, fmt.Errorf("hide kernel command line: bind %s over /proc/cmdline: %w", empty, err)
	}
	return cfg, nil
}

// fwCfgDriver is where the fw_cfg sysfs driver lists the devices it serves.
const fwCfgDriver = "/sys/bus/platform/drivers/fw_cfg"

// hideFwCfg unbinds the fw_cfg driver from its device once the boot config is
// read: its sysfs files, the boot config item among them, are gone for the rest
// of the boot. The item is root's alone (mode 0400) already; this leaves nothing
// to read even for a stage that became root. A failure is logged, not fatal.
func hideFwCfg(c *console) {
	entries, err := os.ReadDir(fwCfgDriver)
	if err != nil {
		c.logf("hide fw_cfg: %v", err)
		return
	}
	for _, e := range entries {
		// Devices are symlinks; "module" is one too, to the driver's module.
		if e.Type()&fs.ModeSymlink == 0 || e.Name() == "module" {
			continue
		}
		if err := os.WriteFile(filepath.Join(fwCfgDriver, "unbind"), []byte(e.Name()), 0); err != nil {
			c.logf("hide fw_cfg: unbind %s: %v", e.Name(), err)
		}
	}
}

// loadFwCfgDriver loads the fw_cfg sysfs driver when the image ships it as a
// module: without it the guest cannot tell that the VM has a fw_cfg device.
func loadFwCfgDriver(c *console) error {
	if _, err := os.Stat(fwCfgDir); err == nil {
		return nil // built in (or loaded already)
	}
	loader, configured, err := configuredModules(c)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(configured, func(m string) bool { return modName(m) == fwCfgModule }) {
		return nil // a kernel without it: only the command line can carry the config
	}
	if err := loader.ensure(fwCfgModule); err != nil {
		return fmt.Errorf("load the fw_cfg driver to read the boot config: %w", err)
	}
	return nil
}

// bootConfigFrom reads the boot config under root ("/" in the guest; a fake tree
// in tests). When the VM has a fw_cfg device (the driver probed it and made
// fwCfgDir/rev) the config must come from the fw_cfg item: a voidbox.boot= on
// the kernel command line is then ignored, never trusted, since whoever can
// shape the command line of a fw_cfg VMM is not the voidbox host. Without a
// fw_cfg device the kernel command line is the only source. source names where
// the config came from, for the console log.
func bootConfigFrom(root string, logf func(string, ...any)) (cfg proto.BootConfig, source string, err error) {
	cmdline, cmdErr := readBounded(filepath.Join(root, "proc/cmdline"), 64<<10)
	if _, err := os.Stat(filepath.Join(root, fwCfgDir, "rev")); err == nil {
		item := filepath.Join(root, fwCfgDir, "by_name", proto.FwCfgName, "raw")
		js, err := readBounded(item, proto.MaxBootJSON+1)
		if errors.Is(err, fs.ErrNotExist) {
			return cfg, "", fmt.Errorf("the VM has a fw_cfg device but no %s item (%s missing): the VMM was not started by voidbox; a voidbox.boot= on the kernel command line is not trusted when fw_cfg exists", proto.FwCfgName, filepath.Join(fwCfgDir, "by_name", proto.FwCfgName, "raw"))
		}
		if err != nil {
			return cfg, "", fmt.Errorf("read the boot config from fw_cfg: %w", err)
		}
		if cfg, err = proto.ParseBootJSON(js); err != nil {
			return cfg, "", err
		}
		if cmdErr == nil && strings.Contains(string(cmdline), "voidbox.boot=") {
			logf("ignoring voidbox.boot= on the kernel command line: the boot config comes from fw_cfg")
		}
		return cfg, "fw_cfg " + proto.FwCfgName, nil
	}
	if cmdErr != nil {
		return cfg, "", fmt.Errorf("read kernel command line: %w", cmdErr)
	}
	cfg, err = proto.ParseKernelCmdline(string(cmdline))
	if err != nil {
		return cfg, "", fmt.Errorf("%w (and the VM has no fw_cfg device: %s/rev is absent, so either the VMM has none or the guest kernel lacks CONFIG_FW_CFG_SYSFS / the %s module)", err, fwCfgDir, fwCfgModule)
	}
	return cfg, "the kernel command line", nil
}

// readBounded reads at most max bytes of the file at path.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}
