package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// moduleLoader loads kernel modules on demand. Under TCG every finit_module costs
// tens of milliseconds (relocation and init code run emulated), so the agent loads
// only its transport's driver at boot and leaves the other modules the image ships
// (/etc/voidbox/modules: network, block, virtio-fs, overlay) to the feature that
// first needs them, through ensure.
type moduleLoader struct {
	dir  string // /lib/modules/<release>
	load func(path string) error
	logf func(string, ...any)

	mu     sync.Mutex
	graph  depGraph // modules.dep, parsed on first use
	loaded map[string]bool
}

func newModuleLoader(dir string, load func(path string) error, logf func(string, ...any)) *moduleLoader {
	return &moduleLoader{dir: dir, load: load, logf: logf, loaded: map[string]bool{}}
}

// ensure loads names and their dependencies, in modules.dep order, skipping what
// this loader loaded before. Names absent from modules.dep are taken as built into
// the kernel (logged once per call). It is safe for concurrent features.
func (l *moduleLoader) ensure(names ...string) error {
	if len(names) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.graph == nil {
		f, err := os.Open(filepath.Join(l.dir, "modules.dep"))
		if err != nil {
			return fmt.Errorf("modules: %w (the guest image must ship depmod output for this kernel)", err)
		}
		g, err := parseModulesDep(f)
		f.Close()
		if err != nil {
			return err
		}
		l.graph = g
	}
	order, builtin := l.graph.loadOrder(names)
	if len(builtin) > 0 {
		l.logf("modules not in modules.dep, assumed built in: %s", strings.Join(builtin, " "))
	}
	for _, p := range order {
		name := modName(p)
		if l.loaded[name] {
			continue
		}
		if err := l.load(filepath.Join(l.dir, p)); err != nil {
			return fmt.Errorf("load module %s: %w", name, err)
		}
		l.loaded[name] = true
	}
	return nil
}

// Modules the agent transports need: virtio_mmio makes the microVM's devices
// visible on the virtio bus, then the driver of the transport device present.
const (
	modVirtioMMIO    = "virtio_mmio"
	modVirtioConsole = "virtio_console"
	modVsock         = "vmw_vsock_virtio_transport"
)

// transportModules picks the driver for the agent transport among the virtio device
// ids present (/sys/bus/virtio/devices/*/device, visible once virtio_mmio is loaded):
// virtio-serial when there is a console device, vsock when there is only a vsock
// device. With neither visible it returns both, as the agent did before loading
// lazily, so that serve's own wait and error message still apply. Only modules
// listed in configured (/etc/voidbox/modules) are returned: an image without a
// transport module has it built into its kernel.
func transportModules(ids []string, configured []string) []string {
	has := map[string]bool{}
	for _, id := range ids {
		has[strings.TrimSpace(id)] = true
	}
	var want []string
	switch {
	case has[virtioConsoleID]:
		want = []string{modVirtioConsole}
	case has[virtioVsockID]:
		want = []string{modVsock}
	default:
		want = []string{modVirtioConsole, modVsock}
	}
	var out []string
	for _, w := range want {
		for _, c := range configured {
			if modName(c) == w {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

// virtioDeviceIDs lists the device ids on the virtio bus ("0x0003", ...).
func virtioDeviceIDs() []string {
	paths, _ := filepath.Glob("/sys/bus/virtio/devices/*/device")
	var ids []string
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			ids = append(ids, strings.TrimSpace(string(b)))
		}
	}
	return ids
}

// loadBootModules loads what the agent transport needs, through l: virtio_mmio
// (when the image ships it as a module) and then the transport's driver.
func loadBootModules(l *moduleLoader, configured []string) error {
	if len(configured) == 0 {
		return nil
	}
	for _, c := range configured {
		if modName(c) == modVirtioMMIO {
			if err := l.ensure(modVirtioMMIO); err != nil {
				return err
			}
			break
		}
	}
	return l.ensure(transportModules(virtioDeviceIDs(), configured)...)
}
