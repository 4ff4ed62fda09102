package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// BuildOptions configures Build.
type BuildOptions struct {
	// AgentPath is the statically linked guest-agent binary that becomes /init.
	AgentPath string
	// CacheDir receives kernel, initramfs.cpio and image.json; default ~/.voidbox/guest.
	CacheDir string
	// DebDir caches the downloaded .deb files; default CacheDir/debs.
	DebDir string
	// Log receives progress lines (what is downloaded); nil discards them.
	Log io.Writer
	// Kernel is KernelVoidbox (the default when empty) or KernelDebian.
	Kernel string
	// KernelCacheDir keeps compiled kernels; default ~/.voidbox/kernels.
	KernelCacheDir string
}

// Build assembles the guest image and installs kernel and initramfs into the
// cache, where Resolve finds them: the kernel (built from the pinned
// linux-source with the microVM config, or Debian's cloud kernel and its
// modules), busybox-static and the agent as /init. Downloads and the compiled
// kernel are cached; the same inputs always give the same initramfs bytes.
func Build(ctx context.Context, opts BuildOptions) (Image, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.CacheDir == "" {
		dir, err := DefaultCacheDir()
		if err != nil {
			return Image{}, err
		}
		opts.CacheDir = dir
	}
	if opts.DebDir == "" {
		opts.DebDir = filepath.Join(opts.CacheDir, "debs")
	}
	if opts.Kernel == "" {
		opts.Kernel = KernelVoidbox
	}
	if opts.KernelCacheDir == "" {
		dir, err := DefaultKernelCacheDir()
		if err != nil {
			return Image{}, err
		}
		opts.KernelCacheDir = dir
	}
	if opts.Kernel != KernelVoidbox && opts.Kernel != KernelDebian {
		return Image{}, fmt.Errorf("guest build: unknown kernel %q: want %q (built from %s, the default) or %q (Debian's %s)", opts.Kernel, KernelVoidbox, KernelSourcePackage, KernelDebian, KernelMetaPackage)
	}
	agent, err := readAgent(opts.AgentPath)
	if err != nil {
		return Image{}, err
	}
	bdeb, err := downloadDeb(ctx, opts.DebDir, BusyboxPackage, opts.Log)
	if err != nil {
		return Image{}, err
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return Image{}, fmt.Errorf("create guest cache %s: %w", opts.CacheDir, err)
	}
	work, err := os.MkdirTemp(opts.CacheDir, "build-")
	if err != nil {
		return Image{}, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(work)
	var k kernelParts
	if opts.Kernel == KernelDebian {
		k, err = debianKernel(ctx, opts, filepath.Join(work, "kernel"))
	} else {
		k, err = voidboxKernel(ctx, opts)
	}
	if err != nil {
		return Image{}, err
	}
	broot := filepath.Join(work, "busybox")
	if err := extractDeb(ctx, bdeb, broot); err != nil {
		return Image{}, err
	}
	fmt.Fprintf(opts.Log, "kernel %s (%s), agent %s\n", k.release, k.origin, opts.AgentPath)
	busybox := filepath.Join(broot, "bin", "busybox")
	applets, err := runCmd(ctx, "", busybox, "--list-full")
	if err != nil {
		return Image{}, fmt.Errorf("list busybox applets: %w", err)
	}
	bbData, err := os.ReadFile(busybox)
	if err != nil {
		return Image{}, fmt.Errorf("read busybox: %w", err)
	}
	arch, err := assemble(layout{
		release: k.release, agent: agent, busybox: bbData,
		applets: parseApplets(applets), modules: k.modules, builtin: k.builtin,
	})
	if err != nil {
		return Image{}, fmt.Errorf("assemble initramfs: %w", err)
	}
	var cpio bytes.Buffer
	if err := arch.Write(&cpio); err != nil {
		return Image{}, err
	}
	img := Image{
		Kernel:       filepath.Join(opts.CacheDir, kernelFile),
		Initramfs:    filepath.Join(opts.CacheDir, initramfsFile),
		Release:      k.release,
		SHA256:       sha256Hex(cpio.Bytes()),
		KernelSHA256: sha256Hex(k.image),
		KernelKind:   opts.Kernel,
		KernelOrigin: k.origin,
		ConfigSHA256: k.configSHA256,
	}
	// Kernel and initramfs first, the manifest last: Resolve trusts the
	// manifest, so a crash mid-way leaves the previous image or none.
	if err := writeAtomic(img.Kernel, k.image, 0o644); err != nil {
		return Image{}, err
	}
	if err := writeAtomic(img.Initramfs, cpio.Bytes(), 0o644); err != nil {
		return Image{}, err
	}
	manifest, err := json.MarshalIndent(img.manifest(), "", "  ")
	if err != nil {
		return Image{}, err
	}
	if err := writeAtomic(filepath.Join(opts.CacheDir, manifestFile), append(manifest, '\n'), 0o644); err != nil {
		return Image{}, err
	}
	fmt.Fprintf(opts.Log, "guest image %s: kernel %d bytes, initramfs %d bytes, sha256 %s\n", opts.CacheDir, len(k.image), cpio.Len(), img.SHA256)
	return img, nil
}

// kernelParts is what an image takes from its kernel: the image to boot,
// and for a modular kernel the modules the initramfs ships.
type kernelParts struct {
	image        []byte
	release      string
	origin       string     // where the kernel came from, for guest info
	configSHA256 string     // digest of the config fragment (built kernels)
	modules      *ModuleSet // nil: everything is built in
	builtin      []byte     // modules.builtin, with modules
}

// voidboxKernel builds (or takes from the cache) the microVM kernel.
func voidboxKernel(ctx context.Context, opts BuildOptions) (kernelParts, error) {
	k, err := buildKernel(ctx, opts.KernelCacheDir, opts.DebDir, opts.Log)
	if err != nil {
		return kernelParts{}, err
	}
	data, err := os.ReadFile(k.vmlinux)
	if err != nil {
		return kernelParts{}, fmt.Errorf("read built kernel: %w", err)
	}
	return kernelParts{
		image: data, release: k.release, configSHA256: FragmentSHA256(),
		origin: fmt.Sprintf("%s %s + kconfig/microvm.config (vmlinux, PVH)", KernelSourcePackage, KernelSourceVersion),
	}, nil
}

// debianKernel unpacks Debian's cloud kernel into kroot and selects the
// modules the agent needs.
func debianKernel(ctx context.Context, opts BuildOptions, kroot string) (kernelParts, error) {
	kdeb, release, err := unpackDebianKernel(ctx, opts.DebDir, kroot, opts.Log)
	if err != nil {
		return kernelParts{}, err
	}
	mods, err := ResolveModules(filepath.Join(kroot, "lib", "modules", release), GuestModules)
	if err != nil {
		return kernelParts{}, fmt.Errorf("select guest modules: %w", err)
	}
	builtin, err := os.ReadFile(filepath.Join(kroot, "lib", "modules", release, "modules.builtin"))
	if err != nil {
		return kernelParts{}, fmt.Errorf("read modules.builtin: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+release))
	if err != nil {
		return kernelParts{}, fmt.Errorf("read kernel image: %w", err)
	}
	return kernelParts{image: data, release: release, origin: filepath.Base(kdeb) + " (bzImage)", modules: mods, builtin: builtin}, nil
}

// unpackDebianKernel downloads (or reuses) the cloud kernel's .deb and
// unpacks it into kroot, returning the .deb and the kernel release.
func unpackDebianKernel(ctx context.Context, debDir, kroot string, log io.Writer) (string, string, error) {
	kpkg, err := resolveKernelPackage(ctx)
	if err != nil {
		return "", "", err
	}
	kdeb, err := downloadDeb(ctx, debDir, kpkg, log)
	if err != nil {
		return "", "", err
	}
	if err := extractDeb(ctx, kdeb, kroot); err != nil {
		return "", "", err
	}
	release, err := findRelease(kroot)
	if err != nil {
		return "", "", err
	}
	return kdeb, release, nil
}

// DebianKernel returns the path of Debian's cloud kernel (a bzImage),
// unpacked once into cacheDir/debian: the kernel voidbox bench boot compares
// the default one with.
func DebianKernel(ctx context.Context, cacheDir string, log io.Writer) (string, error) {
	dir := filepath.Join(cacheDir, "debian")
	if found, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*")); len(found) == 1 {
		return found[0], nil
	}
	work, err := os.MkdirTemp(cacheDir, "debian-")
	if err != nil {
		return "", fmt.Errorf("unpack Debian kernel: %w", err)
	}
	defer os.RemoveAll(work)
	_, release, err := unpackDebianKernel(ctx, filepath.Join(cacheDir, "debs"), work, log)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(work, "boot", "vmlinuz-"+release))
	if err != nil {
		return "", fmt.Errorf("read Debian kernel: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "vmlinuz-"+release)
	return out, writeAtomic(out, data, 0o644)
}

// readAgent loads the agent binary and rejects what cannot run as PID 1 in
// an empty initramfs: non-ELF files, other architectures and dynamically
// linked binaries (there is no libc or loader in the image).
func readAgent(p string) ([]byte, error) {
	if p == "" {
		return nil, fmt.Errorf("guest build: AgentPath is empty: pass the static guest-agent binary (CGO_ENABLED=0 go build ./guest-agent)")
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("guest build: read agent: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("guest build: agent %s is not an ELF binary: %w", p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("guest build: agent %s is built for %v, want x86-64 (GOARCH=amd64)", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("guest build: agent %s is dynamically linked; build it with CGO_ENABLED=0", p)
		}
	}
	return data, nil
}

func findRelease(kroot string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(kroot, "lib", "modules"))
	if err != nil {
		return "", fmt.Errorf("kernel package has no lib/modules: %w", err)
	}
	var releases []string
	for _, e := range entries {
		if e.IsDir() {
			releases = append(releases, e.Name())
		}
	}
	if len(releases) != 1 {
		return "", fmt.Errorf("kernel package has %d releases under lib/modules (%v), want exactly 1", len(releases), releases)
	}
	return releases[0], nil
}

// parseApplets maps `busybox --list-full` output ("usr/bin/wget") onto the
// image's /bin and /sbin. linuxrc is dropped: /init is the agent.
func parseApplets(out []byte) []string {
	seen := map[string]bool{}
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		dir, name := path.Split(line)
		if name == "" || name == "busybox" || strings.ContainsAny(name, "\x00") || name == "." || name == ".." {
			continue
		}
		var p string
		switch strings.Trim(dir, "/") {
		case "bin", "usr/bin":
			p = "/bin/" + name
		case "sbin", "usr/sbin":
			p = "/sbin/" + name
		default:
			continue
		}
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

type layout struct {
	release string
	agent   []byte
	busybox []byte
	applets []string
	modules *ModuleSet
	builtin []byte
}

// assemble lays out the initramfs agreed with the guest agent.
func assemble(l layout) (*Archive, error) {
	a := NewArchive()
	for _, d := range []string{"/dev", "/proc", "/sys", "/tmp", "/workspace", "/etc", "/root", "/bin", "/sbin", "/usr"} {
		perm := os.FileMode(0o755)
		if d == "/tmp" {
			perm = os.ModeSticky | 0o777
		}
		if d == "/root" {
			perm = 0o700
		}
		if err := a.AddDir(d, perm); err != nil {
			return nil, err
		}
	}
	steps := []error{
		a.AddFile("/init", l.agent, 0o755),
		a.AddFile("/bin/busybox", l.busybox, 0o755),
		a.AddCharDevice("/dev/console", 0o600, 5, 1),
		a.AddCharDevice("/dev/null", 0o666, 1, 3),
		a.AddSymlink("/usr/bin", "../bin"),
		a.AddSymlink("/usr/sbin", "../sbin"),
	}
	if l.modules == nil {
		// A kernel with everything built in: the agent finds no module to load.
		steps = append(steps, a.AddFile("/etc/voidbox/modules", nil, 0o644))
	} else {
		steps = append(steps, a.AddFile("/etc/voidbox/modules", []byte(strings.Join(l.modules.Load, "\n")+"\n"), 0o644))
	}
	for _, p := range l.applets {
		steps = append(steps, a.AddSymlink(p, "/bin/busybox"))
	}
	if l.modules != nil {
		modRoot := "/lib/modules/" + l.release
		for _, m := range l.modules.Modules {
			steps = append(steps, a.AddFile(modRoot+"/"+m.RelPath, m.Data, 0o644))
		}
		steps = append(steps,
			a.AddFile(modRoot+"/modules.dep", l.modules.ModulesDep(), 0o644),
			a.AddFile(modRoot+"/modules.builtin", l.builtin, 0o644),
		)
	}
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeAtomic(p string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
