package guestimage

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ulikunitz/xz"
)

// GuestModules are the kernel modules the guest image ships (listed in
// /etc/voidbox/modules). The agent loads only its transport's at boot
// (virtio_mmio, then virtio_console or the vsock transport) and the others
// when a feature first needs them. Their dependencies (virtio, virtio_ring,
// vsock, fuse, failover, ...) come along through modules.dep.
var GuestModules = []string{
	"virtio_mmio",
	"virtio_console",
	"virtio_net",
	"virtio_blk",
	"vmw_vsock_virtio_transport",
	"virtiofs",
	"overlay",
	// eth0 as a TAP device: the agent's network forwarder (Cloud Hypervisor).
	"tun",
	// QEMU's fw_cfg: the boot config (with the session secret) arrives as a
	// fw_cfg item, not on the kernel command line; the agent loads it first.
	"qemu_fw_cfg",
}

// Module is one loadable kernel module selected for the guest.
type Module struct {
	Name    string   // canonical name: file base without .ko, '-' replaced by '_'
	RelPath string   // path relative to /lib/modules/<release>, always ending in .ko
	Depends []string // names from the module's .modinfo depends= field
	Data    []byte   // uncompressed module image
}

// ModuleSet is the closure of the requested modules under their dependencies.
type ModuleSet struct {
	Modules map[string]*Module
	// Load lists the requested, non-built-in names (what /etc/voidbox/modules holds).
	Load []string
}

// moduleName turns a module file name into the name the kernel and
// modules.dep use ("nf-conntrack.ko.xz" -> "nf_conntrack").
func moduleName(file string) string {
	base := filepath.Base(file)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(base, ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ResolveModules selects the requested modules and everything they depend on
// from an unpacked /lib/modules/<release> directory. Names listed in
// modules.builtin are skipped silently: the kernel already has them.
func ResolveModules(modDir string, want []string) (*ModuleSet, error) {
	builtin, err := readBuiltin(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	index := map[string]string{} // name -> path relative to modDir
	err = filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return nil
		}
		rel, err := filepath.Rel(modDir, p)
		if err != nil {
			return err
		}
		index[moduleName(d.Name())] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", modDir, err)
	}
	set := &ModuleSet{Modules: map[string]*Module{}}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if _, done := set.Modules[name]; done || builtin[name] {
			return nil
		}
		rel, ok := index[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is neither in %s nor built in", name, from, modDir)
			}
			return fmt.Errorf("module %s is neither in %s nor built in", name, modDir)
		}
		data, err := readModule(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		info, err := parseModinfo(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", rel, err)
		}
		m := &Module{Name: name, RelPath: stripCompression(rel), Depends: info.depends, Data: data}
		set.Modules[name] = m
		for _, dep := range m.Depends {
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range want {
		name = strings.ReplaceAll(name, "-", "_")
		if builtin[name] {
			continue
		}
		if err := visit(name, ""); err != nil {
			return nil, err
		}
		set.Load = append(set.Load, name)
	}
	return set, nil
}

func stripCompression(rel string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		rel = strings.TrimSuffix(rel, ext)
	}
	return rel
}

// readModule returns the uncompressed module image. The guest's busybox insmod
// and the agent load plain ELF files, and the kernel may lack in-kernel
// decompression, so .ko.xz is unpacked here.
func readModule(p string) ([]byte, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	switch {
	case strings.HasSuffix(p, ".ko"):
		return raw, nil
	case strings.HasSuffix(p, ".ko.xz"):
		r, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("module %s: unsupported compression (only .ko and .ko.xz are handled)", p)
	}
}

func readBuiltin(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read built-in module list: %w", err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out[moduleName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return out, nil
}

type modinfo struct {
	name    string
	depends []string
}

// parseModinfo reads the NUL-separated key=value strings of a module's
// .modinfo ELF section. The module comes from a downloaded package, so
// malformed input must produce an error, never a panic.
func parseModinfo(data []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return modinfo{}, fmt.Errorf("not an ELF module: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, fmt.Errorf("no .modinfo section")
	}
	raw, err := sec.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfoSection(raw), nil
}

func parseModinfoSection(raw []byte) modinfo {
	var info modinfo
	for _, field := range bytes.Split(raw, []byte{0}) {
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			continue
		}
		switch key {
		case "name":
			info.name = value
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.depends = append(info.depends, strings.ReplaceAll(d, "-", "_"))
				}
			}
		}
	}
	return info
}

// DepOrder returns the transitive dependencies of name in depmod's order:
// read right to left, each module comes after everything it needs, so
// modprobe (and the agent) load the list from the end, then name itself.
func (s *ModuleSet) DepOrder(name string) []string {
	var post []string
	seen := map[string]bool{name: true}
	var walk func(n string)
	walk = func(n string) {
		m := s.Modules[n]
		if m == nil {
			return
		}
		deps := append([]string(nil), m.Depends...)
		sort.Strings(deps)
		for _, d := range deps {
			if seen[d] {
				continue
			}
			seen[d] = true
			walk(d)
			post = append(post, d)
		}
	}
	walk(name)
	// post lists dependencies before their dependents; depmod prints the
	// reverse (dependents first, deepest dependencies last).
	for i, j := 0, len(post)-1; i < j; i, j = i+1, j-1 {
		post[i], post[j] = post[j], post[i]
	}
	return post
}

// ModulesDep renders modules.dep for exactly the modules in the set, one line
// per module sorted by path: "kernel/a.ko: kernel/b.ko kernel/c.ko".
func (s *ModuleSet) ModulesDep() []byte {
	names := make([]string, 0, len(s.Modules))
	for n := range s.Modules {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return s.Modules[names[i]].RelPath < s.Modules[names[j]].RelPath })
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(s.Modules[n].RelPath + ":")
		for _, d := range s.DepOrder(n) {
			if m := s.Modules[d]; m != nil {
				b.WriteString(" " + m.RelPath)
			}
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}
