package guestimage

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Kernel kinds a guest image can be built with.
const (
	// KernelVoidbox is the default: Linux built from Debian's linux-source
	// package with kconfig/microvm.config applied to tinyconfig. Everything is
	// built in, so its initramfs carries no modules.
	KernelVoidbox = "voidbox"
	// KernelDebian is Debian's linux-image-cloud-amd64, whose virtio drivers are
	// modules the initramfs ships and the agent loads.
	KernelDebian = "debian"
)

// The kernel source the default kernel is built from, pinned: the version
// apt-get downloads and the digest of its .deb. A newer Debian point release
// changes both on purpose, in one commit, with the benchmark re-run.
const (
	KernelSourcePackage = "linux-source-6.1"
	KernelSourceVersion = "6.1.192-2"
	KernelSourceSHA256  = "ae95fe63d4c553f8d0e6c86cb1ab566f3894a43743eb19ab585cd97d82f26514"
)

// kernelBuildVersion changes when the way the kernel is built changes (not
// the fragment or the source: both are part of the cache key already).
const kernelBuildVersion = "1"

//go:embed kconfig/microvm.config
var kernelFragment []byte

// KernelFragment is the config fragment applied to tinyconfig.
func KernelFragment() []byte { return append([]byte(nil), kernelFragment...) }

// FragmentSHA256 is the digest of the config fragment, shown by guest info.
func FragmentSHA256() string { return sha256Hex(kernelFragment) }

// HardeningOff lists what the guest kernel leaves out on purpose (the
// fragment says why for each). Tests check both the fragment and the running
// guest's /proc/config.gz against it.
var HardeningOff = []string{
	"CONFIG_MODULES", "CONFIG_IA32_EMULATION", "CONFIG_X86_X32_ABI", "CONFIG_IO_URING",
	"CONFIG_BPF_SYSCALL", "CONFIG_USER_NS", "CONFIG_KEXEC", "CONFIG_KEXEC_FILE",
	"CONFIG_KEYS", "CONFIG_USERFAULTFD", "CONFIG_DEVMEM", "CONFIG_PROC_KCORE",
	"CONFIG_MAGIC_SYSRQ", "CONFIG_DEBUG_FS", "CONFIG_KPROBES",
}

// builtKernel is a compiled kernel in the kernel cache.
type builtKernel struct {
	vmlinux string // ELF vmlinux with a PVH note
	config  string // the final .config
	release string // make kernelrelease
}

// DefaultKernelCacheDir is ~/.voidbox/kernels: compiled kernels, shared by
// every image cache (a kernel takes minutes to compile, an image seconds).
func DefaultKernelCacheDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate kernel cache: %w", err)
	}
	return filepath.Join(home, ".voidbox", "kernels"), nil
}

// kernelCacheKey names a kernel build by everything that decides its bytes.
func kernelCacheKey() string {
	return sha256Hex([]byte(KernelSourcePackage + "=" + KernelSourceVersion + "\x00" + kernelBuildVersion + "\x00" + string(kernelFragment)))[:16]
}

// buildKernel returns the cached kernel for the pinned source and fragment,
// compiling it first when the cache has none.
func buildKernel(ctx context.Context, cacheDir, debDir string, log io.Writer) (builtKernel, error) {
	dir := filepath.Join(cacheDir, kernelCacheKey())
	k := builtKernel{vmlinux: filepath.Join(dir, "vmlinux"), config: filepath.Join(dir, "config")}
	if k.cached(dir) {
		fmt.Fprintf(log, "using cached kernel %s (%s)\n", k.vmlinux, k.release)
		return k, nil
	}
	// One compile at a time per cache: a second builder (parallel test
	// binaries, two terminals) waits, then finds the first one's kernel.
	unlock, err := lockDir(cacheDir, log)
	if err != nil {
		return k, err
	}
	defer unlock()
	if k.cached(dir) {
		fmt.Fprintf(log, "using cached kernel %s (%s)\n", k.vmlinux, k.release)
		return k, nil
	}
	// Holding the lock, any build dir left is from a builder that died.
	stale, _ := filepath.Glob(filepath.Join(cacheDir, "build-*"))
	for _, d := range stale {
		_ = os.RemoveAll(d)
	}
	if err := checkKernelToolchain(); err != nil {
		return k, err
	}
	deb, err := downloadPinnedDeb(ctx, debDir, KernelSourcePackage, KernelSourceVersion, KernelSourceSHA256, log)
	if err != nil {
		return k, err
	}
	work, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		return k, fmt.Errorf("create kernel build dir: %w", err)
	}
	defer os.RemoveAll(work)
	src, err := unpackKernelSource(ctx, deb, work, log)
	if err != nil {
		return k, err
	}
	if err := configureKernel(ctx, src); err != nil {
		return k, err
	}
	if err := compileKernel(ctx, src, log); err != nil {
		return k, err
	}
	release, err := runCmd(ctx, src, "make", "-s", "kernelrelease")
	if err != nil {
		return k, fmt.Errorf("kernel release: %w", err)
	}
	k.release = strings.TrimSpace(string(release))
	// Files first, release last: the release file marks a complete entry.
	stage := filepath.Join(work, "out")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return k, err
	}
	for name, from := range map[string]string{"vmlinux": "vmlinux", "config": ".config"} {
		if err := os.Rename(filepath.Join(src, from), filepath.Join(stage, name)); err != nil {
			return k, fmt.Errorf("keep kernel %s: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(stage, "release"), []byte(k.release+"\n"), 0o644); err != nil {
		return k, err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(stage, dir); err != nil {
		return k, fmt.Errorf("install kernel into %s: %w", dir, err)
	}
	fmt.Fprintf(log, "kernel %s built: %s\n", k.release, k.vmlinux)
	return k, nil
}

// checkKernelToolchain fails early, naming every missing piece, instead of
// minutes into a compile.
func checkKernelToolchain() error {
	var missing []string
	for _, tool := range []string{"gcc", "make", "flex", "bison", "bc", "tar", "xz", "perl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/usr/include/libelf.h"); err != nil {
		missing = append(missing, "libelf-dev (objtool)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("compiling the guest kernel needs %s: run scripts/setup.sh (apt-get install gcc make flex bison bc libelf-dev xz-utils), or build with --kernel debian", strings.Join(missing, ", "))
	}
	return nil
}

// cached reports whether dir holds a complete kernel (the release file is
// written last), filling in the release.
func (k *builtKernel) cached(dir string) bool {
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return false
	}
	if _, err := os.Stat(k.vmlinux); err != nil {
		return false
	}
	k.release = strings.TrimSpace(string(rel))
	return true
}

// lockDir takes an exclusive flock on dir/.lock, saying so when it must wait.
func lockDir(dir string, log io.Writer) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create kernel cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock kernel cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(log, "waiting for another voidbox compiling the kernel in %s\n", dir)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock kernel cache: %w", err)
		}
	}
	return func() { f.Close() }, nil
}

// unpackKernelSource extracts the .deb and the source tarball inside it.
func unpackKernelSource(ctx context.Context, deb, work string, log io.Writer) (string, error) {
	pkgRoot := filepath.Join(work, "pkg")
	if err := extractDeb(ctx, deb, pkgRoot); err != nil {
		return "", err
	}
	tarballs, _ := filepath.Glob(filepath.Join(pkgRoot, "usr", "src", "linux-source-*.tar.xz"))
	if len(tarballs) != 1 {
		return "", fmt.Errorf("%s: want one usr/src/linux-source-*.tar.xz, found %d", filepath.Base(deb), len(tarballs))
	}
	fmt.Fprintf(log, "unpacking %s\n", filepath.Base(tarballs[0]))
	if _, err := runCmd(ctx, work, "tar", "-xJf", tarballs[0]); err != nil {
		return "", fmt.Errorf("unpack kernel source: %w", err)
	}
	_ = os.RemoveAll(pkgRoot)
	dirs, _ := filepath.Glob(filepath.Join(work, "linux-source-*"))
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("kernel source tarball %s has no linux-source-* directory", filepath.Base(tarballs[0]))
}

// configureKernel makes tinyconfig, applies the fragment with the kernel's
// own merge script, resolves dependencies, then checks every line of the
// fragment survived: Kconfig silently drops a symbol whose dependencies are
// unmet, and a dropped hardening choice must fail the build, not ship.
func configureKernel(ctx context.Context, src string) error {
	frag := filepath.Join(src, "voidbox-microvm.config")
	if err := os.WriteFile(frag, kernelFragment, 0o644); err != nil {
		return err
	}
	steps := [][]string{
		{"make", "tinyconfig"},
		{"scripts/kconfig/merge_config.sh", "-m", ".config", frag},
		{"make", "olddefconfig"},
	}
	for _, s := range steps {
		if _, err := runCmdEnv(ctx, src, kbuildEnv(), s[0], s[1:]...); err != nil {
			return fmt.Errorf("configure kernel: %w", err)
		}
	}
	final, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return fmt.Errorf("configure kernel: %w", err)
	}
	return CheckKernelConfig(kernelFragment, final)
}

// CheckKernelConfig reports every fragment line the final config does not
// honour: a value that differs, or a symbol that should be unset but is set.
func CheckKernelConfig(fragment, final []byte) error {
	want := ParseKernelConfig(fragment)
	got := ParseKernelConfig(final)
	var bad []string
	for _, sym := range sortedKeys(want) {
		w, g := want[sym], got[sym]
		if w != g {
			if g == "" {
				g = "not set"
			}
			if w == "" {
				w = "not set"
			}
			bad = append(bad, fmt.Sprintf("%s: fragment wants %s, Kconfig gave %s", sym, w, g))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kernel config fragment not honoured (a dependency is missing from kconfig/microvm.config):\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// ParseKernelConfig reads .config syntax: CONFIG_X=v lines, and
// "# CONFIG_X is not set" lines as an empty value. Other lines are ignored.
func ParseKernelConfig(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if sym, ok := strings.CutSuffix(rest, " is not set"); ok && strings.HasPrefix(sym, "CONFIG_") && !strings.ContainsAny(sym, " =") {
				out[sym] = ""
			}
			continue
		}
		sym, val, ok := strings.Cut(line, "=")
		if ok && strings.HasPrefix(sym, "CONFIG_") && !strings.ContainsAny(sym, " #") {
			if val == "n" {
				val = ""
			}
			out[sym] = val
		}
	}
	return out
}

// compileKernel runs make vmlinux on every CPU, printing a progress line
// every few seconds (the compile takes minutes under a cold cache).
func compileKernel(ctx context.Context, src string, log io.Writer) error {
	jobs := fmt.Sprint(runtime.NumCPU())
	cmd := exec.CommandContext(ctx, "make", "-j"+jobs, "vmlinux")
	cmd.Dir = src
	// make's compilers must stop with it on Ctrl-C: kill the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = append(os.Environ(), kbuildEnv()...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var tail tailLines
	cmd.Stderr = &tail
	var compiled atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(strings.TrimSpace(sc.Text()), "CC ") {
				compiled.Add(1)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	fmt.Fprintf(log, "compiling kernel (make -j%s vmlinux; a few minutes, once per source and config)\n", jobs)
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("compile kernel: %w", err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-waitErr:
			pw.Close()
			<-done
			if err != nil {
				return fmt.Errorf("compile kernel: %w: %s", err, tail.String())
			}
			fmt.Fprintf(log, "compiled kernel: %d files in %s\n", compiled.Load(), time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			fmt.Fprintf(log, "compiling kernel: %d files, %s\n", compiled.Load(), time.Since(start).Round(time.Second))
		}
	}
}

// kbuildEnv pins what kbuild would otherwise take from the build machine, so
// two builds of the same source and config give the same vmlinux.
func kbuildEnv() []string {
	return []string{
		"KBUILD_BUILD_TIMESTAMP=1970-01-01",
		"KBUILD_BUILD_USER=voidbox",
		"KBUILD_BUILD_HOST=voidbox",
		"KBUILD_BUILD_VERSION=1",
		"LC_ALL=C",
	}
}

// tailLines keeps the last 4 KiB written to it (make's error output).
type tailLines struct{ buf []byte }

func (t *tailLines) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4<<10 {
		t.buf = t.buf[len(t.buf)-4<<10:]
	}
	return len(p), nil
}

func (t *tailLines) String() string { return strings.TrimSpace(string(t.buf)) }
